// Top-k kernels: exact selection by radix select over magnitude_key (31-bit keys, NaN above
// infinity), the sampled (DGC) selection of the host backend, and the averaging decoder.
//
// Encode, everything on the stream and in the workspace (no host read-back, no allocation):
//   1. first pass: x += g (optional), the histogram of the top digit (key bits 30..20), and
//      sum x^2 into stats[1];
//   2. sampled only: the sample keys (the host's Philox positions), their radix select to
//      the threshold S, the count of keys >= S and the decision: when fewer than k pass, the
//      selection is "key >= S plus the lowest indices below S" (done, no radix select of x);
//   3. the radix select of x: digits 30..20, 19..10, 9..0, each a shared-memory histogram
//      of the keys matching the settled prefix and a one-block scan that finds the digit
//      holding the k-th largest key: the threshold T and the ties taken at T;
//   4. compaction in index order: per tile of 2048 elements the counts of (key > T, tie
//      class), an exclusive scan of the tile counts (cub::DeviceScan), and an emit kernel
//      whose block scan gives every taken element its output slot; it writes indices,
//      values, the residual and sum x^2 of the rest into stats[0], and the header.
// The selection rule (compress/topk_math.hpp): taken = key > T, or in the tie class (key ==
// T; sampled padding: key <= T = S - 1) with fewer than `ties` of the class before it. The
// set and its order equal TopkSelector's (ties to the lower index).
//
// Decode: a validation kernel per payload block (header by one thread, indices in parallel)
// records the earliest fault (rank, then header before index positions) by atomicMin into
// status->detail, which holds a sentinel meanwhile; a one-thread kernel turns it into the
// DecodeStatus. Then out is zeroed, the payloads are scatter-added in rank order and out is
// divided by P, each kernel doing nothing when status->code is set.
#include <cuda_runtime.h>

#include <cub/block/block_reduce.cuh>
#include <cub/block/block_scan.cuh>
#include <cub/device/device_scan.cuh>

#include "common/half.hpp"
#include "common/philox.hpp"
#include "compress/topk_math.hpp"
#include "compress/topk_select.hpp"
#include "compress/wire_check.hpp"
#include "launch.hpp"
#include "thinwire/config.hpp"

