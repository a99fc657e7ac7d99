// Without THINWIRE_HAVE_NCCL this file compiles to nothing: make_device_transport() then
// reports Error(unsupported) for the NCCL transport.
#if defined(THINWIRE_HAVE_NCCL)

#include "transport/nccl_transport.hpp"

#include <nccl.h>

#include <chrono>
#include <cstdint>
#include <cstring>
#include <optional>
#include <thread>

#include "common/fail.hpp"
#include "common/logging.hpp"
#include "launch.hpp"

namespace thinwire::detail {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Between polls: spin a little (collectives of small messages finish in microseconds),
// then sleep briefly so that a long wait leaves the core to others.
void pause(unsigned polls) {
  if (polls < 64)
    std::this_thread::yield();
  else if (polls < 2000)
    std::this_thread::sleep_for(std::chrono::microseconds(20));
  else
    std::this_thread::sleep_for(std::chrono::microseconds(200));
}

ncclDataType_t nccl_type(ElementType t) {
  switch (t) {
    case ElementType::f32:
      return ncclFloat32;
    case ElementType::f64:
      return ncclFloat64;
    case ElementType::i64:
      return ncclInt64;
    case ElementType::u64:
      return ncclUint64;
  }
  return ncclUint8;
}

ncclRedOp_t nccl_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::sum:
      return ncclSum;
    case ReduceOp::min:
      return ncclMin;
    case ReduceOp::max:
      return ncclMax;
  }
  return ncclSum;
}

constexpr const char* kNoPeers =
    "; NCCL does not say which ranks are missing: look for ranks that did not reach this "
    "collective, or failed or timed out before it";

}  // namespace

std::string NcclTransport::who() const {
  return cat("rank ", rank_, " of ", size_, ", device ", device_);
}

NcclTransport::NcclTransport(Transport& host, int device, double timeout_s)
    : rank_(host.rank()), size_(host.size()), device_(device), timeout_s_(timeout_s) {
  // Every failure before init is agreed over the host transport, so that no rank is left
  // waiting in ncclCommInitRankConfig for one that will never come.
  std::optional<Error> failure;
  const std::string err = kernels::set_device(device);
  if (!err.empty())
    failure.emplace(ErrorCode::invalid_argument,
                    error_message("transport", rank_,
                                  cat("NCCL init on ", who(), ": cannot use the device: ", err)));

  // Rank 0's unique id, behind a flag saying whether it could make one.
  unsigned char message[8 + sizeof(ncclUniqueId)] = {};
  if (rank_ == 0 && !failure) {
    ncclUniqueId id;
    const ncclResult_t r = ncclGetUniqueId(&id);
    if (r == ncclSuccess) {
      message[0] = 1;
      std::memcpy(message + 8, &id, sizeof id);
    } else {
      failure.emplace(ErrorCode::transport_error,
                      error_message("transport", rank_,
                                    cat("NCCL init on ", who(),
                                        ": ncclGetUniqueId failed: ", ncclGetErrorString(r))));
    }
  }
  host.broadcast(message, sizeof message, 0);
  std::int64_t ready = (!failure && message[0] == 1) ? 1 : 0;
  host.allreduce(&ready, 1, ElementType::i64, ReduceOp::min);
  if (failure) throw *failure;
  if (!ready)
    fail_with(ErrorCode::transport_error, "transport", rank_, "NCCL init on ", who(),
              ": another rank could not take part (rank 0 could not create the NCCL unique id, "
              "or a rank could not use its device); see that rank's error");
  ncclUniqueId id;
  std::memcpy(&id, message + 8, sizeof id);

  // Non-blocking, so that init and every later call can be bounded by the deadline.
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;
  ncclComm_t comm = nullptr;
  const ncclResult_t r = ncclCommInitRankConfig(&comm, size_, id, rank_, &config);
  comm_ = comm;
  try {
    if (r != ncclSuccess && r != ncclInProgress) {
      if (comm_) {
        async_failure("init (ncclCommInitRankConfig)", r);
      } else {
        aborted_ = "NCCL init failed";
        fail_with(ErrorCode::transport_error, "transport", rank_, "NCCL init on ", who(),
                  ": ncclCommInitRankConfig failed: ", ncclGetErrorString(r), " (",
                  ncclGetLastError(nullptr), ")");
      }
    }
    wait_ready("init", " (ncclCommInitRankConfig)");
  } catch (const Error& e) {
    failure = e;
  }
  // Agree on the outcome: a rank whose init failed must not leave the others to find out
  // in their first collective.
  std::int64_t ok = failure ? 0 : 1;
  try {
    host.allreduce(&ok, 1, ElementType::i64, ReduceOp::min);
  } catch (const Error&) {
    abort("the host transport failed during NCCL init");
    throw;
  }
  if (failure) throw *failure;  // the communicator is already aborted
  if (!ok) {
    abort("NCCL init failed on another rank");
    fail_with(ErrorCode::transport_error, "transport", rank_, "NCCL init on ", who(),
              ": another rank failed to create its part of the NCCL communicator (see its "
              "error); this rank's part was aborted");
  }
  TW_LOG(info, "transport: NCCL communicator ready, ", who(), ", timeout ", timeout_s_, " s");
}

