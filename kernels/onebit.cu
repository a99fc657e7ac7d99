// The two-phase codec launchers of launch.hpp (chunk_encode, chunk_serve, chunk_decode and
// their sizes) with onebit's kernels; qsgd's work is in qsgd.cu (two_phase.cuh).
//
// onebit encode of chunk j (len elements), in three kernels:
//   1. sum_squares: x = x + g (written back) and per-tile sums of x^2 in double;
//   2. finalize: the chunk's sum in a fixed order, s = onebit_scale(sum, len), the header;
//   3. pack: each warp reads 32 consecutive elements (coalesced), __ballot_sync gives the 32
//      sign bits of a 32-element group, i.e. 4 bytes of the body (bit i%8 of byte i/8), and
//      the residual x - onebit_value(sign, s) is written by the lane that read x.
// The server step runs the same kernels with a first pass that decodes the P payloads
// (sum in rank order, / P, + server error) into the scratch buffer.
// Chunks start anywhere in x and payloads anywhere in out (byte granularity), so loads are
// scalar and coalesced rather than vectorised.
#include <cuda_runtime.h>

#include "chunk_codec.hpp"
#include "compress/onebit_math.hpp"
#include "compress/wire_check.hpp"
#include "launch.hpp"
#include "thinwire/config.hpp"
#include "two_phase.cuh"