namespace thinwire::kernels {

namespace {

namespace tkm = detail::topk_math;

constexpr unsigned kThreads = 256;  // threads of the streaming kernels
constexpr unsigned kItems = 8;      // elements per thread of a compaction tile
constexpr unsigned kTile = kThreads * kItems;
constexpr unsigned kSelectThreads = 1024;  // the one-block digit search: 2 bins a thread
constexpr unsigned kMaxBins = 2048;
constexpr unsigned kHistBins = 2048 + 1024 + 1024;  // one histogram per level
constexpr std::size_t kHeader = 32;
constexpr unsigned long long kNoFault = ~0ull;

// The state of one radix select, in the workspace (zeroed at the start of topk_encode).
struct RadixState {
  unsigned int prefix;      // the settled digits of the threshold key
  unsigned int threshold;   // the final threshold T
  unsigned int tie_le;      // tie class: 0: key == T; 1: key <= T
  unsigned int done;        // T, ties and tie_le are final (sampled padding): skip the rest
  unsigned long long want;  // the rank of the k-th key among the keys matching prefix
  unsigned long long ties;  // elements of the tie class taken
};

struct Control {
  RadixState main;
  RadixState sample;
  unsigned long long passed;  // sampled: keys >= the sample threshold
};

std::size_t align_up(std::size_t v) {
  return (v + 255) / 256 * 256;
}

std::size_t tiles_for(std::size_t n) {
  return (n + kTile - 1) / kTile;
}

bool sampled_applies(std::size_t n, std::size_t k) {
  return k > 0 && k < n && n >= tkm::kSampledMinN;
}

// Byte offsets into the workspace.
struct Layout {
  std::size_t control = 0, hist_main = 0, hist_sample = 0, zero_bytes = 0;
  std::size_t tile_counts = 0, tile_offsets = 0, sample_keys = 0, temp = 0, temp_bytes = 0;
  std::size_t total = 0;
};

std::string layout(std::size_t n, Layout* l) {
  std::size_t at = 0;
  l->control = at;
  at += align_up(sizeof(Control));
  l->hist_main = at;
  at += align_up(kHistBins * sizeof(unsigned));
  l->hist_sample = at;
  at += align_up(kHistBins * sizeof(unsigned));
  l->zero_bytes = at;
  const std::size_t tiles = tiles_for(n);
  l->tile_counts = at;
  at += align_up(tiles * sizeof(unsigned long long));
  l->tile_offsets = at;
  at += align_up(tiles * sizeof(unsigned long long));
  l->sample_keys = at;
  if (n >= tkm::kSampledMinN) at += align_up(tkm::sample_count(n) * sizeof(std::uint32_t));
  std::size_t temp = 0;
  const cudaError_t e = cub::DeviceScan::ExclusiveSum(
      nullptr, temp, static_cast<const unsigned long long*>(nullptr),
      static_cast<unsigned long long*>(nullptr), static_cast<int>(tiles ? tiles : 1));
  if (e != cudaSuccess) {
    cudaGetLastError();
    return std::string("topk: cub::DeviceScan::ExclusiveSum size query: ") + cudaGetErrorString(e);
  }
  l->temp = at;
  l->temp_bytes = temp;
  at += align_up(temp ? temp : 1);
  l->total = at;
  return {};
}

unsigned hist_grid(std::size_t n) {
  const std::size_t blocks = (n + kThreads * 16 - 1) / (kThreads * 16);
  return static_cast<unsigned>(blocks < 1 ? 1 : blocks > 1024 ? 1024 : blocks);
}

unsigned grid_for(std::size_t n, unsigned block) {
  const std::size_t blocks = (n + block - 1) / block;
  return static_cast<unsigned>(blocks < 65535 * 32 ? (blocks ? blocks : 1) : 65535 * 32);
}

std::string last_error() {
  const cudaError_t e = cudaGetLastError();
  return e == cudaSuccess ? std::string() : std::string(cudaGetErrorString(e));
}

// A failed call's own code (cleared from the last-error slot, so later calls are not blamed).
std::string error_of(cudaError_t e) {
  cudaGetLastError();
  return std::string("topk_encode: ") + cudaGetErrorString(e);
}

__device__ __forceinline__ unsigned long long pack_flags(std::uint32_t key, std::uint32_t t,
                                                         bool tie_le) {
  return (static_cast<unsigned long long>(tkm::topk_greater(key, t)) << 32) |
         static_cast<unsigned long long>(tkm::topk_tie_class(key, t, tie_le));
}

// ---- encode --------------------------------------------------------------------------------

// x += g (kAdd), the histogram of the top digit of the keys, sum x^2 into stats[1].
template <bool kAdd>
__global__ void first_pass_kernel(float* x, const float* g, std::size_t n, unsigned* hist,
                                  double* stats) {
  using Reduce = cub::BlockReduce<double, kThreads>;
  __shared__ typename Reduce::TempStorage reduce;
  __shared__ unsigned sh[kMaxBins];
  for (unsigned b = threadIdx.x; b < kMaxBins; b += blockDim.x) sh[b] = 0;
  __syncthreads();
  double sq = 0.0;
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
    float v = x[i];
    if (kAdd) {
      v = v + g[i];
      x[i] = v;
    }
    if (stats) sq += static_cast<double>(v) * static_cast<double>(v);
    atomicAdd(&sh[tkm::radix_digit(detail::magnitude_key(v), 0)], 1u);
  }
  __syncthreads();
  for (unsigned b = threadIdx.x; b < kMaxBins; b += blockDim.x)
    if (sh[b]) atomicAdd(&hist[b], sh[b]);
  if (stats) {
    const double total = Reduce(reduce).Sum(sq);
    if (threadIdx.x == 0) atomicAdd(stats + 1, total);
  }
}

struct FloatKeys {
  const float* x;
  __device__ __forceinline__ std::uint32_t operator()(std::size_t i) const {
    return detail::magnitude_key(x[i]);
  }
};
struct U32Keys {
  const std::uint32_t* keys;
  __device__ __forceinline__ std::uint32_t operator()(std::size_t i) const { return keys[i]; }
};

// The histogram of digit `level` over the keys that match the settled prefix.
template <class Keys>
__global__ void histogram_kernel(Keys keys, std::size_t n, int level, const RadixState* st,
                                 unsigned* hist) {
  __shared__ unsigned sh[kMaxBins];
  if (st->done) return;  // the same for every thread of the block
  const std::uint32_t prefix = st->prefix;
  const unsigned bins = tkm::radix_bins(level);
  for (unsigned b = threadIdx.x; b < bins; b += blockDim.x) sh[b] = 0;
  __syncthreads();
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
    const std::uint32_t key = keys(i);
    if (tkm::radix_matches(key, prefix, level)) atomicAdd(&sh[tkm::radix_digit(key, level)], 1u);
  }
  __syncthreads();
  for (unsigned b = threadIdx.x; b < bins; b += blockDim.x)
    if (sh[b]) atomicAdd(&hist[b], sh[b]);
}

