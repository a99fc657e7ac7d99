// RAII owners of device memory, pinned host memory, streams and events, over the launchers
// of kernels/launch.hpp (so that they work over the CPU emulation too), and check_device(),
// which turns a launcher's error string into thinwire::Error.
#pragma once

#include <cstddef>
#include <string>
#include <utility>

namespace thinwire::detail {

// Throws Error(internal) "thinwire device error [rank R]: <what>: <err>" unless err is empty.
void check_device(const std::string& err, const char* what, int rank);

// Where a GrowBuffer's memory lives.
enum class MemoryKind { device, pinned };

// Grow-only buffer: reserve() keeps the memory when it is large enough, else frees it and
// allocates anew (contents are lost). Device memory, or page-locked host memory for
// transfers. Not copyable.
template <MemoryKind kKind>
class GrowBuffer {
 public:
  GrowBuffer() = default;
  ~GrowBuffer() { release(); }
  GrowBuffer(GrowBuffer&& other) noexcept
      : p_(std::exchange(other.p_, nullptr)), bytes_(std::exchange(other.bytes_, 0)) {}
  GrowBuffer& operator=(GrowBuffer&& other) noexcept {
    if (this != &other) {
      release();
      p_ = std::exchange(other.p_, nullptr);
      bytes_ = std::exchange(other.bytes_, 0);
    }
    return *this;
  }
  GrowBuffer(const GrowBuffer&) = delete;
  GrowBuffer& operator=(const GrowBuffer&) = delete;

  void reserve(std::size_t bytes, int rank);
  void release() noexcept;
  std::size_t capacity() const { return bytes_; }
  void* get() const { return p_; }
  template <typename T>
  T* as() const {
    return static_cast<T*>(p_);
  }

 private:
  void* p_ = nullptr;
  std::size_t bytes_ = 0;
};

using DeviceBuffer = GrowBuffer<MemoryKind::device>;
using PinnedBuffer = GrowBuffer<MemoryKind::pinned>;

// A device array of n floats that remembers n: an error-feedback memory, h, Q...
// ensure(n) gives n zeros when it held another size (as the host's std::vector states do).
class DeviceFloats {
 public:
  bool empty() const { return n_ == 0; }
  std::size_t size() const { return n_; }
  float* data() const { return buffer_.as<float>(); }
  // Zeros of size n unless it already holds n floats. Asynchronous on stream.
  float* ensure(std::size_t n, void* stream, int rank);
  // Size n, contents undefined.
  float* resize(std::size_t n, int rank);
  void clear() noexcept {
    n_ = 0;
    buffer_.release();
  }

 private:
  DeviceBuffer buffer_;
  std::size_t n_ = 0;
};

// Makes `device` the calling thread's current CUDA device for the scope and restores the
// previous one after it (as PyTorch's device guards do), so a step leaves the caller's
// current device as it found it.
class DeviceGuard {
 public:
  DeviceGuard(int device, int rank);
  ~DeviceGuard();
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = -1;
};

// A non-blocking stream and an event, created on the current device.
class DeviceStream {
 public:
  explicit DeviceStream(int rank);
  ~DeviceStream();
  DeviceStream(const DeviceStream&) = delete;
  DeviceStream& operator=(const DeviceStream&) = delete;
  void* get() const { return stream_; }
  // Work enqueued on this stream from now on waits for what `other` holds now.
  void wait_for(void* other, int rank);
  void synchronize(int rank);

 private:
  void* stream_ = nullptr;
  void* event_ = nullptr;
};

}  // namespace thinwire::detail
