// qsgd's two-phase kernels (the launchers are in onebit.cu; see two_phase.cuh).
//
// Encode of chunk j (buckets of `bucket` elements from the chunk's start):
//   1. seg: one warp per segment of at most kSeg elements of a bucket: x = x + g (written
//      back; or, on the server, the decoded average written to scratch), the segment's
//      largest finite |x| (order-free, exact) and sum x^2 (double) into the workspace;
//   2. finalize: one thread per bucket: the bucket's max over its segments, then
//      (contractive) the rounding variance pass 3 and a second finalize, which sets the
//      scale s * qsgd_contraction(sum x^2, variance (s/L)^2) on the wire;
//   3. variance (contractive only): one warp per segment, sum p(1 - p) with
//      p = qsgd_fraction(x, max, L) in double;
//   4. codes: one thread per 8 elements, whose 8 codes fill exactly `bits` bytes: uniforms
//      RandomStream::uniform(offset + chunk begin + i), q = qsgd_quantize(x, max, L, u) (the
//      codes of the max scale, as the host), q + L packed LSB-first, and the residual
//      x - qsgd_value(q, unit(final scale)). Every byte of the code area has one writer.
// Codes are the host's bits; sums differ from the host's 8-lane order, so contracted scales
// may differ in the last bits.
#include <cuda_runtime.h>

#include "common/philox.hpp"
#include "compress/qsgd_math.hpp"
#include "compress/wire_check.hpp"
#include "launch.hpp"
#include "thinwire/config.hpp"
#include "two_phase.cuh"

