// The shared state behind thinwire::Communicator copies.
#pragma once

#include <memory>
#include <string>

#include "thinwire/transport.hpp"

namespace thinwire::detail {

// Forwards to the real transport, refusing every call once one has failed: after a failed
// or timed-out collective the ranks are no longer known to be in step, and a later
// collective could pair up mismatched messages.
class GuardedTransport final : public Transport {
 public:
  explicit GuardedTransport(std::shared_ptr<Transport> inner);

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  const char* name() const override { return inner_->name(); }
  void allreduce(void* data, std::size_t count, ElementType type, ReduceOp op) override;
  void allgather(const void* send, void* recv, std::size_t bytes) override;
  void alltoall(const void* send, void* recv, std::size_t bytes) override;
  void broadcast(void* data, std::size_t bytes, int root) override;
  void barrier() override;

  bool broken() const { return broken_; }
  Transport& inner() const { return *inner_; }

 private:
  template <typename F>
  void guarded(const char* what, F&& call);

  std::shared_ptr<Transport> inner_;
  int rank_, size_;
  bool broken_ = false;
  std::string first_failure_;
};

struct CommunicatorState {
  explicit CommunicatorState(std::shared_ptr<Transport> transport) : host(std::move(transport)) {}
  GuardedTransport host;
};

}  // namespace thinwire::detail
