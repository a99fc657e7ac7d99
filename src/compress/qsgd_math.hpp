// Per-element arithmetic of b-bit stochastic quantisation, shared by host codec and kernels.
//
// With L = 2^(b-1) - 1 levels per sign and bucket scale s = max |x| over the bucket, x maps
// to q in [-L, L]: |x|/s*L rounded down or up at random with the probability that makes
// the result unbiased, so E[decode] = x. The code on the wire is q + L (0 .. 2L).
#pragma once

#include <cmath>
#include <cstdint>

#include "common/host_device.hpp"

namespace thinwire::detail {

TW_HD int qsgd_levels(int bits) {
  return (1 << (bits - 1)) - 1;
}

// q for x given scale s and a uniform u in [0, 1). Non-finite x: +-inf saturate, NaN -> 0.
TW_HD int qsgd_quantize(float x, float scale, int levels, float u) {
  float a = scale > 0.0f ? fabsf(x) / scale * static_cast<float>(levels) : 0.0f;
  if (!(a >= 0.0f)) a = 0.0f;  // NaN
  if (a > static_cast<float>(levels)) a = static_cast<float>(levels);
  const float lower = floorf(a);
  const int q = static_cast<int>(lower) + (u < a - lower ? 1 : 0);
  return x < 0.0f ? -q : q;
}

// The fractional part p of |x|/s*L: stochastic rounding adds variance (s/L)^2 p (1-p).
TW_HD float qsgd_fraction(float x, float scale, int levels) {
  float a = scale > 0.0f ? fabsf(x) / scale * static_cast<float>(levels) : 0.0f;
  if (!(a >= 0.0f)) a = 0.0f;
  if (a > static_cast<float>(levels)) a = static_cast<float>(levels);
  return a - floorf(a);
}

// Under error feedback the compressor must be contractive (E||C(x) - x||^2 < ||x||^2), and
// unbiased stochastic rounding is not when its variance V exceeds ||x||^2 (2-bit codes on
// Gaussian buckets: V ~ 1.4 ||x||^2, and error feedback diverges). Scaling the decoded
// bucket by c = ||x||^2 / (||x||^2 + V) = 1 / (1 + omega) makes it contractive:
// E||c C(x) - x||^2 = omega / (1 + omega) ||x||^2. The scale on the wire becomes c * s.
TW_HD float qsgd_contraction(double sq_norm, double variance) {
  return sq_norm > 0.0 ? static_cast<float>(sq_norm / (sq_norm + variance)) : 1.0f;
}

TW_HD float qsgd_unit(float scale, int levels) {
  return scale / static_cast<float>(levels);
}
TW_HD float qsgd_value(int q, float unit) {
  return static_cast<float>(q) * unit;
}

// Bucket scale update that ignores non-finite values (they saturate instead).
TW_HD float qsgd_scale_step(float scale, float x) {
  const float a = fabsf(x);
  return (a > scale && a <= 3.4028234663852886e+38f) ? a : scale;
}

}  // namespace thinwire::detail