namespace thinwire::kernels::two_phase {

namespace {

constexpr auto kQsgd = static_cast<std::uint8_t>(Method::qsgd);
constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr std::uint64_t kSeg = 1024;   // elements per warp in the segment passes
constexpr std::uint64_t kHeader = 32;  // wire_format.hpp's kHeaderBytes

__host__ __device__ __forceinline__ std::uint64_t ceil_div(std::uint64_t a, std::uint64_t b) {
  return a / b + (a % b != 0);
}

// Sizes of the per-segment and per-bucket arrays for chunks of at most max_len elements.
struct Dims {
  std::uint64_t nbmax = 0;  // buckets per chunk (at most)
  std::uint64_t spb = 1;    // segments per bucket
  std::uint64_t nseg = 0;   // parts * nbmax * spb
  std::uint64_t nbuckets = 0;
};

Dims dims(const ChunkCodec& c, std::uint64_t max_len, int parts) {
  Dims d;
  const std::uint64_t beff = c.bucket < max_len ? c.bucket : max_len;
  d.nbmax = ceil_div(max_len, c.bucket);
  d.spb = beff > 0 ? ceil_div(beff, kSeg) : 1;
  d.nbuckets = static_cast<std::uint64_t>(parts) * d.nbmax;
  d.nseg = d.nbuckets * d.spb;
  return d;
}

std::size_t bytes_of(const Dims& d) {
  return (d.nseg * (8 + 8 + 4) + d.nbuckets * (4 + 4) + 255) / 256 * 256;
}

// The layout of a launch's chunks and the workspace arrays.
struct Q {
  std::uint64_t n;
  int parts;
  std::uint64_t bucket;
  int bits, levels;
  std::uint64_t nbmax, spb;
  double* sq;         // [parts][nbmax][spb]
  double* var;        // [parts][nbmax][spb]
  unsigned* maxbits;  // [parts][nbmax][spb]: bits of the segment's largest finite |x|
  float* smax;        // [parts][nbmax]: the bucket's max (the codes' scale)
  float* scale;       // [parts][nbmax]: the scale on the wire
  __device__ __forceinline__ std::uint64_t begin(int j) const {
    return detail::wire_chunk_begin(n, j, parts);
  }
};

Q make_q(const ChunkCodec& c, std::uint64_t n, int parts, const Dims& d, void* ws) {
  Q q;
  q.n = n;
  q.parts = parts;
  q.bucket = c.bucket;
  q.bits = c.bits;
  q.levels = detail::qsgd_levels(c.bits);
  q.nbmax = d.nbmax;
  q.spb = d.spb;
  q.sq = static_cast<double*>(ws);
  q.var = q.sq + d.nseg;
  q.maxbits = reinterpret_cast<unsigned*>(q.var + d.nseg);
  q.smax = reinterpret_cast<float*>(q.maxbits + d.nseg);
  q.scale = q.smax + d.nbuckets;
  return q;
}

__device__ __forceinline__ unsigned read_code(const std::uint8_t* packed, std::uint64_t pos,
                                              int bits) {
  unsigned w = packed[pos >> 3];
  if ((pos & 7) + static_cast<unsigned>(bits) > 8)
    w |= static_cast<unsigned>(packed[(pos >> 3) + 1]) << 8;
  return (w >> (pos & 7)) & ((1u << bits) - 1u);
}

__device__ __forceinline__ std::uint32_t lane_of(const detail::Philox4& b, unsigned l) {
  return l == 0 ? b.v[0] : l == 1 ? b.v[1] : l == 2 ? b.v[2] : b.v[3];
}

// Server input: y = (sum of the P payloads' values in rank order) / P + server_error,
// written to scratch. Payloads hold `len` elements.
struct ServeSource {
  const std::uint8_t* in;
  std::size_t stride;
  int p;
  std::uint64_t len, bucket;
  int bits, levels;
  const float* server_error;
  float* scratch;
  __device__ __forceinline__ float operator()(std::uint64_t i) const {
    const std::uint64_t b = i / bucket;
    const std::uint64_t codes_at = kHeader + 4 * ceil_div(len, bucket);
    float y = 0.0f;
    for (int r = 0; r < p; ++r) {
      const std::uint8_t* q = in + static_cast<std::uint64_t>(r) * stride;
      const float unit =
          detail::qsgd_unit(__uint_as_float(detail::wire_load_u32(q + kHeader + 4 * b)), levels);
      const int code = static_cast<int>(read_code(q + codes_at, i * bits, bits));
      y += detail::qsgd_value(code - levels, unit);
    }
    y /= static_cast<float>(p);
    if (server_error) y += server_error[i];
    scratch[i] = y;
    return y;
  }
};

// The segment of warp w of chunk j: [*s0, *s1) within the chunk; false when its bucket lies
// beyond the chunk (nothing to write).
__device__ __forceinline__ bool segment(const Q& q, std::uint64_t w, std::uint64_t len,
                                        std::uint64_t* bucket, std::uint64_t* s0,
                                        std::uint64_t* s1) {
  *bucket = w / q.spb;
  const std::uint64_t sg = w % q.spb;
  const std::uint64_t b0 = *bucket * q.bucket;
  if (*bucket >= q.nbmax || b0 >= len) return false;
  std::uint64_t end = b0 + q.bucket < len ? b0 + q.bucket : len;
  *s0 = b0 + sg * kSeg;
  *s1 = *s0 + kSeg < end ? *s0 + kSeg : end;
  if (*s0 > *s1) *s0 = *s1;
  return true;
}

// Pass 1. Grid (ceil(nbmax * spb / kWarps), parts).
template <typename Source>
__global__ void __launch_bounds__(kThreads) seg_kernel(Source src, Q q, const DecodeStatus* gate) {
  if (gate && gate->code != kDecodeOk) return;
  const int j = blockIdx.y, lane = threadIdx.x & 31;
  const std::uint64_t b = q.begin(j), len = q.begin(j + 1) - b;
  const std::uint64_t w = static_cast<std::uint64_t>(blockIdx.x) * kWarps + (threadIdx.x >> 5);
  std::uint64_t bucket, s0, s1;
  if (!segment(q, w, len, &bucket, &s0, &s1)) return;  // uniform over the warp
  float m = 0.0f;
  double sq = 0.0;
  for (std::uint64_t i = s0 + lane; i < s1; i += 32) {
    const float v = src(b + i);
    m = detail::qsgd_scale_step(m, v);
    sq += static_cast<double>(v) * v;
  }
  // m is +0 or a positive finite float: its bits order as the values do.
  const unsigned mb = warp_max(__float_as_uint(m));
  sq = warp_sum(sq);
  if (lane == 0) {
    const std::uint64_t at = (static_cast<std::uint64_t>(j) * q.nbmax + bucket) * q.spb + w % q.spb;
    q.maxbits[at] = mb;
    q.sq[at] = sq;
  }
}

// Pass 3 (contractive). Grid as seg_kernel.
__global__ void __launch_bounds__(kThreads)
    variance_kernel(const float* in, Q q, const DecodeStatus* gate) {
  if (gate && gate->code != kDecodeOk) return;
  const int j = blockIdx.y, lane = threadIdx.x & 31;
  const std::uint64_t b = q.begin(j), len = q.begin(j + 1) - b;
  const std::uint64_t w = static_cast<std::uint64_t>(blockIdx.x) * kWarps + (threadIdx.x >> 5);
  std::uint64_t bucket, s0, s1;
  if (!segment(q, w, len, &bucket, &s0, &s1)) return;
  const float m = q.smax[static_cast<std::uint64_t>(j) * q.nbmax + bucket];
  double var = 0.0;
  for (std::uint64_t i = s0 + lane; i < s1; i += 32) {
    const float p = detail::qsgd_fraction(in[b + i], m, q.levels);
    var += static_cast<double>(p) * (1.0f - p);
  }
  var = warp_sum(var);
  if (lane == 0)
    q.var[(static_cast<std::uint64_t>(j) * q.nbmax + bucket) * q.spb + w % q.spb] = var;
}

// Pass 2. Grid (ceil(nbmax / kThreads), parts). `final_pass`: the wire scale (contracted
// when `contractive`, from the variance partials), the header and stats; else only smax.
__global__ void __launch_bounds__(kThreads)
    finalize_kernel(Q q, bool final_pass, bool contractive, std::uint8_t* out, std::size_t stride,
                    std::uint8_t dtype, double* stats, const DecodeStatus* gate) {
  if (gate && gate->code != kDecodeOk) return;
  const int j = blockIdx.y;
  const std::uint64_t len = q.begin(j + 1) - q.begin(j);
  const std::uint64_t nb = ceil_div(len, q.bucket);
  const std::uint64_t bucket = static_cast<std::uint64_t>(blockIdx.x) * kThreads + threadIdx.x;
  std::uint8_t* o = out + static_cast<std::uint64_t>(j) * stride;
  double sq = 0.0;
  if (bucket < nb) {
    const std::uint64_t at = static_cast<std::uint64_t>(j) * q.nbmax + bucket;
    unsigned mb = 0;
    double var = 0.0;
    for (std::uint64_t s = 0; s < q.spb; ++s) {
      const unsigned v = q.maxbits[at * q.spb + s];
      mb = v > mb ? v : mb;
      sq += q.sq[at * q.spb + s];
      if (final_pass && contractive) var += q.var[at * q.spb + s];
    }
    const float m = __uint_as_float(mb);
    if (!final_pass) {
      q.smax[at] = m;
    } else {
      q.smax[at] = m;
      float s = m;
      if (contractive) {
        const double step = static_cast<double>(m) / q.levels;
        s *= detail::qsgd_contraction(sq, var * step * step);
      }
      q.scale[at] = s;
      detail::wire_store_u32(o + kHeader + 4 * bucket, __float_as_uint(s));
    }
  }
  if (!final_pass) return;  // uniform over the grid
  if (blockIdx.x == 0 && threadIdx.x == 0)
    detail::wire_write_header(o, kQsgd, dtype, len, static_cast<std::uint32_t>(q.bits),
                              static_cast<std::uint32_t>(q.bucket),
                              4 * nb + ceil_div(len * static_cast<std::uint64_t>(q.bits), 8));
  if (!stats) return;
  __shared__ double red[kWarps];
  sq = block_sum<kThreads>(sq, red);
  if (threadIdx.x == 0) atomicAdd(stats + 1, sq);
}

// Pass 4. Grid (ceil(ceil(max_len / 8) / kThreads), parts); `first_index`: the stream
// index of chunk 0's element 0 (the key's offset).
__global__ void __launch_bounds__(kThreads)
    codes_kernel(const float* in, Q q, detail::RandomStream rng, std::uint64_t first_index,
                 std::uint8_t* out, std::size_t stride, float* residual, double* stats,
                 const DecodeStatus* gate) {
  if (gate && gate->code != kDecodeOk) return;
  const int j = blockIdx.y;
  const std::uint64_t b = q.begin(j), len = q.begin(j + 1) - b;
  const std::uint64_t g = static_cast<std::uint64_t>(blockIdx.x) * kThreads + threadIdx.x;
  const std::uint64_t e0 = 8 * g;
  double err = 0.0;
  if (e0 < len) {
    const std::uint64_t nb = ceil_div(len, q.bucket);
    std::uint8_t* codes = out + static_cast<std::uint64_t>(j) * stride + kHeader + 4 * nb;
    const std::uint64_t packed = ceil_div(len * static_cast<std::uint64_t>(q.bits), 8);
    const std::uint64_t first = first_index + b + e0;
    std::uint64_t block = first >> 2;
    detail::Philox4 r = rng.block(block);
    std::uint64_t bucket = e0 / q.bucket, bucket_end = (bucket + 1) * q.bucket;
    const std::uint64_t at0 = static_cast<std::uint64_t>(j) * q.nbmax;
    float m = q.smax[at0 + bucket];
    float unit = detail::qsgd_unit(q.scale[at0 + bucket], q.levels);
    std::uint64_t word = 0;
    for (int k = 0; k < 8; ++k) {
      const std::uint64_t e = e0 + k;
      if (e >= len) break;
      if (e >= bucket_end) {
        ++bucket;
        bucket_end += q.bucket;
        m = q.smax[at0 + bucket];
        unit = detail::qsgd_unit(q.scale[at0 + bucket], q.levels);
      }
      const std::uint64_t idx = first + k;
      if ((idx >> 2) != block) {
        block = idx >> 2;
        r = rng.block(block);
      }
      const float u = detail::uniform_from_bits(lane_of(r, static_cast<unsigned>(idx & 3)));
      const float v = in[b + e];
      const int qv = detail::qsgd_quantize(v, m, q.levels, u);
      word |= static_cast<std::uint64_t>(qv + q.levels) << (q.bits * k);
      const float res = v - detail::qsgd_value(qv, unit);
      if (residual) residual[b + e] = res;
      err += static_cast<double>(res) * res;
    }
    // Eight codes fill exactly `bits` bytes; the last group stops at the packed size.
    for (int k = 0; k < q.bits; ++k) {
      const std::uint64_t pos = g * static_cast<std::uint64_t>(q.bits) + k;
      if (pos < packed) codes[pos] = static_cast<std::uint8_t>(word >> (8 * k));
    }
  }
  if (!stats) return;  // uniform over the grid
  __shared__ double red[kWarps];
  err = block_sum<kThreads>(err, red);
  if (threadIdx.x == 0) atomicAdd(stats, err);
}

// Decode (assign). Grid (ceil(max_len / kThreads / 4), parts).
constexpr std::uint64_t kDecodeTile = 4 * kThreads;
__global__ void __launch_bounds__(kThreads)
    decode_kernel(const std::uint8_t* in, std::size_t stride, std::uint64_t n, int parts,
                  std::uint64_t bucket_size, int bits, float* out, const DecodeStatus* status) {
  if (status->code != kDecodeOk) return;
  const int j = blockIdx.y;
  const std::uint64_t b = detail::wire_chunk_begin(n, j, parts);
  const std::uint64_t len = detail::wire_chunk_begin(n, j + 1, parts) - b;
  const std::uint8_t* q = in + static_cast<std::uint64_t>(j) * stride;
  const std::uint8_t* codes = q + kHeader + 4 * ceil_div(len, bucket_size);
  const int levels = detail::qsgd_levels(bits);
  const std::uint64_t t0 = static_cast<std::uint64_t>(blockIdx.x) * kDecodeTile;
  const std::uint64_t t1 = t0 + kDecodeTile < len ? t0 + kDecodeTile : len;
  for (std::uint64_t i = t0 + threadIdx.x; i < t1; i += kThreads) {
    const float unit = detail::qsgd_unit(
        __uint_as_float(detail::wire_load_u32(q + kHeader + 4 * (i / bucket_size))), levels);
    const int code = static_cast<int>(read_code(codes, i * bits, bits));
    out[b + i] = detail::qsgd_value(code - levels, unit);
  }
}

// Status protocol step 2. Grid (ceil(ceil(max_len / 8) / kThreads), count).
__global__ void __launch_bounds__(kThreads)
    check_codes_kernel(const std::uint8_t* in, std::size_t stride, Lengths lens,
                       std::uint64_t bucket_size, int bits, DecodeStatus* status) {
  if (status->code != kDecodeOk) return;
  const int r = blockIdx.y;
  const std::uint64_t len = lens.of(r);
  const std::uint64_t g = static_cast<std::uint64_t>(blockIdx.x) * kThreads + threadIdx.x;
  const std::uint64_t e0 = 8 * g;
  if (e0 >= len) return;
  const std::uint8_t* codes =
      in + static_cast<std::uint64_t>(r) * stride + kHeader + 4 * ceil_div(len, bucket_size);
  const std::uint64_t packed = ceil_div(len * static_cast<std::uint64_t>(bits), 8);
  std::uint64_t word = 0;
  for (int k = 0; k < bits; ++k) {
    const std::uint64_t pos = g * static_cast<std::uint64_t>(bits) + k;
    if (pos < packed) word |= static_cast<std::uint64_t>(codes[pos]) << (8 * k);
  }
  const unsigned max_code = 2u * static_cast<unsigned>(detail::qsgd_levels(bits));
  const std::uint64_t mask = (std::uint64_t{1} << bits) - 1u;
  for (int k = 0; k < 8 && e0 + k < len; ++k)
    if (((word >> (bits * k)) & mask) > max_code) {
      const unsigned long long key = static_cast<unsigned long long>(r) << kElementBits | (e0 + k);
      atomicMin(reinterpret_cast<unsigned long long*>(&status->detail), key);
      return;
    }
}

// Status protocol step 3.
__global__ void finish_status_kernel(DecodeStatus* status) {
  if (status->code != kDecodeOk) return;
  const std::uint64_t d = status->detail;
  if (d == kCodeSentinel) {
    status->detail = 0;
    return;
  }
  status->from_rank = static_cast<std::uint32_t>(d >> kElementBits);
  status->detail = d & ((std::uint64_t{1} << kElementBits) - 1u);
  status->code = kDecodeBadCode;
}

unsigned blocks(std::uint64_t items, std::uint64_t per_block) {
  return static_cast<unsigned>(ceil_div(items, per_block));
}

// Passes 2-4 after pass 1 (seg_kernel) over `in`.
std::string finish_encode(const ChunkCodec& c, const float* in, const Q& q, const Dims& d,
                          std::uint64_t max_len, detail::RandomStream rng,
                          std::uint64_t first_index, std::uint8_t* out, std::size_t stride,
                          DType dtype, float* residual, double* stats, const DecodeStatus* gate,
                          cudaStream_t s) {
  const auto dt = static_cast<std::uint8_t>(dtype);
  const dim3 fin(d.nbmax ? blocks(d.nbmax, kThreads) : 1, q.parts);
  const dim3 seg(blocks(d.nbmax * d.spb, kWarps), q.parts);
  if (c.contractive && d.nbmax) {
    finalize_kernel<<<fin, kThreads, 0, s>>>(q, false, true, out, stride, dt, nullptr, gate);
    variance_kernel<<<seg, kThreads, 0, s>>>(in, q, gate);
  }
  finalize_kernel<<<fin, kThreads, 0, s>>>(q, true, c.contractive, out, stride, dt, stats, gate);
  if (max_len)
    codes_kernel<<<dim3(blocks(ceil_div(max_len, 8), kThreads), q.parts), kThreads, 0, s>>>(
        in, q, rng, first_index, out, stride, residual, stats, gate);
  return launch_status();
}

}  // namespace

std::size_t qsgd_workspace_bytes(const ChunkCodec& c, std::size_t n, int parts) {
  return bytes_of(dims(c, ceil_div(n, static_cast<std::uint64_t>(parts)), parts));
}

std::string qsgd_encode(const ChunkEncode& a, cudaStream_t s) {
  const std::uint64_t max_len = ceil_div(a.n, static_cast<std::uint64_t>(a.parts));
  const Dims d = dims(a.codec, max_len, a.parts);
  const Q q = make_q(a.codec, a.n, a.parts, d, a.workspace);
  seg_kernel<<<dim3(blocks(d.nbmax * d.spb, kWarps), a.parts), kThreads, 0, s>>>(
      EncodeSource{a.x, a.g}, q, nullptr);
  const std::string err = launch_status();
  if (!err.empty()) return err;
  const detail::RandomStream rng =
      detail::RandomStream::make(a.seed, a.layer, a.phase, a.step, a.rank);
  return finish_encode(a.codec, a.x, q, d, max_len, rng, a.offset, a.out, a.stride, a.dtype,
                       a.residual, a.stats, nullptr, s);
}

std::string qsgd_serve(const ChunkServe& a, cudaStream_t s) {
  const Dims d = dims(a.codec, a.len, 1);
  const Q q = make_q(a.codec, a.len, 1, d, a.workspace);
  if (a.len) {
    const ServeSource src{a.in,     a.stride,       a.p,      a.len, a.codec.bucket, a.codec.bits,
                          q.levels, a.server_error, a.scratch};
    seg_kernel<<<dim3(blocks(d.nbmax * d.spb, kWarps), 1), kThreads, 0, s>>>(src, q, a.status);
    const std::string err = launch_status();
    if (!err.empty()) return err;
  }
  const detail::RandomStream rng =
      detail::RandomStream::make(a.seed, a.layer, detail::kPhaseServer, a.step, a.rank);
  return finish_encode(a.codec, a.scratch, q, d, a.len, rng, a.offset, a.out, 0, a.dtype,
                       a.server_error, nullptr, a.status, s);
}

std::string qsgd_check_codes(const ChunkCodec& c, const std::uint8_t* in, std::size_t stride,
                             int count, Lengths len, DecodeStatus* status, cudaStream_t s) {
  const std::uint64_t max_len =
      len.chunked ? ceil_div(len.n, static_cast<std::uint64_t>(len.parts)) : len.n;
  if (max_len && count > 0)
    check_codes_kernel<<<dim3(blocks(ceil_div(max_len, 8), kThreads), count), kThreads, 0, s>>>(
        in, stride, len, c.bucket, c.bits, status);
  finish_status_kernel<<<1, 1, 0, s>>>(status);
  return launch_status();
}

std::string qsgd_decode(const ChunkCodec& c, const std::uint8_t* in, std::size_t stride,
                        std::size_t n, int parts, float* out, const DecodeStatus* status,
                        cudaStream_t s) {
  const std::uint64_t max_len = ceil_div(n, static_cast<std::uint64_t>(parts));
  decode_kernel<<<dim3(blocks(max_len, kDecodeTile), parts), kThreads, 0, s>>>(
      in, stride, n, parts, c.bucket, c.bits, out, status);
  return launch_status();
}

}  // namespace thinwire::kernels::two_phase
