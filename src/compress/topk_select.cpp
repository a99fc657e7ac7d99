#include "compress/topk_select.hpp"

#include <algorithm>
#include <cmath>
#include <functional>
#include <numeric>

namespace thinwire::detail {

namespace {

// 31-bit keys in three digits, most significant first.
struct Digit {
  int shift;
  int bits;
};
constexpr Digit kDigits[3] = {{20, 11}, {9, 11}, {0, 9}};

constexpr std::size_t kSmall = std::size_t{1} << 15;  // below: plain radix select
constexpr std::size_t kSampleSize = 8192;
constexpr std::size_t kBlock = 16;

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

}  // namespace

TopkThreshold TopkSelector::threshold_among(const float* x, const std::vector<std::uint32_t>& cand,
                                            std::size_t want) {
  if (want == 0) return TopkThreshold{0xffffffffu, 0};  // no key exceeds it: select nothing
  work_.resize(cand.size());
  for (std::size_t i = 0; i < cand.size(); ++i) work_[i] = magnitude_key(x[cand[i]]);
  std::uint32_t prefix = 0;
  for (int level = 0; level < 3; ++level) {
    const Digit dg = kDigits[level];
    const std::uint32_t mask = (1u << dg.bits) - 1u;
    hist_.assign(std::size_t{1} << dg.bits, 0);
    for (std::uint32_t key : work_) ++hist_[(key >> dg.shift) & mask];
    const std::uint32_t d = find_digit(hist_, &want);
    prefix |= d << dg.shift;
    if (level < 2) {
      std::size_t kept = 0;
      for (std::uint32_t key : work_)
        if (((key >> dg.shift) & mask) == d) work_[kept++] = key;
      work_.resize(kept);
    }
  }
  return TopkThreshold{prefix, want};
}

std::size_t TopkSelector::emit(const float* x, const std::vector<std::uint32_t>& cand,
                               const TopkThreshold& t, std::uint32_t* out) {
  std::size_t n_out = 0, ties = t.ties;
  for (std::uint32_t i : cand) {
    const std::uint32_t key = magnitude_key(x[i]);
    if (key > t.key) {
      out[n_out++] = i;
    } else if (key == t.key && ties > 0) {
      out[n_out++] = i;
      --ties;
    }
  }
  return n_out;
}

void TopkSelector::select_radix(const float* x, std::size_t n, std::size_t k,
                                std::uint32_t* indices) {
  if (k == 0) return;
  if (k >= n) {
    std::iota(indices, indices + n, std::uint32_t{0});
    return;
  }
  // First digit straight off x; the rest over the shrinking list of keys in that digit.
  const Digit top = kDigits[0];
  hist_.assign(std::size_t{1} << top.bits, 0);
  for (std::size_t i = 0; i < n; ++i) ++hist_[magnitude_key(x[i]) >> top.shift];
  std::size_t want = k;
  const std::uint32_t d0 = find_digit(hist_, &want);
  work_.clear();
  work_.reserve(hist_[d0]);
  for (std::size_t i = 0; i < n; ++i) {
    const std::uint32_t key = magnitude_key(x[i]);
    if ((key >> top.shift) == d0) work_.push_back(key);
  }
  std::uint32_t prefix = d0 << top.shift;
  for (int level = 1; level < 3; ++level) {
    const Digit dg = kDigits[level];
    const std::uint32_t mask = (1u << dg.bits) - 1u;
    hist_.assign(std::size_t{1} << dg.bits, 0);
    for (std::uint32_t key : work_) ++hist_[(key >> dg.shift) & mask];
    const std::uint32_t d = find_digit(hist_, &want);
    prefix |= d << dg.shift;
    if (level < 2) {
      std::size_t kept = 0;
      for (std::uint32_t key : work_)
        if (((key >> dg.shift) & mask) == d) work_[kept++] = key;
      work_.resize(kept);
    }
  }
  // Output in index order: everything above the threshold, then ties by lowest index.
  std::size_t n_out = 0, ties = want;
  for (std::size_t i = 0; i < n; ++i) {
    const std::uint32_t key = magnitude_key(x[i]);
    if (key > prefix || (key == prefix && ties > 0)) {
      if (key == prefix) --ties;
      indices[n_out++] = static_cast<std::uint32_t>(i);
    }
  }
}

void TopkSelector::select_exact(const float* x, std::size_t n, std::size_t k,
                                std::uint32_t* indices) {
  if (k == 0) return;
  if (k >= n) {
    std::iota(indices, indices + n, std::uint32_t{0});
    return;
  }
  if (n < kSmall) {
    select_radix(x, n, k, indices);
    return;
  }

  // Bracket the k-th largest key with a strided sample: in a sample of m, the k-th largest
  // of n sits near rank t = k*m/n, with binomial spread sqrt(m q (1-q)).
  const std::size_t m = kSampleSize;
  sample_keys_.resize(m);
  for (std::size_t j = 0; j < m; ++j) sample_keys_[j] = magnitude_key(x[(j * n) / m + (n / m) / 2]);
  const double q = static_cast<double>(k) / static_cast<double>(n);
  const double t = q * static_cast<double>(m);
  const double spread = 4.0 * std::sqrt(static_cast<double>(m) * q * (1.0 - q)) + 2.0;
  const long hi_rank = static_cast<long>(std::floor(t - spread));
  const long lo_rank = static_cast<long>(std::ceil(t + spread));
  auto key_at_rank = [&](long r) {  // r-th largest sample key, 0-based
    std::nth_element(sample_keys_.begin(), sample_keys_.begin() + r, sample_keys_.end(),
                     std::greater<std::uint32_t>());
    return sample_keys_[static_cast<std::size_t>(r)];
  };
  const std::uint32_t hi = hi_rank < 0 ? 0xffffffffu : key_at_rank(hi_rank);
  const std::uint32_t lo = lo_rank >= static_cast<long>(m) ? 0u : key_at_rank(lo_rank);

  // One pass: indices above the bracket (surely selected if the bracket holds) and inside
  // it (candidates), both in index order. Blocks with nothing >= lo are skipped cheaply.
  const std::size_t cand_cap = std::max<std::size_t>(n / 8, 4096);
  above_.resize(k);
  cand_.resize(cand_cap);
  std::size_t na = 0, nc = 0;
  bool missed = false;
  std::size_t i = 0;
  for (; i + kBlock <= n && !missed; i += kBlock) {
    std::uint32_t any = 0;
    for (std::size_t j = 0; j < kBlock; ++j) any |= magnitude_key(x[i + j]) >= lo;
    if (!any) continue;
    for (std::size_t j = 0; j < kBlock; ++j) {
      const std::uint32_t key = magnitude_key(x[i + j]);
      if (key < lo) continue;
      if (key > hi) {
        if (na == k) {
          missed = true;
          break;
        }
        above_[na++] = static_cast<std::uint32_t>(i + j);
      } else {
        if (nc == cand_cap) {
          missed = true;
          break;
        }
        cand_[nc++] = static_cast<std::uint32_t>(i + j);
      }
    }
  }
  for (; i < n && !missed; ++i) {
    const std::uint32_t key = magnitude_key(x[i]);
    if (key < lo) continue;
    if (key > hi) {
      if (na == k) {
        missed = true;
        break;
      }
      above_[na++] = static_cast<std::uint32_t>(i);
    } else {
      if (nc == cand_cap) {
        missed = true;
        break;
      }
      cand_[nc++] = static_cast<std::uint32_t>(i);
    }
  }
  if (missed || na + nc < k) {
    ++fallbacks_;
    select_radix(x, n, k, indices);
    return;
  }
  above_.resize(na);
  cand_.resize(nc);
  const TopkThreshold th = threshold_among(x, cand_, k - na);
  merged_.resize(k - na);
  const std::size_t chosen = emit(x, cand_, th, merged_.data());
  std::merge(above_.begin(), above_.end(), merged_.begin(), merged_.begin() + chosen, indices);
}

void TopkSelector::select_sampled(const float* x, std::size_t n, std::size_t k,
                                  const RandomStream& rng, std::uint32_t* indices) {
  if (k == 0) return;
  if (k >= n || n < 1024) {
    select_exact(x, n, k, indices);
    return;
  }
  // A random sample of ~1% (at least 1024): one uniform position in each of m equal cells.
  const std::size_t m = std::max<std::size_t>(1024, n / 100);
  const std::size_t cell = n / m;
  sample_keys_.resize(m);
  for (std::size_t j = 0; j < m; ++j) {
    const std::size_t offset =
        std::min<std::size_t>(cell - 1, static_cast<std::size_t>(rng.uniform(j) * cell));
    sample_keys_[j] = magnitude_key(x[j * cell + offset]);
  }
  const std::size_t r = std::min(m - 1, (k * m + n - 1) / n - 1);
  std::nth_element(sample_keys_.begin(), sample_keys_.begin() + r, sample_keys_.end(),
                   std::greater<std::uint32_t>());
  const std::uint32_t threshold = sample_keys_[r];

  cand_.clear();
  cand_.reserve(2 * k);
  for (std::size_t i = 0; i < n; ++i)
    if (magnitude_key(x[i]) >= threshold) cand_.push_back(static_cast<std::uint32_t>(i));

  if (cand_.size() >= k) {  // too many: the exact top-k among those that passed
    const TopkThreshold th = threshold_among(x, cand_, k);
    emit(x, cand_, th, indices);
    return;
  }
  // Too few: pad with the lowest indices that did not pass, keeping the output ascending.
  std::size_t need = k - cand_.size(), out = 0, c = 0;
  for (std::uint32_t i = 0; out < k; ++i) {
    if (c < cand_.size() && cand_[c] == i) {
      indices[out++] = i;
      ++c;
    } else if (need > 0) {
      indices[out++] = i;
      --need;
    }
  }
}

}  // namespace thinwire::detail
