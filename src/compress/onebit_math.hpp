// Per-element arithmetic of 1-bit compression, shared by the host codec and the kernels.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>

#include "common/host_device.hpp"

namespace thinwire::detail {

// sign(0) = +1 (and -0.0 counts as 0); NaN encodes as negative.
TW_HD bool onebit_sign(float x) {
  return x >= 0.0f;
}
TW_HD float onebit_value(bool positive, float scale) {
  return positive ? scale : -scale;
}

// The chunk scale sqrt(sum_sq / n) as f32: 0 for n == 0, the default quiet NaN when sum_sq is
// NaN (onebit::scale_from's formula, for the kernels).
TW_HD float onebit_scale(double sum_sq, std::uint64_t n) {
  if (sum_sq != sum_sq) return std::numeric_limits<float>::quiet_NaN();
  return n ? static_cast<float>(sqrt(sum_sq / static_cast<double>(n))) : 0.0f;
}

}  // namespace thinwire::detail