NcclTransport::~NcclTransport() {
  if (scratch_) kernels::device_free(scratch_);
  if (!comm_) return;  // aborted
  // ncclCommDestroy would finalize (flush outstanding work) blocking; finalize first,
  // non-blocking, within the deadline, and abort when it does not complete.
  ncclResult_t r = ncclCommFinalize(comm_);
  if (r == ncclInProgress) {
    const auto start = Clock::now();
    for (unsigned polls = 0;; ++polls) {
      ncclResult_t state = ncclSuccess;
      if (ncclCommGetAsyncError(comm_, &state) != ncclSuccess) state = ncclInternalError;
      if (state != ncclInProgress) {
        r = state;
        break;
      }
      if (timeout_s_ > 0 && seconds_since(start) > timeout_s_) {
        r = ncclInProgress;
        break;
      }
      pause(polls);
    }
  }
  if (r == ncclSuccess) {
    ncclCommDestroy(comm_);
  } else {
    TW_LOG(warn, "transport: NCCL communicator of ", who(), " did not finalize (",
           ncclGetErrorString(r), "); aborting it");
    ncclCommAbort(comm_);
  }
  comm_ = nullptr;
}

void NcclTransport::abort(const std::string& why) {
  if (!aborted_.empty()) return;
  aborted_ = why.empty() ? std::string("aborted") : why;
  if (comm_) {
    ncclCommAbort(comm_);
    comm_ = nullptr;
  }
}

void NcclTransport::check_usable(const char* what) const {
  if (!aborted_.empty())
    fail_with(ErrorCode::transport_error, "transport", rank_, "NCCL ", what, " refused on ", who(),
              ": the NCCL communicator was aborted (", aborted_, "); create a new Communicator");
}

void NcclTransport::expire(const char* what, const char* step, double waited) {
  abort(cat("NCCL ", what, " timed out after ", waited, " s"));
  fail_with(ErrorCode::timeout, "transport", rank_, "NCCL ", what, step,
            " did not complete within ", timeout_s_, " s (THINWIRE_TIMEOUT_S) on ", who(),
            "; the NCCL communicator was aborted (ncclCommAbort) and refuses further work",
            kNoPeers);
}

void NcclTransport::async_failure(const char* what, int result) {
  const ncclResult_t r = static_cast<ncclResult_t>(result);
  const std::string last = ncclGetLastError(comm_);  // before the abort frees comm_
  abort(cat("NCCL ", what, " failed: ", ncclGetErrorString(r)));
  fail_with(ErrorCode::transport_error, "transport", rank_, "NCCL ", what, " failed on ", who(),
            ": ", ncclGetErrorString(r), last.empty() ? std::string() : cat(" (", last, ")"),
            "; the NCCL communicator was aborted and refuses further work");
}

void NcclTransport::wait_ready(const char* what, const char* step) {
  const auto start = Clock::now();
  for (unsigned polls = 0;; ++polls) {
    ncclResult_t state = ncclSuccess;
    const ncclResult_t r = ncclCommGetAsyncError(comm_, &state);
    if (r != ncclSuccess) async_failure(what, r);
    if (state == ncclSuccess) return;
    if (state != ncclInProgress) async_failure(what, state);
    const double waited = seconds_since(start);
    if (timeout_s_ > 0 && waited > timeout_s_) expire(what, step, waited);
    pause(polls);
  }
}

void NcclTransport::check(int result, const char* what, const char* call) {
  const ncclResult_t r = static_cast<ncclResult_t>(result);
  if (r == ncclSuccess) return;
  if (r == ncclInProgress) {
    // Non-blocking communicator: the call is still being enqueued; no other NCCL call on
    // this communicator until it is.
    wait_ready(what, cat(" (", call, " in progress)").c_str());
    return;
  }
  const std::string last = ncclGetLastError(comm_);
  abort(cat("NCCL ", what, ": ", call, " failed"));
  fail_with(ErrorCode::transport_error, "transport", rank_, "NCCL ", what, " on ", who(), ": ",
            call, " failed: ", ncclGetErrorString(r),
            last.empty() ? std::string() : cat(" (", last, ")"),
            "; the NCCL communicator was aborted and refuses further work");
}

