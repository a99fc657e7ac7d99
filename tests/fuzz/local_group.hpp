// LocalGroup: `size` ranks in one process, one thread each, joined by an in-memory
// transport, so that a fuzz harness runs real multi-rank steps (every rank computing its
// own chunks) without MPI. Patches flip bytes of what one rank sends in one collective,
// as a faulty sender would: every receiver of that message sees the same wrong bytes.
//
// A rank that leaves (its body returned or threw) while the others wait in a collective
// makes them raise Error(timeout) at once: what THINWIRE_TIMEOUT_S would do, without the
// wait. A collective whose ranks disagree on the kind or size of the call is a thinwire
// bug (the agreement exchange exists to prevent it) and aborts the harness.
#pragma once

#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "fuzz_support.hpp"

namespace thinwire::fuzz {

class LocalGroup {
 public:
  explicit LocalGroup(int size);
  int size() const { return size_; }
  // Patch::peer names the sending rank (modulo size).
  void set_patches(std::vector<Patch> patches) { patches_ = std::move(patches); }
  // Rank `rank`'s transport throws Error(timeout) at its call number `call`.
  void set_failure(int rank, long call) { fail_rank_ = rank, fail_call_ = call; }
  // Counts calls from 0 again (e.g. after construction).
  void reset_calls();
  std::shared_ptr<Transport> transport(int rank);
  // Runs body(rank) for every rank on its own thread; returns when all are done. An
  // exception escaping a body aborts (the harness decides what is allowed).
  void run(const std::function<void(int)>& body);

 private:
  friend class LocalTransport;
  enum class Kind { allreduce, allgather, alltoall, broadcast, barrier };
  struct Slot {
    Kind kind = Kind::barrier;
    const void* send = nullptr;
    std::size_t bytes = 0;  // bytes sent by this rank (all blocks)
    ElementType type = ElementType::f32;
    ReduceOp op = ReduceOp::sum;
    int root = 0;
  };
  // One collective call of `rank`: deposit, wait for all, `copy` from the others' slots,
  // wait until all have copied (so no sender reuses its buffer too early).
  void collective(int rank, const Slot& mine, const std::function<void(std::uint32_t)>& copy);
  void wait_all(std::unique_lock<std::mutex>& lock, std::uint64_t generation, int rank);
  // What rank `from` sent in this call, with the patches for (call, from) applied.
  std::vector<std::uint8_t> sent(std::uint32_t call, int from) const;

  int size_;
  std::vector<Patch> patches_;
  int fail_rank_ = -1;
  long fail_call_ = -1;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::vector<Slot> slots_;
  std::vector<std::uint32_t> calls_;  // per rank
  std::vector<bool> left_;
  int arrived_ = 0;
  std::uint64_t generation_ = 0;
};

}  // namespace thinwire::fuzz
