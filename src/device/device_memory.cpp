#include "device/device_memory.hpp"

#include <utility>

#include "common/fail.hpp"
#include "launch.hpp"

namespace thinwire::detail {

void check_device(const std::string& err, const char* what, int rank) {
  if (!err.empty()) fail_with(ErrorCode::internal, "device", rank, what, ": ", err);
}

DeviceBuffer::~DeviceBuffer() {
  release();
}

DeviceBuffer::DeviceBuffer(DeviceBuffer&& other) noexcept
    : p_(std::exchange(other.p_, nullptr)), bytes_(std::exchange(other.bytes_, 0)) {}

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& other) noexcept {
  if (this != &other) {
    release();
    p_ = std::exchange(other.p_, nullptr);
    bytes_ = std::exchange(other.bytes_, 0);
  }
  return *this;
}

void DeviceBuffer::reserve(std::size_t bytes, int rank) {
  if (p_ && bytes <= bytes_) return;
  release();
  void* p = nullptr;
  check_device(kernels::device_alloc(&p, bytes), cat("allocating ", bytes, " bytes").c_str(), rank);
  p_ = p;
  bytes_ = bytes;
}

void DeviceBuffer::release() noexcept {
  if (p_) kernels::device_free(p_);  // frees synchronise: no kernel still uses the memory
  p_ = nullptr;
  bytes_ = 0;
}

float* DeviceFloats::ensure(std::size_t n, void* stream, int rank) {
  if (n_ == n && buffer_.get()) return data();
  buffer_.reserve(n * sizeof(float), rank);
  n_ = n;
  check_device(kernels::zero_async(buffer_.get(), n * sizeof(float), stream), "zeroing a memory",
               rank);
  return data();
}

float* DeviceFloats::resize(std::size_t n, int rank) {
  buffer_.reserve(n * sizeof(float), rank);
  n_ = n;
  return data();
}

PinnedBuffer::~PinnedBuffer() {
  if (p_) kernels::pinned_free(p_);
}

void PinnedBuffer::reserve(std::size_t bytes, int rank) {
  if (p_ && bytes <= bytes_) return;
  if (p_) kernels::pinned_free(p_);
  p_ = nullptr;
  bytes_ = 0;
  void* p = nullptr;
  check_device(kernels::pinned_alloc(&p, bytes), cat("allocating ", bytes, " pinned bytes").c_str(),
               rank);
  p_ = p;
  bytes_ = bytes;
}

DeviceStream::DeviceStream(int rank) {
  check_device(kernels::stream_create(&stream_), "creating a stream", rank);
  const std::string err = kernels::event_create(&event_);
  if (!err.empty()) {
    kernels::stream_destroy(stream_);
    check_device(err, "creating an event", rank);
  }
}

DeviceStream::~DeviceStream() {
  kernels::event_destroy(event_);
  kernels::stream_destroy(stream_);
}

void DeviceStream::wait_for(void* other, int rank) {
  check_device(kernels::event_record(event_, other), "recording an event on the caller's stream",
               rank);
  check_device(kernels::stream_wait_event(stream_, event_), "ordering after the caller's stream",
               rank);
}

void DeviceStream::synchronize(int rank) {
  check_device(kernels::stream_synchronize(stream_), "synchronising the reducer's stream", rank);
}

}  // namespace thinwire::detail