namespace thinwire::kernels {

namespace {

using two_phase::Lengths;

using chunk::body_bytes;
using chunk::ceil_div;
using chunk::kOnebit;
using chunk::kQsgd;

constexpr int kThreads = 256;
constexpr std::uint64_t kTile = 4096;  // elements per block of the onebit passes
constexpr std::uint64_t kHeader = 32;  // wire_format.hpp's kHeaderBytes

std::uint64_t onebit_tiles(std::uint64_t len) {
  return ceil_div(len, kTile);
}

// Workspace of onebit: per-tile partial sums [parts][tiles] (double), then scales [parts].
std::size_t onebit_workspace_bytes(std::uint64_t max_len, int parts) {
  const std::uint64_t p = static_cast<std::uint64_t>(parts);
  return (p * onebit_tiles(max_len) * 8 + p * 4 + 255) / 256 * 256;
}

// ---- validation -------------------------------------------------------------------------

__global__ void check_headers_kernel(ChunkCodec c, const std::uint8_t* in, std::size_t stride,
                                     std::size_t size, int count, Lengths len,
                                     DecodeStatus* status) {
  if (status->code != kDecodeOk) return;
  for (int r = 0; r < count; ++r) {
    const std::uint64_t n = len.of(r);
    const detail::WireExpect e = chunk::wire_expect(c, n);
    std::uint64_t detail = 0;
    const std::uint32_t code =
        detail::wire_check_header(in + static_cast<std::uint64_t>(r) * stride, size, e, &detail);
    if (code != kDecodeOk) {
      status->from_rank = static_cast<std::uint32_t>(r);
      status->detail = detail;
      status->code = code;
      return;
    }
  }
  if (c.method == kQsgd) status->detail = two_phase::kCodeSentinel;
}

// The server's output when it rejected a payload (or the step already failed).
__global__ void poison_kernel(std::uint8_t* out, std::size_t bytes, const DecodeStatus* status) {
  const DecodeStatus st = *status;
  if (st.code == kDecodeOk) return;
  if (threadIdx.x == 0) detail::wire_write_poison(out, st.code, st.from_rank, st.detail);
  for (std::size_t i = 20 + threadIdx.x; i < bytes; i += blockDim.x) out[i] = 0;
}

std::string validate(const ChunkCodec& c, const std::uint8_t* in, std::size_t stride,
                     std::size_t size, int count, Lengths len, DecodeStatus* status,
                     cudaStream_t s) {
  check_headers_kernel<<<1, 1, 0, s>>>(c, in, stride, size, count, len, status);
  std::string err = two_phase::launch_status();
  if (!err.empty() || c.method != kQsgd) return err;
  return two_phase::qsgd_check_codes(c, in, stride, count, len, status, s);
}

// ---- onebit kernels ---------------------------------------------------------------------

struct Layout {
  std::uint64_t n;
  int parts;
  __device__ __forceinline__ std::uint64_t begin(int j) const {
    return detail::wire_chunk_begin(n, j, parts);
  }
};

// Server input: y = (sum of the P payloads' values in rank order) / P + server_error,
// written to scratch.
struct ServeSource {
  const std::uint8_t* in;
  std::size_t stride;
  int p;
  const float* server_error;
  float* scratch;
  __device__ __forceinline__ float operator()(std::uint64_t i) const {
    float y = 0.0f;
    for (int r = 0; r < p; ++r) {
      const std::uint8_t* q = in + static_cast<std::uint64_t>(r) * stride;
      const float s = __uint_as_float(detail::wire_load_u32(q + kHeader));
      const bool positive = (q[kHeader + 4 + (i >> 3)] >> (i & 7)) & 1u;
      y += detail::onebit_value(positive, s);
    }
    y /= static_cast<float>(p);
    if (server_error) y += server_error[i];
    scratch[i] = y;
    return y;
  }
};

// Grid (tiles, parts): partial[j * tiles + t] = sum over tile t of chunk j of v^2.
template <typename Source>
__global__ void __launch_bounds__(kThreads)
    sum_squares_kernel(Source src, Layout lay, double* partial, std::uint64_t tiles,
                       const DecodeStatus* gate) {
  if (gate && gate->code != kDecodeOk) return;
  const int j = blockIdx.y;
  const std::uint64_t b = lay.begin(j), len = lay.begin(j + 1) - b;
  const std::uint64_t t0 = blockIdx.x * kTile;
  if (t0 >= len) return;  // the whole block: no tile of this chunk here
  const std::uint64_t t1 = t0 + kTile < len ? t0 + kTile : len;
  double sq = 0.0;
  for (std::uint64_t i = t0 + threadIdx.x; i < t1; i += kThreads) {
    const float v = src(b + i);
    sq += static_cast<double>(v) * v;
  }
  __shared__ double red[kThreads / 32];
  sq = two_phase::block_sum<kThreads>(sq, red);
  if (threadIdx.x == 0) partial[static_cast<std::uint64_t>(j) * tiles + blockIdx.x] = sq;
}

// Grid (parts): chunk j's scale and header.
__global__ void __launch_bounds__(kThreads)
    finalize_kernel(Layout lay, const double* partial, std::uint64_t tiles, float* scales,
                    std::uint8_t* out, std::size_t stride, std::uint8_t dtype, double* stats,
                    const DecodeStatus* gate) {
  if (gate && gate->code != kDecodeOk) return;
  const int j = blockIdx.x;
  const std::uint64_t len = lay.begin(j + 1) - lay.begin(j);
  const std::uint64_t used = ceil_div(len, kTile);
  double sq = 0.0;
  for (std::uint64_t t = threadIdx.x; t < used; t += kThreads)
    sq += partial[static_cast<std::uint64_t>(j) * tiles + t];
  __shared__ double red[kThreads / 32];
  sq = two_phase::block_sum<kThreads>(sq, red);
  if (threadIdx.x == 0) {
    const float s = detail::onebit_scale(sq, len);
    scales[j] = s;
    std::uint8_t* o = out + static_cast<std::uint64_t>(j) * stride;
    detail::wire_write_header(o, kOnebit, dtype, len, 1, 0, 4 + ceil_div(len, 8));
    detail::wire_store_u32(o + kHeader, __float_as_uint(s));
    if (stats) atomicAdd(stats + 1, sq);
  }
}

// Grid (tiles, parts): sign bits of tile t of chunk j and its residual.
__global__ void __launch_bounds__(kThreads)
    pack_kernel(const float* in, Layout lay, const float* scales, std::uint8_t* out,
                std::size_t stride, float* residual, double* stats, const DecodeStatus* gate) {
  if (gate && gate->code != kDecodeOk) return;
  const int j = blockIdx.y;
  const std::uint64_t b = lay.begin(j), len = lay.begin(j + 1) - b;
  const std::uint64_t t0 = blockIdx.x * kTile;
  if (t0 >= len) return;
  const float s = scales[j];
  const std::uint64_t nbytes = ceil_div(len, 8);
  std::uint8_t* bits = out + static_cast<std::uint64_t>(j) * stride + kHeader + 4;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  double err = 0.0;
  // 128 groups of 32 elements per tile; warp w takes groups w, w + 8, ...
  for (std::uint64_t g = warp; g < kTile / 32; g += kThreads / 32) {
    const std::uint64_t g0 = t0 + g * 32;
    if (g0 >= len) break;  // uniform over the warp
    const std::uint64_t i = g0 + lane;
    const bool valid = i < len;
    const float v = valid ? in[b + i] : 0.0f;
    const bool positive = valid && detail::onebit_sign(v);
    const unsigned word = __ballot_sync(0xffffffffu, positive);
    if (lane < 4 && g0 / 8 + lane < nbytes)
      bits[g0 / 8 + lane] = static_cast<std::uint8_t>(word >> (8 * lane));
    if (valid) {
      const float r = v - detail::onebit_value(positive, s);
      if (residual) residual[b + i] = r;
      err += static_cast<double>(r) * r;
    }
  }
  if (!stats) return;  // uniform over the grid
  __shared__ double red[kThreads / 32];
  err = two_phase::block_sum<kThreads>(err, red);
  if (threadIdx.x == 0) atomicAdd(stats, err);
}

// Grid (tiles, parts): out[begin(j) + i] = chunk j's value i.
__global__ void __launch_bounds__(kThreads)
    decode_kernel(const std::uint8_t* in, std::size_t stride, Layout lay, float* out,
                  const DecodeStatus* status) {
  if (status->code != kDecodeOk) return;
  const int j = blockIdx.y;
  const std::uint64_t b = lay.begin(j), len = lay.begin(j + 1) - b;
  const std::uint64_t t0 = blockIdx.x * kTile;
  if (t0 >= len) return;
  const std::uint64_t t1 = t0 + kTile < len ? t0 + kTile : len;
  const std::uint8_t* q = in + static_cast<std::uint64_t>(j) * stride;
  const float s = __uint_as_float(detail::wire_load_u32(q + kHeader));
  const std::uint8_t* bits = q + kHeader + 4;
  for (std::uint64_t i = t0 + threadIdx.x; i < t1; i += kThreads)
    out[b + i] = detail::onebit_value((bits[i >> 3] >> (i & 7)) & 1u, s);
}

dim3 grid(std::uint64_t tiles, int parts) {
  return dim3(static_cast<unsigned>(tiles), static_cast<unsigned>(parts));
}

// Passes 2 and 3 after pass 1 filled `partial`.
std::string onebit_finish(const float* in, Layout lay, double* partial, std::uint64_t tiles,
                          float* scales, std::uint8_t* out, std::size_t stride, DType dtype,
                          float* residual, double* stats, const DecodeStatus* gate,
                          cudaStream_t s) {
  finalize_kernel<<<lay.parts, kThreads, 0, s>>>(lay, partial, tiles, scales, out, stride,
                                                 static_cast<std::uint8_t>(dtype), stats, gate);
  if (tiles)
    pack_kernel<<<grid(tiles, lay.parts), kThreads, 0, s>>>(in, lay, scales, out, stride, residual,
                                                            stats, gate);
  return two_phase::launch_status();
}

}  // namespace

std::size_t chunk_encoded_bytes(const ChunkCodec& c, std::size_t n) {
  if (!chunk::check(c).empty()) return 0;
  return kHeader + body_bytes(c, n);
}

std::size_t chunk_workspace_bytes(const ChunkCodec& c, std::size_t n, int parts) {
  if (!chunk::check(c).empty() || parts < 1) return 0;
  if (c.method == kQsgd) return two_phase::qsgd_workspace_bytes(c, n, parts);
  return onebit_workspace_bytes(ceil_div(n, static_cast<std::uint64_t>(parts)), parts);
}

std::string chunk_encode(const ChunkEncode& a, void* stream) {
  std::string err = chunk::check(a.codec);
  if (!err.empty()) return err;
  if (a.parts < 1 || a.parts > 65535) return "chunk_encode: parts must be in 1..65535";
  if (a.n == 0) return {};
  if (!a.x || !a.out) return "chunk_encode: null x or out";
  const std::uint64_t max_len = ceil_div(a.n, static_cast<std::uint64_t>(a.parts));
  if (a.stride < chunk_encoded_bytes(a.codec, max_len))
    return "chunk_encode: stride is smaller than a chunk's payload";
  const std::size_t need = chunk_workspace_bytes(a.codec, a.n, a.parts);
  if (a.workspace_bytes < need || (need && !a.workspace))
    return "chunk_encode: workspace smaller than chunk_workspace_bytes()";
  auto s = static_cast<cudaStream_t>(stream);
  if (a.codec.method == kQsgd) return two_phase::qsgd_encode(a, s);

  const std::uint64_t tiles = onebit_tiles(max_len);
  auto* partial = static_cast<double*>(a.workspace);
  auto* scales = reinterpret_cast<float*>(partial + static_cast<std::uint64_t>(a.parts) * tiles);
  const Layout lay{a.n, a.parts};
  sum_squares_kernel<<<grid(tiles, a.parts), kThreads, 0, s>>>(two_phase::EncodeSource{a.x, a.g},
                                                               lay, partial, tiles, nullptr);
  err = two_phase::launch_status();
  if (!err.empty()) return err;
  return onebit_finish(a.x, lay, partial, tiles, scales, a.out, a.stride, a.dtype, a.residual,
                       a.stats, nullptr, s);
}

std::string chunk_serve(const ChunkServe& a, void* stream) {
  std::string err = chunk::check(a.codec);
  if (!err.empty()) return err;
  if (a.p < 1 || a.p > 65535) return "chunk_serve: p must be in 1..65535";
  if (!a.in || !a.out || !a.status) return "chunk_serve: null in, out or status";
  if (a.len > 0 && !a.scratch) return "chunk_serve: null scratch";
  const std::size_t need = chunk_workspace_bytes(a.codec, a.len, 1);
  if (a.workspace_bytes < need || (need && !a.workspace))
    return "chunk_serve: workspace smaller than chunk_workspace_bytes(codec, len, 1)";
  auto s = static_cast<cudaStream_t>(stream);
  err = validate(a.codec, a.in, a.stride, a.size, a.p, Lengths{a.len, 1, false}, a.status, s);
  if (!err.empty()) return err;
  if (a.codec.method == kQsgd) {
    err = two_phase::qsgd_serve(a, s);
  } else {
    const std::uint64_t tiles = onebit_tiles(a.len);
    auto* partial = static_cast<double*>(a.workspace);
    auto* scales = reinterpret_cast<float*>(partial + tiles);
    const Layout lay{a.len, 1};
    if (tiles)
      sum_squares_kernel<<<grid(tiles, 1), kThreads, 0, s>>>(
          ServeSource{a.in, a.stride, a.p, a.server_error, a.scratch}, lay, partial, tiles,
          a.status);
    err = two_phase::launch_status();
    if (err.empty())
      err = onebit_finish(a.scratch, lay, partial, tiles, scales, a.out, 0, a.dtype, a.server_error,
                          nullptr, a.status, s);
  }
  if (!err.empty()) return err;
  poison_kernel<<<1, kThreads, 0, s>>>(a.out, chunk_encoded_bytes(a.codec, a.len), a.status);
  return two_phase::launch_status();
}

std::string chunk_decode(const ChunkCodec& c, const std::uint8_t* in, std::size_t stride,
                         std::size_t size, std::size_t n, int parts, float* out,
                         DecodeStatus* status, void* stream) {
  std::string err = chunk::check(c);
  if (!err.empty()) return err;
  if (parts < 1 || parts > 65535) return "chunk_decode: parts must be in 1..65535";
  if (!in || !status || (n > 0 && !out)) return "chunk_decode: null in, out or status";
  auto s = static_cast<cudaStream_t>(stream);
  err = validate(c, in, stride, size, parts, Lengths{n, parts, true}, status, s);
  if (!err.empty() || n == 0) return err;
  if (c.method == kQsgd) return two_phase::qsgd_decode(c, in, stride, n, parts, out, status, s);
  const std::uint64_t tiles = onebit_tiles(ceil_div(n, static_cast<std::uint64_t>(parts)));
  decode_kernel<<<grid(tiles, parts), kThreads, 0, s>>>(in, stride, Layout{n, parts}, out, status);
  return two_phase::launch_status();
}

}  // namespace thinwire::kernels
