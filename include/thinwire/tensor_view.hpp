// A non-owning view of one gradient tensor: pointer, element count, dtype, device, stream.
#pragma once

#include <cstddef>

#include "thinwire/dtype.hpp"

namespace thinwire {

class TensorView {
 public:
  TensorView() = default;

  // Host memory. The common case: an f32 gradient buffer.
  static TensorView host(float* data, std::size_t numel) {
    return TensorView(data, numel, DType::f32, kHost, nullptr);
  }
  static TensorView host(void* data, std::size_t numel, DType dtype) {
    return TensorView(data, numel, dtype, kHost, nullptr);
  }
  // CUDA device memory on device `device_index`; `stream` is a cudaStream_t (nullptr: the
  // legacy default stream). The header stays free of CUDA types on purpose.
  static TensorView cuda(void* data, std::size_t numel, DType dtype, int device_index,
                         void* stream = nullptr) {
    return TensorView(data, numel, dtype, device_index, stream);
  }

  void* data() const { return data_; }
  std::size_t numel() const { return numel_; }
  DType dtype() const { return dtype_; }
  std::size_t bytes() const { return numel_ * dtype_size(dtype_); }
  // -1 for host memory, else the CUDA device index.
  int device() const { return device_; }
  bool is_host() const { return device_ == kHost; }
  void* stream() const { return stream_; }

 private:
  static constexpr int kHost = -1;
  TensorView(void* data, std::size_t numel, DType dtype, int device, void* stream)
      : data_(data), numel_(numel), dtype_(dtype), device_(device), stream_(stream) {}

  void* data_ = nullptr;
  std::size_t numel_ = 0;
  DType dtype_ = DType::f32;
  int device_ = kHost;
  void* stream_ = nullptr;
};

}  // namespace thinwire
