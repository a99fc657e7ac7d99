#include <utility>

#include "common/env.hpp"
#include "common/fail.hpp"
#include "common/logging.hpp"
#include "thinwire/communicator.hpp"
#include "transport/communicator_state.hpp"
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

template <typename F>
void GuardedTransport::guarded(const char* what, F&& call) {
  if (broken_)
    fail_with(ErrorCode::transport_error, "transport", rank_, what,
              " refused: the communicator is broken since an earlier failure (", first_failure_,
              "); create a new one");
  try {
    call();
  } catch (const Error& e) {
    broken_ = true;
    first_failure_ = e.what();
    throw;
  } catch (const std::exception& e) {
    // A user-supplied transport may throw anything; report it as a thinwire error.
    broken_ = true;
    first_failure_ = e.what();
    fail_with(ErrorCode::transport_error, "transport", rank_, "transport '", inner_->name(), "' ",
              what, " failed: ", e.what());
  }
}

void GuardedTransport::allreduce(void* data, std::size_t count, ElementType type, ReduceOp op) {
  guarded("allreduce", [&] { inner_->allreduce(data, count, type, op); });
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

}  // namespace detail

Communicator::Communicator(std::shared_ptr<detail::CommunicatorState> state)
    : state_(std::move(state)) {}

Communicator Communicator::from_mpi(MPI_Comm comm) {
  const std::string transport = detail::env_string("THINWIRE_TRANSPORT", "auto");
  if (transport != "auto" && transport != "mpi" && transport != "nccl")
    detail::fail_with(ErrorCode::invalid_argument, "communicator", -1, "THINWIRE_TRANSPORT='",
                      transport, "' is not one of auto, mpi, nccl");
  // Device tensors and NCCL arrive with the CUDA backend; until then asking for NCCL must not
  // silently run on MPI.
  if (transport == "nccl")
    detail::fail(ErrorCode::unsupported, "communicator", -1,
                 "THINWIRE_TRANSPORT=nccl: this version reduces host tensors over MPI only (use "
                 "auto or mpi)");
  auto mpi = std::make_shared<detail::MpiTransport>(comm, detail::collective_timeout_s());
  TW_LOG(info, "communicator: rank ", mpi->rank(), " of ", mpi->size(), " over MPI, timeout ",
         mpi->timeout_s(), " s, THINWIRE_TRANSPORT=", transport);
  return Communicator(std::make_shared<detail::CommunicatorState>(std::move(mpi)));
}

Communicator Communicator::from_transport(std::shared_ptr<Transport> transport) {
  return Communicator(std::make_shared<detail::CommunicatorState>(std::move(transport)));
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
