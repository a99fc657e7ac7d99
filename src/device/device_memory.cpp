#include "device/device_memory.hpp"

#include <utility>

#include "common/fail.hpp"
#include "launch.hpp"

namespace thinwire::detail {

void check_device(const std::string& err, const char* what, int rank) {
  if (!err.empty()) fail_with(ErrorCode::internal, "device", rank, what, ": ", err);
}

template <MemoryKind kKind>
void GrowBuffer<kKind>::reserve(std::size_t bytes, int rank) {
  if (p_ && bytes <= bytes_) return;
  release();
  void* p = nullptr;
  const bool device = kKind == MemoryKind::device;
  check_device(device ? kernels::device_alloc(&p, bytes) : kernels::pinned_alloc(&p, bytes),
               cat("allocating ", bytes, device ? " bytes" : " pinned bytes").c_str(), rank);
  p_ = p;
  bytes_ = bytes;
}

template <MemoryKind kKind>
void GrowBuffer<kKind>::release() noexcept {
  // The frees synchronise: no kernel or copy still uses the memory.
  if (p_) kKind == MemoryKind::device ? kernels::device_free(p_) : kernels::pinned_free(p_);
  p_ = nullptr;
  bytes_ = 0;
}

template class GrowBuffer<MemoryKind::device>;
template class GrowBuffer<MemoryKind::pinned>;

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

DeviceGuard::DeviceGuard(int device, int rank) {
  int current = -1;
  if (kernels::get_device(&current).empty()) previous_ = current;
  if (current != device) check_device(kernels::set_device(device), "cudaSetDevice", rank);
}

DeviceGuard::~DeviceGuard() {
  int current = -1;
  if (previous_ >= 0 && kernels::get_device(&current).empty() && current != previous_)
    kernels::set_device(previous_);
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
