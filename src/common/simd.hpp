// SIMD on the host. SSE2 is part of x86-64, so it is always on there; AVX2 kernels are
// compiled with per-function target attributes and chosen at run time when the CPU has
// AVX2 with FMA, POPCNT and BMI2 (every AVX2 CPU from Haswell and Zen on), so the library
// still builds with the compiler's default flags and runs on any x86-64. Elsewhere the
// scalar loops run.
//
// Every kernel computes the same bits on every path. Sums of squares that decide a value on
// the wire (1-bit scales) use one fixed order, the "8-lane order": element i of a run goes
// to double lane i % 8, and lanes combine as ((l0+l4) + (l2+l6)) + ((l1+l5) + (l3+l7)).
// SSE2 holds the lanes in four registers of two, AVX2 in two of four, the scalar loop in an
// array; all reduce in exactly that order. The AVX2 paths add squares with FMA: the square
// of an f32 is exact in double, so fma(x, x, acc) is the same double as acc + x*x.
#pragma once

#include <cstddef>
#include <cstdint>

#if defined(__SSE2__)
#include <emmintrin.h>
#define TW_SSE2 1
#else
#define TW_SSE2 0
#endif

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define TW_AVX2 1
#define TW_TARGET_AVX2 __attribute__((target("avx2,fma,popcnt,bmi,bmi2")))
#else
#define TW_AVX2 0
#define TW_TARGET_AVX2
#endif

namespace thinwire::detail {

enum class SimdLevel : int { scalar = 0, sse2 = 1, avx2 = 2 };

// The widest path the kernels take: the best this build and CPU support, capped by
// set_simd_cap().
SimdLevel simd_level();
// For tests: cap the kernels at `cap` (SimdLevel::avx2 lifts the cap). Not thread-safe
// against running kernels.
void set_simd_cap(SimdLevel cap);

// Eight double accumulators in the 8-lane order.
struct Lanes8 {
  double l[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  double total() const { return ((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7])); }
};

// Sum of x[i]^2 over [0, n) in double, in the 8-lane order.
double sum_squares_8lane(const float* x, std::size_t n);

}  // namespace thinwire::detail
