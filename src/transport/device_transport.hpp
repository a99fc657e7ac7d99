// DeviceTransport: thinwire's collectives on device memory, ordered on one CUDA stream.
//
//   NcclTransport    (nccl_transport.cpp)   NCCL, its unique id broadcast over the host
//                                           transport; THINWIRE_TRANSPORT=auto|nccl.
//   StagedTransport  (staged_transport.cpp) device -> pinned host -> the host transport ->
//                                           device; THINWIRE_TRANSPORT=mpi, communicators
//                                           built from a framework's transport, and builds
//                                           without NCCL.
//
// Collectives take device pointers and are enqueued on stream() (the staged transport
// finishes each before returning, the NCCL one may not); synchronize() waits for them
// within the collective deadline (THINWIRE_TIMEOUT_S): a stuck NCCL collective is aborted
// (ncclCommAbort) and reported as Error(timeout), after which the transport refuses work.
// One transport serves every Reducer of a Communicator; each sets its own stream before
// its collectives (a Communicator is used from one thread at a time).
#pragma once

#include <memory>
#include <string>

#include "thinwire/transport.hpp"

namespace thinwire::detail {

class DeviceTransport : public Transport {
 public:
  virtual int device() const = 0;
  // The cudaStream_t later collectives are ordered on (nullptr: the legacy stream).
  virtual void set_stream(void* stream) = 0;
  virtual void* stream() const = 0;
  // Blocks until everything enqueued on stream() has completed, or throws
  // Error(timeout | transport_error) naming `what`.
  virtual void synchronize(const char* what) = 0;
  // Abandons the transport without waiting for its peers (NCCL: ncclCommAbort): every later
  // call throws Error(transport_error) at once, citing `why`. For a communicator that broke
  // elsewhere, and for tests. Transports without resources to abandon may ignore it.
  virtual void abort(const std::string& why) { (void)why; }
};

// Whether this build has the NCCL transport (THINWIRE_HAVE_NCCL: CUDA and NCCL were found).
bool have_nccl();

// Which device transport THINWIRE_TRANSPORT asks for, given how the communicator was built.
enum class DeviceTransportKind { nccl, staged };

// THINWIRE_TRANSPORT: "auto" takes NCCL when this build has it and the communicator came
// from MPI, else the staged transport; "nccl" insists (Error(unsupported) when it cannot be
// had: no NCCL in this build, or a framework's transport); "mpi" stages through the host.
// The CPU emulation of the kernels (kernels::emulated()) has no NCCL: there "auto" stages
// and "nccl" is unsupported. Any other setting is Error(invalid_argument). `rank` is for
// messages.
DeviceTransportKind choose_device_transport(const std::string& setting, bool from_mpi, int rank);

// Collective over `host` (every rank calls it with its own device): builds the transport
// for `device`. `host` must outlive it. `timeout_s` (THINWIRE_TIMEOUT_S; <= 0: none) bounds
// NCCL's init and synchronize(); the staged transport's waits are the host transport's.
// kind == nccl without NCCL in this build, or over the emulation: Error(unsupported).
std::unique_ptr<DeviceTransport> make_device_transport(DeviceTransportKind kind, Transport& host,
                                                       int device, double timeout_s);

}  // namespace thinwire::detail
