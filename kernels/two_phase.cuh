// Internal to kernels/onebit.cu and kernels/qsgd.cu: the pieces the two-phase codecs share.
// onebit.cu defines the launchers of launch.hpp ("two-phase codecs") and the validation
// kernels; it dispatches qsgd's work to the helpers declared here (qsgd.cu).
//
// Decode status protocol (the same order as kernels/emulated/two_phase.cpp):
//   1. check_headers_kernel (one thread): if status->code is already set, nothing; else the
//      headers of the payloads in order, the first error recorded. When all are valid and
//      the codec is qsgd, status->detail = kCodeSentinel (code stays 0).
//   2. qsgd only: every code out of range atomicMin's (payload << 40 | element) into
//      status->detail while status->code == 0;
//   3. qsgd only: finish_status_kernel turns a detail below the sentinel into
//      {kDecodeBadCode, payload, element} and resets an untouched sentinel to 0.
// Every later kernel of the launch reads status->code and writes nothing when it is set.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "compress/wire_check.hpp"
#include "launch.hpp"

namespace thinwire::kernels::two_phase {

constexpr std::uint64_t kCodeSentinel = ~std::uint64_t{0};
constexpr int kElementBits = 40;  // payload << 40 | element in the code search

// Chunk j of a layer of n elements: [chunk_begin(n, j, parts), chunk_begin(n, j + 1, parts)).
__host__ __device__ __forceinline__ std::uint64_t chunk_len(std::uint64_t n, int j, int parts) {
  return detail::wire_chunk_begin(n, j + 1, parts) - detail::wire_chunk_begin(n, j, parts);
}

// The lengths of the payloads one launch reads: chunk r of a layer of n elements
// (`chunked`), or n elements each (a server's P versions of its chunk).
struct Lengths {
  std::uint64_t n;
  int parts;
  bool chunked;
  __host__ __device__ __forceinline__ std::uint64_t of(int r) const {
    return chunked ? chunk_len(n, r, parts) : n;
  }
};

// ---- reductions (fixed order: the same bits from run to run) --------------------------------

__device__ __forceinline__ double warp_sum(double v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ unsigned warp_max(unsigned v) {
  for (int o = 16; o > 0; o >>= 1) {
    const unsigned w = __shfl_xor_sync(0xffffffffu, v, o);
    v = w > v ? w : v;
  }
  return v;
}

// Sum over a block of kThreads (a multiple of 32); the result in every thread. `shared`
// holds kThreads / 32 doubles. Contains __syncthreads(): every thread must call it.
template <int kThreads>
__device__ __forceinline__ double block_sum(double v, double* shared) {
  v = warp_sum(v);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  __syncthreads();  // `shared` may still be read by an earlier call
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  double t = lane < kThreads / 32 ? shared[lane] : 0.0;
  return warp_sum(t);
}

// ---- qsgd helpers (qsgd.cu) ------------------------------------------------------------------

std::size_t qsgd_workspace_bytes(const ChunkCodec& c, std::size_t n, int parts);

// chunk_encode's work for qsgd (arguments already checked).
std::string qsgd_encode(const ChunkEncode& a, cudaStream_t s);

// chunk_serve's work after validation: decode-average (+ server error) into a.scratch,
// encode into a.out, new server error; every kernel skips when a.status->code is set.
std::string qsgd_serve(const ChunkServe& a, cudaStream_t s);

// Steps 2 and 3 of the status protocol for `count` qsgd payloads.
std::string qsgd_check_codes(const ChunkCodec& c, const std::uint8_t* in, std::size_t stride,
                             int count, Lengths len, DecodeStatus* status, cudaStream_t s);

// chunk_decode's work after validation (skips when status->code is set).
std::string qsgd_decode(const ChunkCodec& c, const std::uint8_t* in, std::size_t stride,
                        std::size_t n, int parts, float* out, const DecodeStatus* status,
                        cudaStream_t s);

// Worker input of both codecs: x = x + g (the f32 sum, x first; written back when g is
// given, so that x becomes the error-feedback input the residual is taken from).
struct EncodeSource {
  float* x;
  const float* g;
  __device__ __forceinline__ float operator()(std::uint64_t i) const {
    float v = x[i];
    if (g) {
      v = v + g[i];
      x[i] = v;
    }
    return v;
  }
};

inline std::string launch_status() {
  const cudaError_t e = cudaGetLastError();
  return e == cudaSuccess ? std::string() : std::string(cudaGetErrorString(e));
}

}  // namespace thinwire::kernels::two_phase