// One block of kSelectThreads: the digit of `level` that holds the want-th largest key
// (want = want0 at level 0, else st->want), from the largest digit down.
__global__ void __launch_bounds__(kSelectThreads)
    select_digit_kernel(const unsigned* hist, int level, RadixState* st, unsigned long long want0) {
  using Scan = cub::BlockScan<unsigned long long, kSelectThreads>;
  __shared__ typename Scan::TempStorage scan;
  if (st->done) return;
  const unsigned long long want = level == 0 ? want0 : st->want;
  const std::uint32_t prefix = level == 0 ? 0u : st->prefix;
  const unsigned bins = tkm::radix_bins(level);
  unsigned long long h[2], incl[2];
  for (unsigned q = 0; q < 2; ++q) {
    const unsigned pos = 2 * threadIdx.x + q;  // position counted from the largest digit
    h[q] = pos < bins ? hist[bins - 1 - pos] : 0ull;
  }
  Scan(scan).InclusiveSum(h, incl);  // synchronises: every read of st is done
  for (unsigned q = 0; q < 2; ++q) {
    const unsigned pos = 2 * threadIdx.x + q;
    const unsigned long long above = incl[q] - h[q];  // keys in larger digits
    if (pos < bins && above < want && incl[q] >= want) {
      const std::uint32_t d = bins - 1 - pos;
      const std::uint32_t p = prefix | (d << tkm::radix_shift(level));
      st->prefix = p;
      st->want = want - above;
      if (level == tkm::kRadixLevels - 1) {
        st->threshold = p;
        st->ties = want - above;
        st->tie_le = 0;
      }
    }
  }
}

// Sampled: the key at the position cell j of the sample draws.
__global__ void sample_keys_kernel(const float* x, std::size_t m, std::size_t cell,
                                   detail::RandomStream rng, std::uint32_t* keys) {
  for (std::size_t j = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; j < m;
       j += static_cast<std::size_t>(gridDim.x) * blockDim.x)
    keys[j] = detail::magnitude_key(x[tkm::sample_position(rng.uniform(j), j, cell)]);
}

// Sampled: how many keys of x reach the sample threshold.
__global__ void count_passed_kernel(const float* x, std::size_t n, const RadixState* sample,
                                    unsigned long long* passed) {
  using Reduce = cub::BlockReduce<unsigned long long, kThreads>;
  __shared__ typename Reduce::TempStorage reduce;
  const std::uint32_t s = sample->threshold;
  unsigned long long c = 0;
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x)
    c += detail::magnitude_key(x[i]) >= s;
  const unsigned long long total = Reduce(reduce).Sum(c);
  if (threadIdx.x == 0 && total) atomicAdd(passed, total);
}

// Sampled: fewer than k passed: take them all and pad with the lowest indices below S
// (S > 0 here: every key is >= 0, and n > k). Otherwise the exact top-k of x is the top-k of
// those that passed, which the radix select of x finds.
__global__ void decide_kernel(RadixState* main, const RadixState* sample,
                              const unsigned long long* passed, unsigned long long k) {
  const unsigned long long p = *passed;
  if (p < k) {
    main->threshold = sample->threshold - 1u;
    main->tie_le = 1;
    main->ties = k - p;
    main->done = 1;
  }
}

// Per tile: packed counts (key > T) << 32 | (tie class).
__global__ void tile_count_kernel(const float* x, std::size_t n, const RadixState* st,
                                  unsigned long long* tile_counts) {
  using Reduce = cub::BlockReduce<unsigned long long, kThreads>;
  __shared__ typename Reduce::TempStorage reduce;
  const std::uint32_t t = st->threshold;
  const bool tie_le = st->tie_le != 0;
  const std::size_t base = static_cast<std::size_t>(blockIdx.x) * kTile;
  unsigned long long c = 0;
  for (unsigned j = 0; j < kItems; ++j) {
    const std::size_t i = base + j * kThreads + threadIdx.x;
    if (i < n) c += pack_flags(detail::magnitude_key(x[i]), t, tie_le);
  }
  const unsigned long long total = Reduce(reduce).Sum(c);
  if (threadIdx.x == 0) tile_counts[blockIdx.x] = total;
}