void NcclTransport::synchronize(const char* what) {
  check_usable(what);
  const auto start = Clock::now();
  for (unsigned polls = 0;; ++polls) {
    bool done = false;
    const std::string err = kernels::stream_query(stream_, &done);
    if (!err.empty()) {
      abort(cat("the stream failed in ", what));
      fail_with(ErrorCode::transport_error, "transport", rank_, "NCCL ", what, " on ", who(),
                ": the stream failed: ", err,
                "; the NCCL communicator was aborted and refuses further work");
    }
    ncclResult_t state = ncclSuccess;
    const ncclResult_t r = ncclCommGetAsyncError(comm_, &state);
    if (r != ncclSuccess) async_failure(what, r);
    if (state != ncclSuccess && state != ncclInProgress) async_failure(what, state);
    if (done) return;
    const double waited = seconds_since(start);
    if (timeout_s_ > 0 && waited > timeout_s_)
      expire(what, " (waiting for the work on its stream)", waited);
    pause(polls);
  }
}

void NcclTransport::allreduce(void* data, std::size_t count, ElementType type, ReduceOp op) {
  check_usable("allreduce");
  if (count == 0) return;
  check(ncclAllReduce(data, data, count, nccl_type(type), nccl_op(op), comm_,
                      static_cast<cudaStream_t>(stream_)),
        "allreduce", "ncclAllReduce");
}

void NcclTransport::allgather(const void* send, void* recv, std::size_t bytes) {
  check_usable("allgather");
  if (bytes == 0) return;
  check(ncclAllGather(send, recv, bytes, ncclUint8, comm_, static_cast<cudaStream_t>(stream_)),
        "allgather", "ncclAllGather");
}

void NcclTransport::alltoall(const void* send, void* recv, std::size_t bytes) {
  check_usable("alltoall");
  if (bytes == 0) return;
  const auto* in = static_cast<const unsigned char*>(send);
  auto* out = static_cast<unsigned char*>(recv);
  const std::size_t total = static_cast<std::size_t>(size_) * bytes;
  if (in < out + total && out < in + total)
    fail_with(ErrorCode::invalid_argument, "transport", rank_,
              "NCCL alltoall: the send and receive buffers overlap");
  const auto stream = static_cast<cudaStream_t>(stream_);
  check(ncclGroupStart(), "alltoall", "ncclGroupStart");
  ncclResult_t first = ncclSuccess;
  for (int peer = 0; peer < size_ && first == ncclSuccess; ++peer) {
    const std::size_t at = static_cast<std::size_t>(peer) * bytes;
    first = ncclSend(in + at, bytes, ncclUint8, peer, comm_, stream);
    if (first == ncclSuccess) first = ncclRecv(out + at, bytes, ncclUint8, peer, comm_, stream);
  }
  // The group is closed even after a failed call, so that NCCL's group state is consistent.
  const ncclResult_t end = ncclGroupEnd();
  check(first, "alltoall", "ncclSend/ncclRecv");
  check(end, "alltoall", "ncclGroupEnd");
}

void NcclTransport::broadcast(void* data, std::size_t bytes, int root) {
  check_usable("broadcast");
  if (root < 0 || root >= size_)
    fail_with(ErrorCode::invalid_argument, "transport", rank_, "NCCL broadcast root ", root,
              " is not a rank of a group of ", size_);
  if (bytes == 0) return;
  check(
      ncclBroadcast(data, data, bytes, ncclUint8, root, comm_, static_cast<cudaStream_t>(stream_)),
      "broadcast", "ncclBroadcast");
}

void NcclTransport::barrier() {
  check_usable("barrier");
  if (!scratch_) {
    void* p = nullptr;
    const std::string err = kernels::device_alloc(&p, sizeof(std::int64_t));
    if (!err.empty())
      fail_with(ErrorCode::transport_error, "transport", rank_, "NCCL barrier on ", who(),
                ": cannot allocate its device word: ", err);
    scratch_ = p;
    kernels::zero_async(scratch_, sizeof(std::int64_t), stream_);
  }
  check(ncclAllReduce(scratch_, scratch_, 1, ncclInt64, ncclSum, comm_,
                      static_cast<cudaStream_t>(stream_)),
        "barrier", "ncclAllReduce");
  synchronize("barrier");
}

}  // namespace thinwire::detail

#endif  // THINWIRE_HAVE_NCCL
