#include "compress/low_rank.hpp"

#include <cmath>
#include <vector>

#include "common/philox.hpp"
#include "compress/low_rank_math.hpp"

namespace thinwire::detail::low_rank {

void random_init(float* q, std::size_t cols, std::size_t r, std::uint64_t seed, std::uint32_t layer,
                 std::uint64_t salt) {
  const RandomStream rng = RandomStream::make(seed, layer, kPhaseInit, salt, 0);
  for (std::size_t i = 0; i < cols * r; ++i) q[i] = gaussian(rng, i);
}

std::size_t refresh_zero_columns(float* q, std::size_t cols, std::size_t r, std::uint64_t seed,
                                 std::uint32_t layer, std::uint64_t salt) {
  std::size_t refreshed = 0;
  const RandomStream rng = RandomStream::make(seed, layer, kPhaseInit, salt, 0);
  for (std::size_t c = 0; c < r; ++c) {
    bool zero = true;
    for (std::size_t i = 0; i < cols && zero; ++i) zero = q[i * r + c] == 0.0f;
    if (!zero || cols == 0) continue;
    for (std::size_t i = 0; i < cols; ++i) q[i * r + c] = gaussian(rng, i * r + c);
    ++refreshed;
  }
  return refreshed;
}

void orthonormalize(float* p, std::size_t rows, std::size_t r) {
  for (std::size_t c = 0; c < r; ++c) {
    double before = 0.0;
    for (std::size_t i = 0; i < rows; ++i)
      before += static_cast<double>(p[i * r + c]) * p[i * r + c];
    for (int pass = 0; pass < 2; ++pass) {
      for (std::size_t prev = 0; prev < c; ++prev) {
        double dot = 0.0;
        for (std::size_t i = 0; i < rows; ++i)
          dot += static_cast<double>(p[i * r + prev]) * p[i * r + c];
        const float d = static_cast<float>(dot);
        for (std::size_t i = 0; i < rows; ++i) p[i * r + c] -= d * p[i * r + prev];
      }
    }
    double after = 0.0;
    for (std::size_t i = 0; i < rows; ++i)
      after += static_cast<double>(p[i * r + c]) * p[i * r + c];
    const float inv = column_scale(before, after, kEpsilon);
    for (std::size_t i = 0; i < rows; ++i) p[i * r + c] *= inv;
  }
}

}  // namespace thinwire::detail::low_rank