// Per tile, in index order (thread t holds elements base + t*kItems ..): the output slot of
// every taken element, its index and value; the residual; sum x^2 of the rest; the header.
__global__ void emit_kernel(const float* x, float* residual, std::size_t n, std::size_t k,
                            const RadixState* st, const unsigned long long* tile_offsets,
                            std::uint8_t* out, std::uint8_t dtype, double* stats) {
  using Scan = cub::BlockScan<unsigned long long, kThreads>;
  using Reduce = cub::BlockReduce<double, kThreads>;
  __shared__ union {
    typename Scan::TempStorage scan;
    typename Reduce::TempStorage reduce;
  } tmp;
  const std::uint32_t t = st->threshold;
  const bool tie_le = st->tie_le != 0;
  const unsigned long long ties = st->ties;
  const std::size_t base =
      static_cast<std::size_t>(blockIdx.x) * kTile + static_cast<std::size_t>(threadIdx.x) * kItems;
  float v[kItems];
  unsigned long long f[kItems], before[kItems];
  for (unsigned j = 0; j < kItems; ++j) {
    const std::size_t i = base + j;
    v[j] = i < n ? x[i] : 0.0f;
    f[j] = i < n ? pack_flags(detail::magnitude_key(v[j]), t, tie_le) : 0ull;
  }
  Scan(tmp.scan).ExclusiveSum(f, before);
  const unsigned long long offset = tile_offsets[blockIdx.x];
  std::uint8_t* idx_out = out + kHeader;
  std::uint8_t* val_out = idx_out + 4 * k;
  double rest = 0.0;
  for (unsigned j = 0; j < kItems; ++j) {
    const std::size_t i = base + j;
    if (i >= n) break;
    const unsigned long long b = offset + before[j];
    const unsigned long long gt_before = b >> 32, tie_before = b & 0xffffffffull;
    const bool take = (f[j] >> 32) != 0 || ((f[j] & 1ull) != 0 && tie_before < ties);
    if (take) {
      const unsigned long long slot = gt_before + (tie_before < ties ? tie_before : ties);
      detail::wire_store_u32(idx_out + 4 * slot, static_cast<std::uint32_t>(i));
      detail::wire_store_u32(val_out + 4 * slot, detail::float_bits(v[j]));
    } else {
      rest += static_cast<double>(v[j]) * static_cast<double>(v[j]);
    }
    if (residual && (take || residual != x)) residual[i] = take ? 0.0f : v[j];
  }
  if (stats) {
    __syncthreads();  // tmp.scan is reused
    const double total = Reduce(tmp.reduce).Sum(rest);
    if (threadIdx.x == 0) atomicAdd(stats, total);
  }
  if (blockIdx.x == 0 && threadIdx.x == 0)
    detail::wire_write_header(out, static_cast<std::uint8_t>(Method::topk), dtype, n,
                              static_cast<std::uint32_t>(k), 0, 8 * static_cast<std::uint64_t>(k));
}

// ---- decode --------------------------------------------------------------------------------

__device__ __forceinline__ detail::WireExpect topk_expect(std::size_t n, std::size_t k) {
  return detail::WireExpect{
      static_cast<std::uint8_t>(Method::topk), n, static_cast<std::uint32_t>(k), 0, false,
      8 * static_cast<std::uint64_t>(k)};
}

// A fault's order: rank first, then the header (0) before index position j (j + 1).
__device__ __forceinline__ unsigned long long fault_key(unsigned long long rank,
                                                        unsigned long long pos) {
  return rank << 33 | pos;
}

__device__ __forceinline__ unsigned long long* fault_slot(DecodeStatus* status) {
  return reinterpret_cast<unsigned long long*>(&status->detail);
}

__global__ void decode_prepare_kernel(DecodeStatus* status) {
  if (status->code == kDecodeOk) status->detail = kNoFault;
}

