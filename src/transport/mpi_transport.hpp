// MpiTransport: thinwire's collectives on host memory over an MPI communicator.
//
// Every wait is a polling loop with a deadline (THINWIRE_TIMEOUT_S), so a dead or stuck
// peer ends in Error(timeout) rather than a hang. Allgather, alltoall and large f32 sums
// are built from nonblocking point-to-point messages (sums go round a ring, as fast as
// OpenMPI's tuned ring here), so that a timeout names the ranks that never answered.
// Small reductions and broadcasts use MPI's nonblocking collectives.
#pragma once

#include <mpi.h>

#include <cstddef>
#include <vector>

#include "thinwire/transport.hpp"

namespace thinwire::detail {

class MpiTransport final : public Transport {
 public:
  // f32 sums at or above this size go round the point-to-point ring (when there is a
  // deadline); below it latency dominates and MPI's own (recursive-doubling) algorithms are
  // better. The cost model (src/model/) follows the same rule.
  static constexpr std::size_t kRingMinBytes = 64 * 1024;

  // Duplicates `comm`; the duplicate is freed with the transport (unless MPI is finalized).
  // timeout_s <= 0 waits forever with MPI's blocking calls.
  MpiTransport(MPI_Comm comm, double timeout_s);
  ~MpiTransport() override;
  MpiTransport(const MpiTransport&) = delete;
  MpiTransport& operator=(const MpiTransport&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  const char* name() const override { return "mpi"; }

  void allreduce(void* data, std::size_t count, ElementType type, ReduceOp op) override;
  void allgather(const void* send, void* recv, std::size_t bytes) override;
  void alltoall(const void* send, void* recv, std::size_t bytes) override;
  void broadcast(void* data, std::size_t bytes, int root) override;
  void barrier() override;

  MPI_Comm comm() const { return comm_; }
  double timeout_s() const { return timeout_s_; }
  // Point-to-point transfers above this size travel as messages of at most this size
  // (THINWIRE_MPI_SEGMENT_BYTES, default kDefaultSegmentBytes, 0 = whole messages; the
  // smallest value of any rank, agreed at construction). See post_send().
  std::size_t segment_bytes() const { return segment_bytes_; }
  static constexpr std::size_t kDefaultSegmentBytes = 0;  // opt-in: see post_send()

 private:
  // Waits for all requests, polling, until the deadline; on expiry throws Error(timeout)
  // with `what` and, when known, the peer that was awaited.
  void wait_all(MPI_Request* requests, int n, const char* what, std::size_t bytes, int peer);
  // Point-to-point operations in flight, each with its peer, for wait_peers().
  struct PeerOps {
    std::vector<MPI_Request> requests;
    std::vector<int> peers;
    std::vector<char> receives;  // 1 for a receive
    void clear() { requests.clear(), peers.clear(), receives.clear(); }
  };
  // As wait_all, but a timeout lists the peers not heard from and not delivered to.
  void wait_peers(PeerOps& ops, const char* what, std::size_t bytes);
  // After a timeout: cancels the receives still posted (so no late message lands in memory
  // the caller reuses) and frees every request.
  void cancel_pending(PeerOps& ops);
  // wait_all() for a nonblocking collective on `copy`; on a timeout the copy is abandoned
  // (never freed: MPI may still write it) and the error rethrown.
  void wait_on_copy(std::vector<unsigned char>& copy, MPI_Request* request, const char* what,
                    int peer);
  static void abandon(std::vector<unsigned char>&& memory);
  // One transfer as messages of at most segment_bytes_ (see post() in the .cpp).
  void post(const void* buf, std::size_t bytes, int peer, int tag, bool receive);
  void post_recv(void* buf, std::size_t bytes, int peer, int tag) {
    post(buf, bytes, peer, tag, true);
  }
  void post_send(const void* buf, std::size_t bytes, int peer, int tag) {
    post(buf, bytes, peer, tag, false);
  }
  void check(int rc, const char* what) const;
  void ring_sum_f32(float* data, std::size_t count);

  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0;
  int size_ = 1;
  double timeout_s_ = 0;
  std::size_t segment_bytes_ = kDefaultSegmentBytes;
  std::vector<float> ring_scratch_;
  std::vector<unsigned char> copy_;  // nonblocking collectives run on this copy
  PeerOps ops_;
};

}  // namespace thinwire::detail
