// Element-wise kernels of error feedback and EControl, the non-finite scan and residual
// norms. The per-element arithmetic is reducer/error_feedback_math.hpp's, shared with the
// host pipeline; with --fmad=false both round identically.
#include <cuda_runtime.h>

#include <cstdint>

#include "launch.hpp"
#include "reducer/error_feedback_math.hpp"

namespace thinwire::kernels {

namespace {

constexpr unsigned kBlock = 256;

unsigned grid_for(std::size_t work, unsigned block, std::size_t cap = 65535u * 32u) {
  const std::size_t blocks = (work + block - 1) / block;
  return static_cast<unsigned>(blocks < cap ? (blocks ? blocks : 1) : cap);
}

std::string status() {
  const cudaError_t e = cudaGetLastError();
  return e == cudaSuccess ? std::string() : std::string(cudaGetErrorString(e));
}

// ---- maps: NIn input arrays, NOut output arrays (outputs may alias inputs, element by
// element: each element's inputs are all read before any of its outputs is written) ----------

template <int NIn, int NOut>
struct Arrays {
  const float* in[NIn];
  float* out[NOut];
};

__device__ __forceinline__ float lane(const float4& v, int l) {
  return l == 0 ? v.x : l == 1 ? v.y : l == 2 ? v.z : v.w;
}
__device__ __forceinline__ void set_lane(float4& v, int l, float x) {
  if (l == 0)
    v.x = x;
  else if (l == 1)
    v.y = x;
  else if (l == 2)
    v.z = x;
  else
    v.w = x;
}

// Scalar path: any alignment.
template <int NIn, int NOut, class F>
__global__ void map_kernel(F f, Arrays<NIn, NOut> a, std::size_t n) {
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
    float in[NIn], out[NOut];
#pragma unroll
    for (int k = 0; k < NIn; ++k) in[k] = a.in[k][i];
    f(in, out);
#pragma unroll
    for (int k = 0; k < NOut; ++k) a.out[k][i] = out[k];
  }
}

// Vector path: every array 16-byte aligned; quads [0, n / 4), then the tail scalar.
template <int NIn, int NOut, class F>
__global__ void map_kernel4(F f, Arrays<NIn, NOut> a, std::size_t n) {
  const std::size_t quads = n / 4;
  const std::size_t stride = static_cast<std::size_t>(gridDim.x) * blockDim.x;
  const std::size_t tid = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x;
  for (std::size_t q = tid; q < quads; q += stride) {
    float4 in4[NIn], out4[NOut];
#pragma unroll
    for (int k = 0; k < NIn; ++k) in4[k] = reinterpret_cast<const float4*>(a.in[k])[q];
#pragma unroll
    for (int l = 0; l < 4; ++l) {
      float in[NIn], out[NOut];
#pragma unroll
      for (int k = 0; k < NIn; ++k) in[k] = lane(in4[k], l);
      f(in, out);
#pragma unroll
      for (int k = 0; k < NOut; ++k) set_lane(out4[k], l, out[k]);
    }
#pragma unroll
    for (int k = 0; k < NOut; ++k) reinterpret_cast<float4*>(a.out[k])[q] = out4[k];
  }
  for (std::size_t i = quads * 4 + tid; i < n; i += stride) {
    float in[NIn], out[NOut];
#pragma unroll
    for (int k = 0; k < NIn; ++k) in[k] = a.in[k][i];
    f(in, out);
#pragma unroll
    for (int k = 0; k < NOut; ++k) a.out[k][i] = out[k];
  }
}

template <int NIn, int NOut, class F>
std::string launch_map(F f, const Arrays<NIn, NOut>& a, std::size_t n, void* stream) {
  if (n == 0) return {};
  auto s = static_cast<cudaStream_t>(stream);
  bool aligned = true;
  for (int k = 0; k < NIn; ++k) aligned &= reinterpret_cast<std::uintptr_t>(a.in[k]) % 16 == 0;
  for (int k = 0; k < NOut; ++k) aligned &= reinterpret_cast<std::uintptr_t>(a.out[k]) % 16 == 0;
  if (aligned && n >= 4)
    map_kernel4<NIn, NOut><<<grid_for((n + 3) / 4, kBlock), kBlock, 0, s>>>(f, a, n);
  else
    map_kernel<NIn, NOut><<<grid_for(n, kBlock), kBlock, 0, s>>>(f, a, n);
  return status();
}

struct Add {  // {a, b} -> a + b
  __device__ void operator()(const float* in, float* out) const { out[0] = in[0] + in[1]; }
};
struct Sub {  // {a, b} -> a - b
  __device__ void operator()(const float* in, float* out) const { out[0] = in[0] - in[1]; }
};
struct Div {  // {a} -> a / d
  float d;
  __device__ void operator()(const float* in, float* out) const { out[0] = in[0] / d; }
};
struct EcontrolInput {  // {e, g, h} -> x
  float eta;
  __device__ void operator()(const float* in, float* out) const {
    out[0] = detail::econtrol_input_of(in[0], in[1], in[2], eta);
  }
};
struct EcontrolAfterEncode {  // {e, g, r} -> {e, h}
  float eta;
  __device__ void operator()(const float* in, float* out) const {
    const detail::EcontrolNext next = detail::econtrol_next(in[0], in[1], in[2], eta);
    out[0] = next.e;
    out[1] = next.h;
  }
};
struct EcontrolAfterDelta {  // {e, h, x, delta} -> {e, h}
  float eta;
  __device__ void operator()(const float* in, float* out) const {
    const detail::EcontrolNext next = detail::econtrol_next_delta(in[0], in[1], in[2], in[3], eta);
    out[0] = next.e;
    out[1] = next.h;
  }
};
struct EcontrolFinish {  // {H, g} -> {H + g, H + g}
  __device__ void operator()(const float* in, float* out) const {
    const float sum = in[0] + in[1];
    out[0] = sum;
    out[1] = sum;
  }
};

// ---- first non-finite: exponent bits all set, as reducer/non_finite.cpp ---------------------

template <typename Bits, Bits kExponent>
__global__ void first_non_finite_kernel(const Bits* __restrict__ x, std::size_t n,
                                        unsigned long long* first) {
  // Each thread scans its elements in ascending order and stops at its first hit; a warp
  // then keeps its minimum and one lane updates *first.
  unsigned long long found = ~0ull;
  const std::size_t stride = static_cast<std::size_t>(gridDim.x) * blockDim.x;
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < n;
       i += stride) {
    if ((x[i] & kExponent) == kExponent) {
      found = i;
      break;
    }
  }
  for (int offset = 16; offset > 0; offset >>= 1) {
    const unsigned long long other = __shfl_down_sync(0xffffffffu, found, offset);
    found = other < found ? other : found;
  }
  if ((threadIdx.x & 31u) == 0 && found != ~0ull) atomicMin(first, found);
}

