// Per-element arithmetic of PowerSGD's host algebra (compress/low_rank.cpp), shared with the
// CUDA kernels (kernels/lowrank.cu) so that both compute the same numbers.
#pragma once

#include <cmath>
#include <cstdint>

#include "common/host_device.hpp"
#include "common/philox.hpp"

namespace thinwire::detail::low_rank {

// Box-Muller on two uniforms u1, u2 in [0, 1): 1 - u1 is in (0, 1], so the logarithm is finite.
// Double precision throughout; one rounding to f32 at the end.
TW_HD float gaussian_from_uniforms(float u1, float u2) {
  const double radius = std::sqrt(-2.0 * std::log(1.0 - static_cast<double>(u1)));
  return static_cast<float>(radius * std::cos(6.283185307179586 * static_cast<double>(u2)));
}

// Element i of a N(0, 1) stream: Box-Muller on draws 2i and 2i+1, i.e. lanes 0, 1 (i even) or
// 2, 3 (i odd) of Philox block i / 2.
TW_HD float gaussian(const RandomStream& rng, std::uint64_t i) {
  return gaussian_from_uniforms(rng.uniform(2 * i), rng.uniform(2 * i + 1));
}

// Gram-Schmidt's last step for one column: the factor its entries are multiplied by, given its
// squared norm before and after the projections. A column that vanished (zero, or below
// epsilon times its norm before: it lies in the span of the previous ones) becomes zero.
TW_HD float column_scale(double before, double after, double epsilon) {
  const bool degenerate = after == 0.0 || std::sqrt(after) < epsilon * std::sqrt(before);
  return degenerate ? 0.0f : static_cast<float>(1.0 / std::sqrt(after));
}

}  // namespace thinwire::detail::low_rank
