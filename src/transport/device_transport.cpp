#include "transport/device_transport.hpp"

#include "common/fail.hpp"
#include "launch.hpp"
#include "transport/staged_transport.hpp"
#if defined(THINWIRE_HAVE_NCCL)
#include "transport/nccl_transport.hpp"
#endif

namespace thinwire::detail {

bool have_nccl() {
#if defined(THINWIRE_HAVE_NCCL)
  return true;
#else
  return false;
#endif
}

namespace {

// Why NCCL cannot be had here, or "" when it can (for a communicator from MPI).
std::string why_no_nccl() {
  if (!have_nccl())
    return "this build of thinwire has no NCCL (built without CUDA, or nccl.h/libnccl were not "
           "found at configure time)";
  if (kernels::emulated())
    return "this is the CPU emulation of thinwire's kernels, which has no NCCL";
  return {};
}

}  // namespace

DeviceTransportKind choose_device_transport(const std::string& setting, bool from_mpi, int rank) {
  if (setting == "mpi") return DeviceTransportKind::staged;
  if (setting == "auto")
    return from_mpi && why_no_nccl().empty() ? DeviceTransportKind::nccl
                                             : DeviceTransportKind::staged;
  if (setting == "nccl") {
    if (!from_mpi)
      fail(ErrorCode::unsupported, "transport", rank,
           "THINWIRE_TRANSPORT=nccl: this communicator was built from a framework's transport "
           "(Communicator::from_transport), which thinwire cannot reach NCCL through; device "
           "tensors are staged through it with THINWIRE_TRANSPORT=auto or mpi");
    const std::string why = why_no_nccl();
    if (!why.empty())
      fail_with(ErrorCode::unsupported, "transport", rank, "THINWIRE_TRANSPORT=nccl: ", why,
                "; use auto or mpi to stage device tensors through MPI");
    return DeviceTransportKind::nccl;
  }
  fail_with(ErrorCode::invalid_argument, "transport", rank, "THINWIRE_TRANSPORT='", setting,
            "' is not one of auto, mpi, nccl");
}

std::unique_ptr<DeviceTransport> make_device_transport(DeviceTransportKind kind, Transport& host,
                                                       int device, double timeout_s) {
  if (kind == DeviceTransportKind::staged) return std::make_unique<StagedTransport>(host, device);
  const std::string why = why_no_nccl();
  if (!why.empty())
    fail_with(ErrorCode::unsupported, "transport", host.rank(), "the NCCL device transport: ", why);
#if defined(THINWIRE_HAVE_NCCL)
  return std::make_unique<NcclTransport>(host, device, timeout_s);
#else
  return nullptr;  // not reached: why_no_nccl() said so
#endif
}

}  // namespace thinwire::detail
