#include "compress/topk_select.hpp"

#include <algorithm>
#include <cmath>
#include <functional>
#include <numeric>

#include "common/philox_host.hpp"
#include "compress/topk_math.hpp"
#include "compress/topk_scan.hpp"

namespace thinwire::detail {

namespace {

constexpr std::size_t kSmall = std::size_t{1} << 15;  // below: plain radix select
constexpr std::size_t kSampleSize = 8192;
constexpr int kTopShift = 20;  // the fallback's first digit: key bits 30..20
constexpr int kDigitBits = 11;

// Walks the histogram from the largest digit down and returns the digit holding the
// `want`-th largest key; `want` becomes the rank within that digit.
std::uint32_t find_digit(const std::vector<std::uint32_t>& hist, std::size_t* want) {
  std::size_t above = 0;
  for (std::size_t d = hist.size(); d-- > 0;) {
    if (above + hist[d] >= *want) {
      *want -= above;
      return static_cast<std::uint32_t>(d);
    }
    above += hist[d];
  }
  return 0;  // unreachable while want <= total
}

// The `want`-th largest of keys[0..n) (1 <= want <= n), and how many of the keys equal to it
// that takes (the rest of the want are larger). keys is reordered and overwritten.
//
// MSD radix select that starts at the highest bit where the keys differ (the candidates of
// one pass share their top bits), 11 bits a digit, keeping only the digit that holds the
// want-th key.
TopkThreshold radix_threshold(std::uint32_t* keys, std::size_t n, std::size_t want,
                              std::vector<std::uint32_t>& hist) {
  std::uint32_t prefix = 0;
  int top = 31;  // bits above `top` are settled in prefix
  while (true) {
    std::uint32_t diff = 0;
    for (std::size_t i = 0; i < n; ++i) diff |= keys[i] ^ keys[0];
    const std::uint32_t low_mask = top >= 31 ? 0xffffffffu : (2u << top) - 1u;
    diff &= low_mask;
    if (diff == 0) return TopkThreshold{prefix | (keys[0] & low_mask), want};  // all equal
    top = 31 - __builtin_clz(diff);
    prefix |= keys[0] & ~((2u << top) - 1u) & low_mask;
    const int shift = top + 1 > kDigitBits ? top + 1 - kDigitBits : 0;
    const std::uint32_t mask = (2u << (top - shift)) - 1u;
    hist.assign(std::size_t{mask} + 1, 0);
    for (std::size_t i = 0; i < n; ++i) ++hist[(keys[i] >> shift) & mask];
    const std::uint32_t d = find_digit(hist, &want);
    prefix |= d << shift;
    if (shift == 0) return TopkThreshold{prefix, want};
    std::size_t kept = 0;
    for (std::size_t i = 0; i < n; ++i) {
      const std::uint32_t key = keys[i];
      keys[kept] = key;
      kept += ((key >> shift) & mask) == d;
    }
    n = kept;
    top = shift - 1;
  }
}

double sum_squares_all(const float* x, std::size_t n) {
  double s = 0.0;
  for (std::size_t i = 0; i < n; ++i) s += static_cast<double>(x[i]) * x[i];
  return s;
}

// Hits in at least ~1 block of 25: pack every block rather than branch on each.
bool dense_hits(double fraction) {
  return 1.0 - std::pow(1.0 - fraction, 8.0) > 0.04;
}

}  // namespace

// Sampling every cell at the same offset strides through a row-major matrix; when
// the row length divides the stride the sample sees only a few columns, and a gradient's
// columns differ in scale (the benchmark's rank-4 signal: a 2048 x 2048 layer was sampled in
// 4 of its columns, and its selection fell back to the two-pass radix select in most steps).
std::uint32_t TopkSelector::sample_position(std::size_t j, std::size_t n, std::size_t m) {
  const std::size_t begin = (j * n) / m, end = ((j + 1) * n) / m;
  std::uint64_t h = (j + 1) * 0x9e3779b97f4a7c15ull;
  h = (h ^ (h >> 31)) * 0xbf58476d1ce4e5b9ull;
  h ^= h >> 29;
  return static_cast<std::uint32_t>(begin + h % (end - begin));
}

void TopkSelector::read_keys(Source src, std::uint32_t* pos, std::size_t m) {
  // The positions are known up front: prefetch well ahead of the scattered reads.
  constexpr std::size_t kAhead = 32;
  const bool fused = src.e != nullptr;
  for (std::size_t j = 0; j < m; ++j) {
    if (j + kAhead < m) {
      __builtin_prefetch(fused ? src.e + pos[j + kAhead] : src.x + pos[j + kAhead]);
      if (fused) __builtin_prefetch(src.g + pos[j + kAhead]);
    }
    pos[j] = magnitude_key(src.at(pos[j]));
  }
}

topk::HitList TopkSelector::hit_list(std::size_t capacity) {
  // The buffers only grow: no zero-filling on every call.
  if (hit_index_.size() < capacity) {
    hit_index_.resize(capacity);
    hit_value_.resize(capacity);
  }
  return topk::HitList{hit_index_.data(), hit_value_.data(), 0, capacity};
}

TopkThreshold TopkSelector::threshold_among(const float* values, std::size_t count,
                                            std::size_t want) {
  if (want == 0) return TopkThreshold{0xffffffffu, 0};  // no key exceeds it: select nothing
  if (work_.size() < count) work_.resize(count);
  for (std::size_t i = 0; i < count; ++i) work_[i] = magnitude_key(values[i]);
  return radix_threshold(work_.data(), count, want, hist_);
}

namespace {
template <bool kValues, bool kRest>
void emit_impl(const topk::HitList& cand, const TopkThreshold& t, std::size_t want,
               const TopkOutput& out) {
  // Branch-free: every candidate is written at the output's end, only those taken advance
  // it. Once `want` are out, the rest only count towards rest_sq.
  std::size_t n_out = 0, ties = t.ties, j = 0;
  double rest = 0.0;
  for (; j < cand.size && n_out < want; ++j) {
    const float v = cand.value[j];
    const std::uint32_t key = magnitude_key(v);
    const bool tie = key == t.key && ties > 0;
    const bool take = key > t.key || tie;
    out.indices[n_out] = cand.index[j];
    if (kValues) out.values[n_out] = v;
    n_out += take;
    ties -= tie;
    if (kRest) rest += take ? 0.0 : static_cast<double>(v) * v;
  }
  if (kRest) {
    for (; j < cand.size; ++j) rest += static_cast<double>(cand.value[j]) * cand.value[j];
    *out.rest_sq += rest;
  }
}
}  // namespace

void TopkSelector::emit(const topk::HitList& cand, const TopkThreshold& t, std::size_t want,
                        const TopkOutput& out) {
  if (out.values)
    out.rest_sq ? emit_impl<true, true>(cand, t, want, out)
                : emit_impl<true, false>(cand, t, want, out);
  else
    out.rest_sq ? emit_impl<false, true>(cand, t, want, out)
                : emit_impl<false, false>(cand, t, want, out);
}

void TopkSelector::select_radix(const float* x, std::size_t n, std::size_t k,
                                const TopkOutput& out) {
  if (out.rest_sq) *out.rest_sq = 0.0;
  if (k == 0) {
    if (out.rest_sq) *out.rest_sq = sum_squares_all(x, n);
    return;
  }
  if (k >= n) {
    std::iota(out.indices, out.indices + n, std::uint32_t{0});
    if (out.values) std::copy(x, x + n, out.values);
    return;
  }
  // The top digit's histogram fixes the bound exactly: the entries at or above the digit
  // holding the k-th key are all candidates, and there are that many.
  hist_.resize(std::size_t{1} << (31 - kTopShift));
  topk::histogram_high(x, n, kTopShift, hist_.data());
  std::size_t want = k;
  const std::uint32_t d0 = find_digit(hist_, &want);
  const std::size_t count = k - want + hist_[d0];
  topk::HitList cand = hit_list(count + 8);
  Lanes8 below;
  topk::scan(x, 0, n, d0 << kTopShift, dense_hits(static_cast<double>(count) / n), &cand,
             out.rest_sq ? &below : nullptr);
  if (out.rest_sq) *out.rest_sq = below.total();
  emit(cand, threshold_among(cand.value, cand.size, k), k, out);
}

void TopkSelector::select_exact(const float* x, std::size_t n, std::size_t k,
                                const TopkOutput& out) {
  exact(Source{x, nullptr, nullptr}, n, k, out);
}

void TopkSelector::select_exact_ef(float* e, const float* g, std::size_t n, std::size_t k,
                                   const TopkOutput& out) {
  exact(Source{nullptr, e, g}, n, k, out);
}

void TopkSelector::select_sampled(const float* x, std::size_t n, std::size_t k,
                                  const RandomStream& rng, const TopkOutput& out) {
  sampled(Source{x, nullptr, nullptr}, n, k, rng, out);
}

void TopkSelector::select_sampled_ef(float* e, const float* g, std::size_t n, std::size_t k,
                                     const RandomStream& rng, const TopkOutput& out) {
  sampled(Source{nullptr, e, g}, n, k, rng, out);
}

void TopkSelector::exact(Source src, std::size_t n, std::size_t k, const TopkOutput& out) {
  const bool fused = src.e != nullptr;
  const float* x = fused ? src.e : src.x;  // x once the pass has summed it
  if (k == 0 || k >= n || n < kSmall) {
    if (fused) topk::add_into(src.e, src.g, 0, n);
    select_radix(x, n, k, out);
    return;
  }

  // A key below the k-th largest, from a sample of one entry in each of m cells: in a sample of m,
  // the k-th largest of n sits near rank t = k*m/n, with binomial spread sqrt(m q (1-q)); lo is the
  // sample key four spreads further down.
  const std::size_t m = kSampleSize;
  sample_keys_.resize(m);
  std::uint32_t* pos = sample_keys_.data();
  for (std::size_t j = 0; j < m; ++j) pos[j] = sample_position(j, n, m);
  read_keys(src, pos, m);
  const double q = static_cast<double>(k) / static_cast<double>(n);
  const double t = q * static_cast<double>(m);
  const double spread = 4.0 * std::sqrt(static_cast<double>(m) * q * (1.0 - q)) + 2.0;
  const long lo_rank = static_cast<long>(std::ceil(t + spread));
  std::uint32_t lo = 0;
  if (lo_rank < static_cast<long>(m)) {
    std::nth_element(sample_keys_.begin(), sample_keys_.begin() + lo_rank, sample_keys_.end(),
                     std::greater<std::uint32_t>());
    lo = sample_keys_[static_cast<std::size_t>(lo_rank)];
  }

  // One pass collects the entries with key >= lo, in index order. It stops early when they
  // overflow the list: then the sample was misleading.
  const std::size_t cap = std::max<std::size_t>(n / 8, 4096) + k;
  topk::HitList cand = hit_list(cap + 8);
  Lanes8 below;
  Lanes8* sums = out.rest_sq ? &below : nullptr;
  const bool dense = dense_hits(static_cast<double>(lo_rank) / static_cast<double>(m));
  const std::size_t stop = fused ? topk::scan_ef(src.e, src.g, 0, n, lo, dense, &cand, sums)
                                 : topk::scan(x, 0, n, lo, dense, &cand, sums);
  if (stop < n || cand.size > cap || cand.size < k) {
    ++fallbacks_;
    if (fused) topk::add_into(src.e, src.g, stop, n);
    select_radix(x, n, k, out);
    return;
  }
  if (out.rest_sq) *out.rest_sq = below.total();
  emit(cand, threshold_among(cand.value, cand.size, k), k, out);
}

void TopkSelector::sampled(Source src, std::size_t n, std::size_t k, const RandomStream& rng,
                           const TopkOutput& out) {
  const bool fused = src.e != nullptr;
  const float* x = fused ? src.e : src.x;
  if (k == 0 || k >= n || n < topk_math::kSampledMinN) {
    exact(src, n, k, out);
    return;
  }
  // A random sample of ~1% (at least 1024): one uniform position in each of m equal cells;
  // cell j draws rng.uniform(j).
  const std::size_t m = topk_math::sample_count(n);
  const std::size_t cell = n / m;
  sample_keys_.resize(m);
  uniforms_.resize(m);
  fill_uniforms(rng, 0, m, uniforms_.data());  // uniforms_[j] = rng.uniform(j)
  std::uint32_t* pos = sample_keys_.data();
  for (std::size_t j = 0; j < m; ++j) pos[j] = topk_math::sample_position(uniforms_[j], j, cell);
  read_keys(src, pos, m);
  // The threshold: the (r+1)-th largest sample key.
  const std::size_t r = topk_math::sample_rank(n, k, m);
  const std::uint32_t threshold = radix_threshold(sample_keys_.data(), m, r + 1, hist_).key;

  // One pass collects the entries at or above the threshold (the list grows as needed).
  topk::HitList cand = hit_list(2 * k + 8);
  Lanes8 below;
  Lanes8* sums = out.rest_sq ? &below : nullptr;
  const bool dense = dense_hits(static_cast<double>(k) / static_cast<double>(n));
  for (std::size_t at = 0; at < n;) {
    at = fused ? topk::scan_ef(src.e, src.g, at, n, threshold, dense, &cand, sums)
               : topk::scan(x, at, n, threshold, dense, &cand, sums);
    if (at < n) {
      const std::size_t size = cand.size;
      cand = hit_list(2 * cand.capacity);
      cand.size = size;
    }
  }
  if (out.rest_sq) *out.rest_sq = below.total();

  const std::size_t passed = cand.size;
  if (passed >= k) {  // too many: the exact top-k among those that passed
    emit(cand, threshold_among(cand.value, passed, k), k, out);
    return;
  }
  // Too few: pad with the lowest indices that did not pass, keeping the output ascending.
  pad_.clear();
  double pad_sq = 0.0;
  for (std::uint32_t i = 0, c = 0; pad_.size() < k - passed; ++i) {
    if (c < passed && cand.index[c] == i) {
      ++c;
    } else {
      pad_.push_back(i);
      pad_sq += static_cast<double>(x[i]) * x[i];
    }
  }
  std::merge(cand.index, cand.index + passed, pad_.begin(), pad_.end(), out.indices);
  if (out.values)
    for (std::size_t j = 0; j < k; ++j) out.values[j] = x[out.indices[j]];
  if (out.rest_sq) {
    // The padded entries came out of the below-threshold sum; recount when subtracting them
    // would cancel most of it.
    double& rest = *out.rest_sq;
    if (pad_sq <= 0.5 * rest) {
      rest -= pad_sq;
    } else {
      rest = 0.0;
      for (std::size_t i = 0, j = 0; i < n; ++i) {
        if (j < k && out.indices[j] == i) {
          ++j;
          continue;
        }
        rest += static_cast<double>(x[i]) * x[i];
      }
    }
  }
}

}  // namespace thinwire::detail
