// Top-k selection by magnitude over the float bit patterns: for finite floats, |a| < |b| iff
// (bits(a) & 0x7fffffff) < (bits(b) & 0x7fffffff), so selection is a radix select on 31-bit
// unsigned keys. NaN keys sort above infinity. Ties go to the lower index, which makes the
// selected SET a function of the input alone: every backend picks the same one.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "common/half.hpp"
#include "common/host_device.hpp"
#include "common/philox.hpp"

namespace thinwire::detail {

TW_HD std::uint32_t magnitude_key(float x) {
  return float_bits(x) & 0x7fffffffu;
}

// The k of n elements are those with key > threshold, plus the first `ties` elements (in
// index order) with key == threshold.
struct TopkThreshold {
  std::uint32_t key = 0;
  std::size_t ties = 0;
};

class TopkSelector {
 public:
  // Writes the indices of the k largest |x| to indices[0..k), ascending. k <= n < 2^32.
  //
  // A strided sample brackets the k-th key; one pass collects the entries above the
  // bracket and the candidates inside it; a radix select over the candidates finds the
  // exact threshold. When the bracket misses (adversarial data, heavy ties) it falls back
  // to a full radix select (11/11/9-bit digit histograms, shrinking candidate list). Both
  // paths return the exact set; the fast path only makes it cheaper.
  void select_exact(const float* x, std::size_t n, std::size_t k, std::uint32_t* indices);

  // DGC's sampled threshold: the k-th largest key of a random ~1% sample becomes the
  // threshold; entries at or above it are kept, trimmed to the exact top-k of those when
  // there are more than k, and padded with the lowest-index unselected entries when there
  // are fewer. Always exactly k indices, ascending.
  void select_sampled(const float* x, std::size_t n, std::size_t k, const RandomStream& rng,
                      std::uint32_t* indices);

  // The full radix select alone (what the fast path falls back to); public for tests.
  void select_radix(const float* x, std::size_t n, std::size_t k, std::uint32_t* indices);

  // Counts of the last select_exact call's path, for tests and benchmarks.
  std::size_t fallbacks() const { return fallbacks_; }

 private:
  // Exact threshold for taking `want` entries among `cand` (indices into x).
  TopkThreshold threshold_among(const float* x, const std::vector<std::uint32_t>& cand,
                                std::size_t want);
  // Writes, in index order, the entries of cand with key > t.key and the first t.ties with
  // key == t.key.
  static std::size_t emit(const float* x, const std::vector<std::uint32_t>& cand,
                          const TopkThreshold& t, std::uint32_t* out);

  std::vector<std::uint32_t> above_, cand_, work_, sample_keys_, merged_;
  std::vector<std::uint32_t> hist_;
  std::size_t fallbacks_ = 0;
};

}  // namespace thinwire::detail
