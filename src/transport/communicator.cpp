#include <optional>
#include <utility>

#include "common/env.hpp"
#include "common/fail.hpp"
#include "common/logging.hpp"
#include "thinwire/communicator.hpp"
#include "transport/average.hpp"
#include "transport/communicator_state.hpp"
#include "transport/env_verdict.hpp"
#include "transport/mpi_transport.hpp"

namespace thinwire {

Transport::~Transport() = default;

namespace detail {

GuardedTransport::GuardedTransport(std::shared_ptr<Transport> inner) : inner_(std::move(inner)) {
  if (!inner_)
    fail(ErrorCode::invalid_argument, "transport", -1,
         "Communicator::from_transport got a null transport");
  rank_ = inner_->rank();
  size_ = inner_->size();
  if (size_ < 1 || rank_ < 0 || rank_ >= size_)
    fail_with(ErrorCode::invalid_argument, "transport", -1, "transport '", inner_->name(),
              "' reports rank ", rank_, " of ", size_);
}

void GuardedTransport::check_usable(const char* what) const {
  if (broken_)
    fail_with(ErrorCode::transport_error, "transport", rank_, what,
              " refused: the communicator is broken since an earlier failure (", first_failure_,
              "); create a new one");
}

void GuardedTransport::mark_broken(const std::string& why) {
  if (broken_) return;  // the first failure is the one worth reporting
  broken_ = true;
  first_failure_ = why;
}

template <typename F>
void GuardedTransport::guarded(const char* what, F&& call) {
  check_usable(what);
  try {
    call();
  } catch (const Error& e) {
    mark_broken(e.what());
    throw;
  } catch (const std::exception& e) {
    // A user-supplied transport may throw anything; report it as a thinwire error.
    mark_broken(e.what());
    fail_with(ErrorCode::transport_error, "transport", rank_, "transport '", inner_->name(), "' ",
              what, " failed: ", e.what());
  }
}

void GuardedTransport::allreduce(void* data, std::size_t count, ElementType type, ReduceOp op) {
  guarded("allreduce", [&] { inner_->allreduce(data, count, type, op); });
}
void GuardedTransport::average_f32(float* data, std::size_t count, NonFiniteSum* check) {
  guarded("allreduce", [&] {
    if (check)
      *check = allreduce_average_f32_checked(*inner_, data, count);
    else
      allreduce_average_f32(*inner_, data, count);
  });
}
void GuardedTransport::average_f32_spans(const std::vector<F32Span>& spans, std::size_t count,
                                         NonFiniteSum* check) {
  guarded("allreduce",
          [&] { static_cast<MpiTransport&>(*inner_).average_f32_spans(spans, count, check); });
}
void GuardedTransport::allgather(const void* send, void* recv, std::size_t bytes) {
  guarded("allgather", [&] { inner_->allgather(send, recv, bytes); });
}
void GuardedTransport::alltoall(const void* send, void* recv, std::size_t bytes) {
  guarded("alltoall", [&] { inner_->alltoall(send, recv, bytes); });
}
void GuardedTransport::broadcast(void* data, std::size_t bytes, int root) {
  guarded("broadcast", [&] { inner_->broadcast(data, bytes, root); });
}
void GuardedTransport::barrier() {
  guarded("barrier", [&] { inner_->barrier(); });
}

namespace {

// The device transport as the communicator hands it out: it shares the host transport's
// broken state, so that a failure in either refuses both.
class GuardedDeviceTransport final : public DeviceTransport {
 public:
  GuardedDeviceTransport(GuardedTransport& host, std::unique_ptr<DeviceTransport> inner)
      : host_(host), inner_(std::move(inner)) {}
  ~GuardedDeviceTransport() override {
    // A broken communicator's peers are out of step: NCCL's orderly teardown could wait on
    // them, an abort does not.
    if (host_.broken()) inner_->abort("the communicator is broken");
  }

  int rank() const override { return inner_->rank(); }
  int size() const override { return inner_->size(); }
  const char* name() const override { return inner_->name(); }
  int device() const override { return inner_->device(); }
  void set_stream(void* stream) override { inner_->set_stream(stream); }
  void* stream() const override { return inner_->stream(); }

  void allreduce(void* data, std::size_t count, ElementType type, ReduceOp op) override {
    guarded("device allreduce", [&] { inner_->allreduce(data, count, type, op); });
  }
  void allgather(const void* send, void* recv, std::size_t bytes) override {
    guarded("device allgather", [&] { inner_->allgather(send, recv, bytes); });
  }
  void alltoall(const void* send, void* recv, std::size_t bytes) override {
    guarded("device alltoall", [&] { inner_->alltoall(send, recv, bytes); });
  }
  void broadcast(void* data, std::size_t bytes, int root) override {
    guarded("device broadcast", [&] { inner_->broadcast(data, bytes, root); });
  }
  void barrier() override {
    guarded("device barrier", [&] { inner_->barrier(); });
  }
  void synchronize(const char* what) override {
    guarded(what, [&] { inner_->synchronize(what); });
  }
  void abort(const std::string& why) override {
    inner_->abort(why);
    host_.mark_broken(cat("the device transport was aborted: ", why));
  }

