// Per-element arithmetic of top-k selection shared by the host selector (topk_select.cpp),
// its CPU emulation (kernels/emulated/topk.cpp) and the CUDA kernels (kernels/topk.cu), so
// that every backend selects the same set.
#pragma once

#include <cstddef>
#include <cstdint>

#include "common/host_device.hpp"

namespace thinwire::detail::topk_math {

// ---- sampled selection (TopkSelector::select_sampled) ----------------------------------------

// Below this many elements (or for k = 0, k >= n) sampled selection is the exact one.
constexpr std::size_t kSampledMinN = 1024;

// The sample: m = max(1024, n / 100) cells of n / m elements, one uniform position in each.
TW_HD std::size_t sample_count(std::size_t n) {
  return n / 100 > 1024 ? n / 100 : 1024;
}

// The position cell j samples with the uniform u = rng.uniform(j): the f32 product u * cell,
// truncated, clamped to the cell.
TW_HD std::uint32_t sample_position(float u, std::size_t j, std::size_t cell) {
  const std::size_t off = static_cast<std::size_t>(u * static_cast<float>(cell));
  return static_cast<std::uint32_t>(j * cell + (off < cell - 1 ? off : cell - 1));
}

// The sample threshold is the (r+1)-th largest of the m sample keys.
TW_HD std::size_t sample_rank(std::size_t n, std::size_t k, std::size_t m) {
  const std::size_t r = (k * m + n - 1) / n - 1;
  return r < m - 1 ? r : m - 1;
}

// ---- radix select over 31-bit magnitude keys --------------------------------------------------
// Three digits: bits 30..20 (2048 bins), 19..10 (1024), 9..0 (1024).

constexpr int kRadixLevels = 3;

TW_HD int radix_shift(int level) {
  return level == 0 ? 20 : level == 1 ? 10 : 0;
}
TW_HD std::uint32_t radix_bins(int level) {
  return level == 0 ? 2048u : 1024u;
}
// Whether `key` shares the digits above `level` with the threshold's settled prefix.
TW_HD bool radix_matches(std::uint32_t key, std::uint32_t prefix, int level) {
  const int above = radix_shift(level) + (level == 0 ? 11 : 10);  // 31 at level 0
  return (key >> above) == (prefix >> above);
}
TW_HD std::uint32_t radix_digit(std::uint32_t key, int level) {
  return (key >> radix_shift(level)) & (radix_bins(level) - 1u);
}

// ---- the selection rule ------------------------------------------------------------------------
// An element is taken when key > threshold, or when it is in the tie class and fewer than
// `ties` elements of the tie class come before it (in index order). The tie class is
// key == threshold (exact selection), or key <= threshold (sampled selection padded with
// the lowest indices below the sample threshold S: threshold = S - 1).
TW_HD bool topk_greater(std::uint32_t key, std::uint32_t threshold) {
  return key > threshold;
}
TW_HD bool topk_tie_class(std::uint32_t key, std::uint32_t threshold, bool tie_le) {
  return tie_le ? key <= threshold : key == threshold;
}

}  // namespace thinwire::detail::topk_math
