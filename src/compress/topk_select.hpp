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

namespace topk {
struct HitList;
}

TW_HD std::uint32_t magnitude_key(float x) {
  return float_bits(x) & 0x7fffffffu;
}

// The k of n elements are those with key > threshold, plus the first `ties` elements (in
// index order) with key == threshold.
struct TopkThreshold {
  std::uint32_t key = 0;
  std::size_t ties = 0;
};

// What a selection writes: the k indices, ascending; optionally the selected values
// (values[j] = x[indices[j]]) and the sum of x^2 over the entries not selected.
struct TopkOutput {
  std::uint32_t* indices = nullptr;
  float* values = nullptr;
  double* rest_sq = nullptr;
};

class TopkSelector {
 public:
  // The k largest |x|, k <= n < 2^32.
  //
  // A sample (one entry per cell) gives a key `lo` a little below the k-th largest; one pass
  // collects the entries with key >= lo (index and value); a radix select among them finds the
  // exact threshold. When fewer than k entries reach lo, or far too many do (adversarial data,
  // heavy ties), it falls back to a full radix select (a histogram of the top 11-bit digit,
  // then the same pass and radix select with lo at that digit). Both paths return the exact
  // set; the fast path only makes it cheaper.
  void select_exact(const float* x, std::size_t n, std::size_t k, const TopkOutput& out);
  void select_exact(const float* x, std::size_t n, std::size_t k, std::uint32_t* indices) {
    select_exact(x, n, k, TopkOutput{indices});
  }

  // DGC's sampled threshold: the k-th largest key of a random ~1% sample becomes the
  // threshold; entries at or above it are kept, trimmed to the exact top-k of those when
  // there are more than k, and padded with the lowest-index unselected entries when there
  // are fewer. Always exactly k indices, ascending.
  void select_sampled(const float* x, std::size_t n, std::size_t k, const RandomStream& rng,
                      const TopkOutput& out);
  void select_sampled(const float* x, std::size_t n, std::size_t k, const RandomStream& rng,
                      std::uint32_t* indices) {
    select_sampled(x, n, k, rng, TopkOutput{indices});
  }

  // Error feedback fused into the selection pass: x = e + g (the f32 sum, e first)
  // replaces e[0..n), and the selection is what select_exact / select_sampled give on x.
  // One pass over e and g instead of one for the sum and one for the selection.
  void select_exact_ef(float* e, const float* g, std::size_t n, std::size_t k,
                       const TopkOutput& out);
  void select_sampled_ef(float* e, const float* g, std::size_t n, std::size_t k,
                         const RandomStream& rng, const TopkOutput& out);

  // The full radix select alone (what the fast path falls back to); public for tests.
  void select_radix(const float* x, std::size_t n, std::size_t k, const TopkOutput& out);
  void select_radix(const float* x, std::size_t n, std::size_t k, std::uint32_t* indices) {
    select_radix(x, n, k, TopkOutput{indices});
  }

  // The entry select_exact samples in cell j of m equal cells of n (m < n): a fixed
  // pseudo-random offset within the cell. Public for tests.
  static std::uint32_t sample_position(std::size_t j, std::size_t n, std::size_t m);

  // Counts of the select_exact calls that took the fallback, for tests and benchmarks.
  std::size_t fallbacks() const { return fallbacks_; }

 private:
  // Where the input lives: x, or x = e + g not yet summed (the fused variants).
  struct Source {
    const float* x;
    float* e;
    const float* g;
    float at(std::size_t i) const { return e ? e[i] + g[i] : x[i]; }
  };
  void exact(Source src, std::size_t n, std::size_t k, const TopkOutput& out);
  void sampled(Source src, std::size_t n, std::size_t k, const RandomStream& rng,
               const TopkOutput& out);
  // Replaces the m positions pos[j] with the magnitude keys of the entries there.
  static void read_keys(Source src, std::uint32_t* pos, std::size_t m);
  // The threshold for taking the `want` largest of `count` candidates with these values.
  TopkThreshold threshold_among(const float* values, std::size_t count, std::size_t want);
  // Writes to out, in index order, the `want` candidates with key > t.key or among the
  // first t.ties with key == t.key; adds x^2 of the others to *out.rest_sq when given.
  static void emit(const topk::HitList& cand, const TopkThreshold& t, std::size_t want,
                   const TopkOutput& out);
  // A hit list over the selector's buffers with room for `capacity` entries.
  topk::HitList hit_list(std::size_t capacity);

  std::vector<std::uint32_t> hit_index_, work_, sample_keys_, pad_;
  std::vector<float> hit_value_, uniforms_;
  std::vector<std::uint32_t> hist_;
  std::size_t fallbacks_ = 0;
};

}  // namespace thinwire::detail
