// Host kernels of b-bit stochastic quantisation (AVX2 or SSE2 where available, scalar
// otherwise; see common/simd.hpp). Each computes exactly what the per-element functions of
// qsgd_math.hpp define, element by element; the per-bucket sums that set the contraction
// follow the 8-lane order of common/simd.hpp (lanes counted from the bucket's start).
#pragma once

#include <cstddef>
#include <cstdint>

namespace thinwire::detail::qsgd {

// The bucket scale before contraction: qsgd_scale_step() folded over x[0..n) from 0, i.e.
// the largest finite |x| (0 when there is none).
float bucket_max(const float* x, std::size_t n);

// q[i] = qsgd_quantize(x[i], scale, levels, u[i]), with the sums that follow from it:
// sum x^2 and the rounding variance sum p(1-p), p = qsgd_fraction(x[i], scale, levels).
struct QuantizeSums {
  double sq = 0.0;
  double variance = 0.0;
};
QuantizeSums quantize(const float* x, const float* u, std::size_t n, float scale, int levels,
                      std::int8_t* q);

// codes[i] = q[i] + levels; with `residual` (may alias x) x[i] - qsgd_value(q[i], unit).
// Returns the sum of the squared residuals.
double finish(const float* x, const std::int8_t* q, std::size_t n, float unit, int levels,
              std::uint8_t* codes, float* residual);

// Packs codes[0..n) (one per byte, each < 2^bits) LSB-first at bit `bit_pos` of out, which
// must be zero from there on (codes are ORed where they share a byte with another run).
void pack_codes(const std::uint8_t* codes, std::size_t n, int bits, std::uint8_t* out,
                std::size_t bit_pos);

// codes[0..count) = the codes first .. first+count-1 (first a multiple of 8) of a packed
// stream of `packed_bytes` bytes.
void unpack_codes(const std::uint8_t* packed, std::size_t packed_bytes, std::size_t first,
                  std::size_t count, int bits, std::uint8_t* codes);

// The largest of codes[0..n) (0 for n == 0).
std::uint8_t max_code(const std::uint8_t* codes, std::size_t n);

// out[i] = qsgd_value(codes[i] - levels, unit), or out[i] += that when `accumulate`.
void dequantize(const std::uint8_t* codes, std::size_t n, int levels, float unit, float* out,
                bool accumulate);

}  // namespace thinwire::detail::qsgd
