#include "local_group.hpp"

#include <cstring>
#include <string>
#include <thread>

namespace thinwire::fuzz {

class LocalTransport final : public Transport {
 public:
  LocalTransport(LocalGroup* group, int rank) : group_(group), rank_(rank) {}
  int rank() const override { return rank_; }
  int size() const override { return group_->size_; }
  const char* name() const override { return "local"; }

  void allreduce(void* data, std::size_t count, ElementType type, ReduceOp op) override {
    LocalGroup::Slot s{LocalGroup::Kind::allreduce, data, count * element_size(type), type, op, 0};
    std::vector<std::vector<std::uint8_t>> parts(static_cast<std::size_t>(size()));
    group_->collective(rank_, s, [&](std::uint32_t call) {
      for (int r = 0; r < size(); ++r) parts[static_cast<std::size_t>(r)] = group_->sent(call, r);
    });
    reduce_in_rank_order(data, count, type, op, parts);
  }
  void allgather(const void* send, void* recv, std::size_t bytes) override {
    LocalGroup::Slot s{
        LocalGroup::Kind::allgather, send, bytes, ElementType::f32, ReduceOp::sum, 0};
    std::vector<std::vector<std::uint8_t>> parts(static_cast<std::size_t>(size()));
    group_->collective(rank_, s, [&](std::uint32_t call) {
      for (int r = 0; r < size(); ++r) parts[static_cast<std::size_t>(r)] = group_->sent(call, r);
    });
    for (int r = 0; r < size(); ++r)
      if (bytes)
        std::memcpy(static_cast<std::uint8_t*>(recv) + static_cast<std::size_t>(r) * bytes,
                    parts[static_cast<std::size_t>(r)].data(), bytes);
  }
  void alltoall(const void* send, void* recv, std::size_t bytes) override {
    const std::size_t p = static_cast<std::size_t>(size());
    LocalGroup::Slot s{LocalGroup::Kind::alltoall, send,          bytes * p,
                       ElementType::f32,           ReduceOp::sum, 0};
    std::vector<std::vector<std::uint8_t>> parts(p);
    group_->collective(rank_, s, [&](std::uint32_t call) {
      for (std::size_t r = 0; r < p; ++r) parts[r] = group_->sent(call, static_cast<int>(r));
    });
    const std::size_t me = static_cast<std::size_t>(rank_);
    for (std::size_t r = 0; r < p; ++r)
      if (bytes)
        std::memcpy(static_cast<std::uint8_t*>(recv) + r * bytes, parts[r].data() + me * bytes,
                    bytes);
  }
  void broadcast(void* data, std::size_t bytes, int root) override {
    LocalGroup::Slot s{
        LocalGroup::Kind::broadcast, data, bytes, ElementType::f32, ReduceOp::sum, root};
    std::vector<std::uint8_t> part;
    group_->collective(rank_, s, [&](std::uint32_t call) { part = group_->sent(call, root); });
    if (bytes) std::memcpy(data, part.data(), bytes);
  }
  void barrier() override {
    group_->collective(rank_, LocalGroup::Slot{}, [](std::uint32_t) {});
  }

 private:
  LocalGroup* group_;
  int rank_;
};

LocalGroup::LocalGroup(int size)
    : size_(size),
      slots_(static_cast<std::size_t>(size)),
      calls_(static_cast<std::size_t>(size), 0),
      left_(static_cast<std::size_t>(size), false) {}

void LocalGroup::reset_calls() {
  std::lock_guard<std::mutex> lock(mutex_);
  calls_.assign(static_cast<std::size_t>(size_), 0);
  left_.assign(static_cast<std::size_t>(size_), false);
}

std::shared_ptr<Transport> LocalGroup::transport(int rank) {
  return std::make_shared<LocalTransport>(this, rank);
}

std::vector<std::uint8_t> LocalGroup::sent(std::uint32_t call, int from) const {
  const Slot& s = slots_[static_cast<std::size_t>(from)];
  const auto* p = static_cast<const std::uint8_t*>(s.send);
  std::vector<std::uint8_t> out(p, p + s.bytes);
  if (s.bytes)
    for (const Patch& patch : patches_)
      if (patch.call == call &&
          static_cast<int>(patch.peer % static_cast<std::uint32_t>(size_)) == from)
        out[patch.offset % s.bytes] ^= patch.xor_mask;
  return out;
}

void LocalGroup::wait_all(std::unique_lock<std::mutex>& lock, std::uint64_t generation, int rank) {
  if (++arrived_ == size_) {
    arrived_ = 0;
    ++generation_;
    cv_.notify_all();
    return;
  }
  auto gone = [&] {
    for (bool l : left_)
      if (l) return true;
    return false;
  };
  cv_.wait(lock, [&] { return generation_ != generation || gone(); });
  if (generation_ != generation) return;
  --arrived_;
  throw Error(ErrorCode::timeout,
              "local group: rank " + std::to_string(rank) + " waited for a rank that left");
}

void LocalGroup::collective(int rank, const Slot& mine,
                            const std::function<void(std::uint32_t)>& copy) {
  std::unique_lock<std::mutex> lock(mutex_);
  const std::uint32_t call = calls_[static_cast<std::size_t>(rank)]++;
  if (rank == fail_rank_ && static_cast<long>(call) == fail_call_)
    throw Error(ErrorCode::timeout, "local group: rank " + std::to_string(rank) +
                                        " stops answering at call " + std::to_string(call));
  slots_[static_cast<std::size_t>(rank)] = mine;
  wait_all(lock, generation_, rank);
  for (const Slot& s : slots_)
    if (s.kind != mine.kind || s.bytes != mine.bytes || s.type != mine.type || s.op != mine.op ||
        s.root != mine.root)
      violated("ranks made different collective calls (kind or size) at call " +
               std::to_string(call));
  lock.unlock();
  copy(call);
  lock.lock();
  wait_all(lock, generation_, rank);
}

void LocalGroup::run(const std::function<void(int)>& body) {
  std::vector<std::thread> threads;
  for (int r = 0; r < size_; ++r)
    threads.emplace_back([this, r, &body] {
      try {
        body(r);
      } catch (const std::exception& e) {
        violated(std::string("exception escaped rank ") + std::to_string(r) + ": " + e.what());
      }
      std::lock_guard<std::mutex> lock(mutex_);
      left_[static_cast<std::size_t>(r)] = true;
      cv_.notify_all();
    });
  for (std::thread& t : threads) t.join();
}

}  // namespace thinwire::fuzz
