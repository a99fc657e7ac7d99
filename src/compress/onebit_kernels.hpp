// Host kernels of 1-bit compression (AVX2 or SSE2 where available, scalar otherwise; see
// common/simd.hpp). Each computes
// exactly what the per-element functions of onebit_math.hpp define, element by element; the
// sums of squares that set a scale follow the 8-lane order of common/simd.hpp.
#pragma once

#include <cstddef>
#include <cstdint>

namespace thinwire::detail::onebit {

// s = sqrt(sum_sq / n) as f32 (0 for n == 0; the default quiet NaN when sum_sq is NaN).
float scale_from(double sum_sq, std::size_t n);

// Sign bits of x[0..n) into bits[0..ceil(n/8)) (bit i%8 of byte i/8, padding bits zero).
// With `residual` (may alias x) writes x - onebit_value(sign, scale). Returns the sum of the
// squared residuals (accumulated in double).
double pack(const float* x, std::size_t n, float scale, std::uint8_t* bits, float* residual);

// out[i] = onebit_value(bit i, scale), or out[i] += that when `accumulate`.
void unpack(const std::uint8_t* bits, std::size_t n, float scale, float* out, bool accumulate);

// e[i] = raw[i] - onebit_value(onebit_sign(raw[i]), scale): the residual of an encoded
// chunk from the chunk itself and its scale.
void residual_of(const float* raw, std::size_t n, float scale, float* e);

// One pass of error-feedback encoding with the error memory in factored form:
//   e = factored ? raw - onebit_value(onebit_sign(raw), prev_scale) : raw
//   x = e + g;  raw = x;  bits = sign bits of x
// and the sums that follow from x: sum x^2 (8-lane order, the scale) and sum |x|.
struct StepSums {
  double sq = 0.0;
  double abs = 0.0;
};
StepSums ef_step(float* raw, const float* g, std::size_t n, bool factored, float prev_scale,
                 std::uint8_t* bits);

}  // namespace thinwire::detail::onebit
