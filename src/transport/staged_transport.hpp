// StagedTransport: device collectives staged through pinned host memory to a host Transport.
//
// Each collective copies its device input into a pinned buffer on stream(), waits for the
// stream, runs the host collective (with the host transport's own deadline), copies the
// result back on stream() and waits again, so it has finished when the call returns. The
// pinned buffers grow to the largest collective seen and are reused. In the CPU emulation
// device pointers are host memory and the copies are plain memmoves.
#pragma once

#include <cstddef>
#include <string>

#include "transport/device_transport.hpp"

namespace thinwire::detail {

class StagedTransport final : public DeviceTransport {
 public:
  // Makes `device` current (kernels::set_device). `host` must outlive the transport.
  StagedTransport(Transport& host, int device);
  ~StagedTransport() override;
  StagedTransport(const StagedTransport&) = delete;
  StagedTransport& operator=(const StagedTransport&) = delete;

  int rank() const override { return host_.rank(); }
  int size() const override { return host_.size(); }
  const char* name() const override { return name_.c_str(); }

  void allreduce(void* data, std::size_t count, ElementType type, ReduceOp op) override;
  void allgather(const void* send, void* recv, std::size_t bytes) override;
  void alltoall(const void* send, void* recv, std::size_t bytes) override;
  void broadcast(void* data, std::size_t bytes, int root) override;
  // Waits for the work already on stream(), then the host barrier.
  void barrier() override;

  int device() const override { return device_; }
  void set_stream(void* stream) override { stream_ = stream; }
  void* stream() const override { return stream_; }
  // A local wait for stream(): the collectives themselves have finished on return.
  void synchronize(const char* what) override;
  void abort(const std::string& why) override;

  // Bytes of pinned memory held (for tests).
  std::size_t staging_bytes() const { return capacity_; }

 private:
  void check_usable(const char* what) const;
  // The pinned buffer, at least `bytes` long.
  unsigned char* stage(std::size_t bytes, const char* what);
  void copy(void* dst, const void* src, std::size_t bytes, const char* what);
  void wait(const char* what);

  Transport& host_;
  int device_;
  void* stream_ = nullptr;
  std::string name_;
  void* pinned_ = nullptr;
  std::size_t capacity_ = 0;
  std::string aborted_;  // non-empty after abort(): why
};

}  // namespace thinwire::detail
