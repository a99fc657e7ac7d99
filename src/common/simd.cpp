#include "common/simd.hpp"

#include <atomic>

namespace thinwire::detail {

namespace {

SimdLevel detect() {
#if TW_AVX2
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
      __builtin_cpu_supports("popcnt") && __builtin_cpu_supports("bmi2"))
    return SimdLevel::avx2;
#endif
  return TW_SSE2 ? SimdLevel::sse2 : SimdLevel::scalar;
}

std::atomic<int> g_cap{static_cast<int>(SimdLevel::avx2)};

#if TW_AVX2
TW_TARGET_AVX2 std::size_t sum_squares_avx2(const float* x, std::size_t n, Lanes8* lanes) {
  __m256d lo = _mm256_setzero_pd(), hi = _mm256_setzero_pd();
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_loadu_ps(x + i);
    const __m256d a = _mm256_cvtps_pd(_mm256_castps256_ps128(v));
    const __m256d b = _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1));
    lo = _mm256_fmadd_pd(a, a, lo);
    hi = _mm256_fmadd_pd(b, b, hi);
  }
  _mm256_storeu_pd(lanes->l, lo);
  _mm256_storeu_pd(lanes->l + 4, hi);
  return i;
}
#endif

#if TW_SSE2
std::size_t sum_squares_sse2(const float* x, std::size_t n, Lanes8* lanes) {
  __m128d a = _mm_setzero_pd(), b = a, c = a, d = a;
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128 v = _mm_loadu_ps(x + i), w = _mm_loadu_ps(x + i + 4);
    const __m128d v0 = _mm_cvtps_pd(v), v1 = _mm_cvtps_pd(_mm_movehl_ps(v, v));
    const __m128d w0 = _mm_cvtps_pd(w), w1 = _mm_cvtps_pd(_mm_movehl_ps(w, w));
    a = _mm_add_pd(a, _mm_mul_pd(v0, v0));
    b = _mm_add_pd(b, _mm_mul_pd(v1, v1));
    c = _mm_add_pd(c, _mm_mul_pd(w0, w0));
    d = _mm_add_pd(d, _mm_mul_pd(w1, w1));
  }
  _mm_storeu_pd(lanes->l + 0, a);
  _mm_storeu_pd(lanes->l + 2, b);
  _mm_storeu_pd(lanes->l + 4, c);
  _mm_storeu_pd(lanes->l + 6, d);
  return i;
}
#endif

}  // namespace

SimdLevel simd_level() {
  static const SimdLevel best = detect();
  const int cap = g_cap.load(std::memory_order_relaxed);
  return static_cast<int>(best) < cap ? best : static_cast<SimdLevel>(cap);
}

void set_simd_cap(SimdLevel cap) {
  g_cap.store(static_cast<int>(cap), std::memory_order_relaxed);
}

double sum_squares_8lane(const float* x, std::size_t n) {
  Lanes8 lanes;
  std::size_t i = 0;
  const SimdLevel level = simd_level();
#if TW_AVX2
  if (level == SimdLevel::avx2) i = sum_squares_avx2(x, n, &lanes);
#endif
#if TW_SSE2
  if (level == SimdLevel::sse2) i = sum_squares_sse2(x, n, &lanes);
#endif
  for (; i + 8 <= n; i += 8)
    for (int l = 0; l < 8; ++l) lanes.l[l] += static_cast<double>(x[i + l]) * x[i + l];
  for (; i < n; ++i) lanes.l[i & 7] += static_cast<double>(x[i]) * x[i];
  return lanes.total();
}

}  // namespace thinwire::detail
