// NcclTransport: device collectives over NCCL (built only with THINWIRE_HAVE_NCCL; the
// class is declared everywhere but defined only then: reach it through
// make_device_transport(DeviceTransportKind::nccl, ...), which says when it is missing).
//
// The NCCL communicator is non-blocking (config.blocking = 0): init and every call that
// returns ncclInProgress are polled with ncclCommGetAsyncError against the deadline
// (THINWIRE_TIMEOUT_S). Collectives are enqueued on stream() and return; synchronize()
// polls the stream and the communicator's asynchronous error until the work is done. On
// expiry the communicator is aborted (ncclCommAbort) and Error(timeout) is thrown; on an
// NCCL error it is aborted and Error(transport_error) thrown. After an abort every call
// throws at once. NCCL does not say which peers are missing, and the messages say so.
#pragma once

#include <cstddef>
#include <string>

#include "transport/device_transport.hpp"

struct ncclComm;  // nccl.h: typedef struct ncclComm* ncclComm_t

namespace thinwire::detail {

class NcclTransport final : public DeviceTransport {
 public:
  // Collective over `host`: rank 0 creates the unique id and broadcasts it over `host`;
  // every rank makes `device` current and joins. Every rank fails together when one of
  // them cannot create its part (the outcome is agreed over `host`).
  NcclTransport(Transport& host, int device, double timeout_s);
  // ncclCommDestroy after a bounded ncclCommFinalize (abort on expiry); nothing after an
  // abort.
  ~NcclTransport() override;
  NcclTransport(const NcclTransport&) = delete;
  NcclTransport& operator=(const NcclTransport&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  const char* name() const override { return "nccl"; }

  void allreduce(void* data, std::size_t count, ElementType type, ReduceOp op) override;
  // Out of place or in place with send == recv + rank * bytes.
  void allgather(const void* send, void* recv, std::size_t bytes) override;
  // send and recv must not overlap.
  void alltoall(const void* send, void* recv, std::size_t bytes) override;
  void broadcast(void* data, std::size_t bytes, int root) override;
  // A one-element allreduce, then synchronize("barrier").
  void barrier() override;

  int device() const override { return device_; }
  void set_stream(void* stream) override { stream_ = stream; }
  void* stream() const override { return stream_; }
  void synchronize(const char* what) override;
  // ncclCommAbort; later calls throw at once.
  void abort(const std::string& why) override;

  bool aborted() const { return !aborted_.empty(); }
  double timeout_s() const { return timeout_s_; }

 private:
  void check_usable(const char* what) const;
  // An NCCL call's result: ncclInProgress is awaited (ncclCommGetAsyncError) within the
  // deadline; an error aborts the communicator and throws.
  void check(int result, const char* what, const char* call);
  // Polls ncclCommGetAsyncError until it leaves ncclInProgress (init, enqueue, finalize).
  void wait_ready(const char* what, const char* step);
  // Aborts and throws Error(timeout) for `what` after `waited` seconds.
  [[noreturn]] void expire(const char* what, const char* step, double waited);
  [[noreturn]] void async_failure(const char* what, int result);
  std::string who() const;

  ncclComm* comm_ = nullptr;
  int rank_ = 0, size_ = 1, device_ = 0;
  double timeout_s_ = 0;
  void* stream_ = nullptr;
  void* scratch_ = nullptr;  // barrier's device word
  std::string aborted_;      // non-empty after an abort: why
};

}  // namespace thinwire::detail
