// The shared state behind thinwire::Communicator copies.
#pragma once

#include <memory>
#include <string>

#include "thinwire/transport.hpp"
#include "transport/average.hpp"
#include "transport/device_transport.hpp"

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
  // allreduce_average_f32() (checked when `check` is given, see average.hpp) on the inner
  // transport, guarded like the collectives.
  void average_f32(float* data, std::size_t count, NonFiniteSum* check);
  // MpiTransport::average_f32_spans on the inner transport (which must be one), guarded.
  void average_f32_spans(const std::vector<F32Span>& spans, std::size_t count, NonFiniteSum* check);

  bool broken() const { return broken_; }
  Transport& inner() const { return *inner_; }

  // Throws Error(transport_error) naming `what` when the communicator is broken; the device
  // transport calls it before each of its collectives, so host and device share one state.
  void check_usable(const char* what) const;
  // Marks the communicator broken (the first reason is kept for later messages): every
  // later collective, host or device, throws at once.
  void mark_broken(const std::string& why);

 private:
  template <typename F>
  void guarded(const char* what, F&& call);

  std::shared_ptr<Transport> inner_;
  int rank_, size_;
  bool broken_ = false;
  std::string first_failure_;
};

struct CommunicatorState {
  // `transport_setting`: THINWIRE_TRANSPORT as read when the communicator was built (auto,
  // mpi or nccl); `from_mpi`: built by Communicator::from_mpi (else from a framework's
  // transport); `timeout_s`: THINWIRE_TIMEOUT_S, the deadline of device collectives.
  explicit CommunicatorState(std::shared_ptr<Transport> transport, bool from_mpi = false,
                             std::string transport_setting = "auto", double timeout_s = 0);
  ~CommunicatorState();
  CommunicatorState(const CommunicatorState&) = delete;
  CommunicatorState& operator=(const CommunicatorState&) = delete;

  GuardedTransport host;
  const bool from_mpi;
  const std::string transport_setting;
  const double timeout_s;

  // The transport for device memory on `device`, created on first use (NCCL or staged, per
  // choose_device_transport): the first call is collective (every rank calls it in the same
  // step, each with its own device); later calls return the same transport. Its
  // collectives share the host transport's broken state: a failure in either marks the
  // communicator broken, and a broken communicator refuses both. Throws
  // Error(invalid_argument) for a device other than the first call's, Error(unsupported)
  // when THINWIRE_TRANSPORT=nccl cannot be had, and the refusal when the communicator is
  // broken; a failed creation breaks the communicator.
  DeviceTransport& device_transport(int device);
  // The device transport if one was created, else nullptr (never creates one).
  DeviceTransport* existing_device_transport() const { return device_.get(); }

 private:
  std::unique_ptr<DeviceTransport> device_;  // a guard around the real transport
  int device_index_ = -1;
};

}  // namespace thinwire::detail