// ---- residual norms -----------------------------------------------------------------------------

__device__ __forceinline__ double warp_sum(double v) {
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(0xffffffffu, v, offset);
  return v;
}

__global__ void residual_norms_kernel(const float* __restrict__ x, const float* __restrict__ y,
                                      std::size_t n, double* stats) {
  __shared__ double shared_err[kBlock / 32], shared_norm[kBlock / 32];
  double err = 0.0, norm = 0.0;
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
    const float xi = x[i];
    const float r = xi - y[i];
    err += static_cast<double>(r) * r;
    norm += static_cast<double>(xi) * xi;
  }
  err = warp_sum(err);
  norm = warp_sum(norm);
  const unsigned warp = threadIdx.x / 32, lane_id = threadIdx.x % 32;
  if (lane_id == 0) {
    shared_err[warp] = err;
    shared_norm[warp] = norm;
  }
  __syncthreads();
  if (warp == 0) {
    err = lane_id < kBlock / 32 ? shared_err[lane_id] : 0.0;
    norm = lane_id < kBlock / 32 ? shared_norm[lane_id] : 0.0;
    err = warp_sum(err);
    norm = warp_sum(norm);
    if (lane_id == 0) {
      atomicAdd(stats, err);
      atomicAdd(stats + 1, norm);
    }
  }
}

}  // namespace

std::string ef_accumulate(float* e, const float* g, std::size_t n, void* stream) {
  return launch_map(Add{}, Arrays<2, 1>{{e, g}, {e}}, n, stream);
}

std::string econtrol_input(float* x, const float* e, const float* g, const float* h, float eta,
                           std::size_t n, void* stream) {
  return launch_map(EcontrolInput{eta}, Arrays<3, 1>{{e, g, h}, {x}}, n, stream);
}

std::string econtrol_after_encode(float* e, float* h, const float* g, const float* r, float eta,
                                  std::size_t n, void* stream) {
  return launch_map(EcontrolAfterEncode{eta}, Arrays<3, 2>{{e, g, r}, {e, h}}, n, stream);
}

std::string econtrol_after_delta(float* e, float* h, const float* x, const float* delta, float eta,
                                 std::size_t n, void* stream) {
  return launch_map(EcontrolAfterDelta{eta}, Arrays<4, 2>{{e, h, x, delta}, {e, h}}, n, stream);
}

std::string econtrol_finish(float* global, float* g, std::size_t n, void* stream) {
  return launch_map(EcontrolFinish{}, Arrays<2, 2>{{global, g}, {global, g}}, n, stream);
}

std::string divide(float* out, const float* in, float divisor, std::size_t n, void* stream) {
  return launch_map(Div{divisor}, Arrays<1, 1>{{in}, {out}}, n, stream);
}

std::string subtract(float* x, const float* y, std::size_t n, void* stream) {
  return launch_map(Sub{}, Arrays<2, 1>{{x, y}, {x}}, n, stream);
}

std::string first_non_finite(const void* x, DType dtype, std::size_t n, std::uint64_t* first,
                             void* stream) {
  if (n == 0) return {};
  static_assert(sizeof(std::uint64_t) == sizeof(unsigned long long), "u64 atomics");
  auto s = static_cast<cudaStream_t>(stream);
  auto* out = reinterpret_cast<unsigned long long*>(first);
  // Few blocks: threads stop at their first hit, so a tensor full of NaN costs one atomic per
  // warp at most.
  const unsigned grid = grid_for(n, kBlock, 2048);
  switch (dtype) {
    case DType::f32:
      first_non_finite_kernel<std::uint32_t, 0x7f800000u>
          <<<grid, kBlock, 0, s>>>(static_cast<const std::uint32_t*>(x), n, out);
      break;
    case DType::f16:
      first_non_finite_kernel<std::uint16_t, 0x7c00u>
          <<<grid, kBlock, 0, s>>>(static_cast<const std::uint16_t*>(x), n, out);
      break;
    case DType::bf16:
      first_non_finite_kernel<std::uint16_t, 0x7f80u>
          <<<grid, kBlock, 0, s>>>(static_cast<const std::uint16_t*>(x), n, out);
      break;
    default:
      return "first_non_finite: unknown dtype";
  }
  return status();
}

std::string residual_norms(const float* x, const float* y, std::size_t n, double* stats,
                           void* stream) {
  if (n == 0) return {};
  residual_norms_kernel<<<grid_for(n, kBlock, 1024), kBlock, 0,
                          static_cast<cudaStream_t>(stream)>>>(x, y, n, stats);
  return status();
}

}  // namespace thinwire::kernels