 private:
  template <typename F>
  void guarded(const char* what, F&& call) {
    host_.check_usable(what);
    try {
      call();
    } catch (const Error& e) {
      host_.mark_broken(e.what());
      throw;
    } catch (const std::exception& e) {
      host_.mark_broken(e.what());
      fail_with(ErrorCode::transport_error, "transport", host_.rank(), "device transport '",
                inner_->name(), "' ", what, " failed: ", e.what());
    }
  }

  GuardedTransport& host_;
  std::unique_ptr<DeviceTransport> inner_;
};

}  // namespace

CommunicatorState::CommunicatorState(std::shared_ptr<Transport> transport, bool from_mpi_,
                                     std::string transport_setting_, double timeout_s_)
    : host(std::move(transport)),
      from_mpi(from_mpi_),
      transport_setting(std::move(transport_setting_)),
      timeout_s(timeout_s_) {}

CommunicatorState::~CommunicatorState() = default;

DeviceTransport& CommunicatorState::device_transport(int device) {
  if (device_) {
    if (device != device_index_)
      fail_with(ErrorCode::invalid_argument, "communicator", host.rank(), "device ", device,
                " asked of a communicator whose device transport is on device ", device_index_,
                ": a Communicator serves one device per process (build another Communicator "
                "for another device)");
    return *device_;
  }
  host.check_usable("device transport creation");
  if (device < 0)
    fail_with(ErrorCode::invalid_argument, "communicator", host.rank(), "device ", device,
              " is not a CUDA device");
  // The same answer on every rank (same setting, same build): a refusal leaves the ranks in
  // step, so it does not break the communicator.
  const DeviceTransportKind kind =
      choose_device_transport(transport_setting, from_mpi, host.rank());
  std::unique_ptr<DeviceTransport> inner;
  try {
    inner = make_device_transport(kind, host, device, timeout_s);
  } catch (const Error& e) {
    // Collective: the other ranks may have got further, or be waiting for this one.
    host.mark_broken(e.what());
    throw;
  }
  TW_LOG(info, "communicator: device transport '", inner->name(), "' on device ", device, ", rank ",
         host.rank(), " of ", host.size());
  device_ = std::make_unique<GuardedDeviceTransport>(host, std::move(inner));
  device_index_ = device;
  return *device_;
}

namespace {

// THINWIRE_TRANSPORT, checked.
std::string transport_setting_from_env() {
  const std::string transport = env_string("THINWIRE_TRANSPORT", "auto");
  if (transport != "auto" && transport != "mpi" && transport != "nccl")
    fail_with(ErrorCode::invalid_argument, "communicator", -1, "THINWIRE_TRANSPORT='", transport,
              "' is not one of auto, mpi, nccl");
  return transport;
}

}  // namespace

}  // namespace detail

Communicator::Communicator(std::shared_ptr<detail::CommunicatorState> state)
    : state_(std::move(state)) {}

Communicator Communicator::from_mpi(MPI_Comm comm) {
  // This rank's settings; a bad one is held back until every rank has said how it found its
  // own, so that all of them fail at once (env_verdict.hpp).
  std::string transport = "auto";
  double timeout_s = detail::kDefaultTimeoutS;
  std::optional<Error> bad_setting;
  try {
    transport = detail::transport_setting_from_env();
    // Asking for NCCL in a build without it must not silently run on MPI. (Host tensors
    // always go over MPI; the setting picks the transport of device tensors.)
    if (transport == "nccl" && !detail::have_nccl())
      detail::fail(ErrorCode::unsupported, "communicator", -1,
                   "THINWIRE_TRANSPORT=nccl: this build of thinwire has no NCCL (built without "
                   "CUDA, or NCCL was not found at configure time); use auto or mpi");
    timeout_s = detail::collective_timeout_s();
  } catch (const Error& e) {
    bad_setting = e;
  }
  auto mpi = std::make_shared<detail::MpiTransport>(comm, timeout_s);
  detail::agree_on_settings(*mpi, bad_setting ? bad_setting : mpi->bad_setting());
  TW_LOG(info, "communicator: rank ", mpi->rank(), " of ", mpi->size(), " over MPI, timeout ",
         mpi->timeout_s(), " s, THINWIRE_TRANSPORT=", transport);
  return Communicator(
      std::make_shared<detail::CommunicatorState>(std::move(mpi), true, transport, timeout_s));
}

Communicator Communicator::from_transport(std::shared_ptr<Transport> transport) {
  // Device tensors are staged through the framework's transport, which has its own waits:
  // no deadline of thinwire's applies.
  const std::string setting = detail::transport_setting_from_env();
  return Communicator(
      std::make_shared<detail::CommunicatorState>(std::move(transport), false, setting, 0.0));
}

int Communicator::rank() const {
  return state_->host.rank();
}
int Communicator::size() const {
  return state_->host.size();
}
std::string Communicator::where() const {
  return detail::cat(detail::host_name(), ":", rank());
}
Transport& Communicator::host_transport() const {
  return state_->host;
}
bool Communicator::broken() const {
  return state_->host.broken();
}

}  // namespace thinwire