// Grid (blocks over the k indices, payloads).
__global__ void decode_validate_kernel(const std::uint8_t* in, std::size_t stride, std::size_t size,
                                       std::size_t n, std::size_t k, DecodeStatus* status) {
  __shared__ std::uint32_t header_code;
  if (status->code != kDecodeOk) return;  // an earlier error: nothing to do
  const unsigned long long r = blockIdx.y;
  const std::uint8_t* p = in + r * stride;
  if (threadIdx.x == 0) {
    std::uint64_t detail = 0;
    header_code = detail::wire_check_header(p, size, topk_expect(n, k), &detail);
  }
  __syncthreads();
  if (header_code != kDecodeOk) {
    if (blockIdx.x == 0 && threadIdx.x == 0) atomicMin(fault_slot(status), fault_key(r, 0));
    return;
  }
  const std::uint8_t* idx = p + kHeader;  // 8 k bytes fit in `size`: the header said so
  for (std::size_t j = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; j < k;
       j += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
    const std::uint32_t i = detail::wire_load_u32(idx + 4 * j);
    if (i >= n || (j > 0 && i <= detail::wire_load_u32(idx + 4 * (j - 1)))) {
      atomicMin(fault_slot(status), fault_key(r, j + 1));  // this thread's first fault
      break;
    }
  }
}

__global__ void decode_finish_kernel(const std::uint8_t* in, std::size_t stride, std::size_t size,
                                     std::size_t n, std::size_t k, DecodeStatus* status) {
  if (status->code != kDecodeOk) return;
  const unsigned long long f = status->detail;
  if (f == kNoFault) {
    status->detail = 0;
    return;
  }
  const unsigned long long r = f >> 33, pos = f & ((1ull << 33) - 1);
  std::uint64_t detail = 0;
  std::uint32_t code = kDecodeBadIndex;
  if (pos == 0)
    code = detail::wire_check_header(in + r * stride, size, topk_expect(n, k), &detail);
  else
    detail = pos - 1;
  status->from_rank = static_cast<std::uint32_t>(r);
  status->detail = detail;
  status->code = code;
}

__global__ void decode_zero_kernel(float* out, std::size_t n, const DecodeStatus* status) {
  if (status->code != kDecodeOk) return;
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x)
    out[i] = 0.0f;
}

// Payload p (validated): out[index] += value. Indices of one payload are distinct.
__global__ void decode_scatter_kernel(const std::uint8_t* p, std::size_t k, float* out,
                                      const DecodeStatus* status) {
  if (status->code != kDecodeOk) return;
  const std::uint8_t* idx = p + kHeader;
  const std::uint8_t* val = idx + 4 * k;
  for (std::size_t j = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; j < k;
       j += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
    const std::uint32_t bits = detail::wire_load_u32(val + 4 * j);
    out[detail::wire_load_u32(idx + 4 * j)] += __uint_as_float(bits);
  }
}

__global__ void decode_divide_kernel(float* out, std::size_t n, float divisor,
                                     const DecodeStatus* status) {
  if (status->code != kDecodeOk) return;
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x)
    out[i] = out[i] / divisor;
}

}  // namespace

std::size_t topk_workspace_bytes(std::size_t n, std::size_t) {
  Layout l;
  if (!layout(n, &l).empty()) return 0;  // topk_encode then reports the failure
  return l.total;
}

