// dtype conversion kernels: the per-element arithmetic is common/half.hpp's, shared with
// the host backend, so both round identically.
#include <cuda_runtime.h>

#include "common/half.hpp"
#include "launch.hpp"

namespace thinwire::kernels {

namespace {

template <bool kBf16>
__global__ void half_to_float_kernel(const std::uint16_t* __restrict__ in, float* __restrict__ out,
                                     std::size_t n) {
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x)
    out[i] = kBf16 ? detail::bf16_to_f32(in[i]) : detail::f16_to_f32(in[i]);
}

template <bool kBf16>
__global__ void float_to_half_kernel(const float* __restrict__ in, std::uint16_t* __restrict__ out,
                                     std::size_t n) {
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x)
    out[i] = kBf16 ? detail::f32_to_bf16(in[i]) : detail::f32_to_f16(in[i]);
}

unsigned grid_for(std::size_t n, unsigned block) {
  const std::size_t blocks = (n + block - 1) / block;
  return static_cast<unsigned>(blocks < 65535 * 32 ? (blocks ? blocks : 1) : 65535 * 32);
}

std::string status() {
  const cudaError_t e = cudaGetLastError();
  return e == cudaSuccess ? std::string() : std::string(cudaGetErrorString(e));
}

}  // namespace

std::string half_to_float(const std::uint16_t* from16, float* to, std::size_t n, bool bf16,
                          void* stream) {
  if (n == 0) return {};
  const unsigned block = 256;
  auto s = static_cast<cudaStream_t>(stream);
  if (bf16)
    half_to_float_kernel<true><<<grid_for(n, block), block, 0, s>>>(from16, to, n);
  else
    half_to_float_kernel<false><<<grid_for(n, block), block, 0, s>>>(from16, to, n);
  return status();
}

std::string float_to_half(const float* from, std::uint16_t* to16, std::size_t n, bool bf16,
                          void* stream) {
  if (n == 0) return {};
  const unsigned block = 256;
  auto s = static_cast<cudaStream_t>(stream);
  if (bf16)
    float_to_half_kernel<true><<<grid_for(n, block), block, 0, s>>>(from, to16, n);
  else
    float_to_half_kernel<false><<<grid_for(n, block), block, 0, s>>>(from, to16, n);
  return status();
}

}  // namespace thinwire::kernels