std::string topk_encode(const TopkEncode& a, void* stream) {
  const std::size_t n = a.n, k = a.k;
  if (k < 1 || k > n || n >= (std::size_t{1} << 32)) return "topk_encode: need 1 <= k <= n < 2^32";
  if (!a.x || !a.out) return "topk_encode: null x or out";
  Layout l;
  if (std::string err = layout(n, &l); !err.empty()) return err;
  if (!a.workspace || a.workspace_bytes < l.total)
    return "topk_encode: workspace of " + std::to_string(a.workspace_bytes) + " bytes, need " +
           std::to_string(l.total);
  auto s = static_cast<cudaStream_t>(stream);
  auto* ws = static_cast<std::uint8_t*>(a.workspace);
  auto* ctl = reinterpret_cast<Control*>(ws + l.control);
  auto* hist_main = reinterpret_cast<unsigned*>(ws + l.hist_main);
  auto* hist_sample = reinterpret_cast<unsigned*>(ws + l.hist_sample);
  auto* tile_counts = reinterpret_cast<unsigned long long*>(ws + l.tile_counts);
  auto* tile_offsets = reinterpret_cast<unsigned long long*>(ws + l.tile_offsets);
  auto* sample_keys = reinterpret_cast<std::uint32_t*>(ws + l.sample_keys);
  const unsigned level_offset[tkm::kRadixLevels] = {0, 2048, 3072};

  if (const cudaError_t e = cudaMemsetAsync(ws, 0, l.zero_bytes, s); e != cudaSuccess)
    return error_of(e);
  if (a.g)
    first_pass_kernel<true><<<hist_grid(n), kThreads, 0, s>>>(a.x, a.g, n, hist_main, a.stats);
  else
    first_pass_kernel<false><<<hist_grid(n), kThreads, 0, s>>>(a.x, nullptr, n, hist_main, a.stats);

  if (a.sampled && sampled_applies(n, k)) {
    const std::size_t m = tkm::sample_count(n);
    const std::size_t cell = n / m;
    const std::size_t r = tkm::sample_rank(n, k, m);
    const auto rng =
        detail::RandomStream::make(a.seed, a.layer, detail::kPhaseSample, a.step, a.rank);
    sample_keys_kernel<<<grid_for(m, kThreads), kThreads, 0, s>>>(a.x, m, cell, rng, sample_keys);
    for (int level = 0; level < tkm::kRadixLevels; ++level) {
      histogram_kernel<<<hist_grid(m), kThreads, 0, s>>>(
          U32Keys{sample_keys}, m, level, &ctl->sample, hist_sample + level_offset[level]);
      select_digit_kernel<<<1, kSelectThreads, 0, s>>>(hist_sample + level_offset[level], level,
                                                       &ctl->sample, r + 1);
    }
    count_passed_kernel<<<hist_grid(n), kThreads, 0, s>>>(a.x, n, &ctl->sample, &ctl->passed);
    decide_kernel<<<1, 1, 0, s>>>(&ctl->main, &ctl->sample, &ctl->passed, k);
  }

  for (int level = 0; level < tkm::kRadixLevels; ++level) {
    if (level > 0)
      histogram_kernel<<<hist_grid(n), kThreads, 0, s>>>(FloatKeys{a.x}, n, level, &ctl->main,
                                                         hist_main + level_offset[level]);
    select_digit_kernel<<<1, kSelectThreads, 0, s>>>(hist_main + level_offset[level], level,
                                                     &ctl->main, k);
  }

  const std::size_t tiles = tiles_for(n);
  tile_count_kernel<<<static_cast<unsigned>(tiles), kThreads, 0, s>>>(a.x, n, &ctl->main,
                                                                      tile_counts);
  std::size_t temp_bytes = l.temp_bytes;
  // Report the code CUB returns, not cudaGetLastError(): CUB can fail without a runtime
  // error being recorded (e.g. cudaErrorInvalidValue for too little temp storage), and then
  // topk_encode returned "" (success) without ever writing the payload.
  if (const cudaError_t e = cub::DeviceScan::ExclusiveSum(
          ws + l.temp, temp_bytes, static_cast<const unsigned long long*>(tile_counts),
          tile_offsets, static_cast<int>(tiles), s);
      e != cudaSuccess)
    return error_of(e);
  emit_kernel<<<static_cast<unsigned>(tiles), kThreads, 0, s>>>(
      a.x, a.residual, n, k, &ctl->main, tile_offsets, a.out, static_cast<std::uint8_t>(a.dtype),
      a.stats);
  return last_error();
}

std::string topk_decode_average(const std::uint8_t* in, std::size_t stride, std::size_t size, int p,
                                std::size_t n, std::size_t k, float* out, DecodeStatus* status,
                                void* stream) {
  if (k > n || n >= (std::size_t{1} << 32)) return "topk_decode_average: need k <= n < 2^32";
  if (p < 1 || p > 65535) return "topk_decode_average: need 1 <= p <= 65535";
  if (!in || !status || (n && !out)) return "topk_decode_average: null in, out or status";
  auto s = static_cast<cudaStream_t>(stream);
  const std::size_t vblocks = (k + kThreads - 1) / kThreads;
  const dim3 vgrid(static_cast<unsigned>(vblocks < 1      ? 1
                                         : vblocks > 1024 ? 1024
                                                          : vblocks),
                   static_cast<unsigned>(p));
  decode_prepare_kernel<<<1, 1, 0, s>>>(status);
  decode_validate_kernel<<<vgrid, kThreads, 0, s>>>(in, stride, size, n, k, status);
  decode_finish_kernel<<<1, 1, 0, s>>>(in, stride, size, n, k, status);
  if (n) decode_zero_kernel<<<grid_for(n, kThreads), kThreads, 0, s>>>(out, n, status);
  if (k)
    for (int r = 0; r < p; ++r)
      decode_scatter_kernel<<<grid_for(k, kThreads), kThreads, 0, s>>>(
          in + static_cast<std::size_t>(r) * stride, k, out, status);
  if (n)
    decode_divide_kernel<<<grid_for(n, kThreads), kThreads, 0, s>>>(out, n, static_cast<float>(p),
                                                                    status);
  return last_error();
}

}  // namespace thinwire::kernels
