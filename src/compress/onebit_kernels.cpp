#include "compress/onebit_kernels.hpp"

#include <array>
#include <cmath>
#include <limits>

#include "common/simd.hpp"
#include "compress/onebit_math.hpp"

// The vector paths compute onebit_value(onebit_sign(x), s) as s with the sign bit set where
// x >= 0 is false (an ordered compare: NaN is negative, -0.0 positive). That is exactly the
// f32 -s of onebit_value, so residuals and decoded values are the same bits on every path.

namespace thinwire::detail::onebit {

namespace {

// Partial results of a vector main loop: how far it got and its lanes.
struct Partial {
  std::size_t done = 0;
  Lanes8 a, b;  // kernel-specific sums, in the 8-lane order
};

// ---- scalar -----------------------------------------------------------------------------

template <bool kFactored>
inline float step_element(float* raw, const float* g, std::size_t i, float prev_scale) {
  float e = raw[i];
  if (kFactored) e = e - onebit_value(onebit_sign(e), prev_scale);
  const float x = e + g[i];
  raw[i] = x;
  return x;
}

// Elements [from, n) of an ef_step, 8-lane sums continued from `p`.
template <bool kFactored>
StepSums ef_step_rest(float* raw, const float* g, std::size_t n, float prev_scale,
                      std::uint8_t* bits, Partial p) {
  std::size_t i = p.done;
  for (; i < n; i += 8) {
    const std::size_t m = n - i < 8 ? n - i : 8;
    std::uint8_t byte = 0;
    for (std::size_t l = 0; l < m; ++l) {
      const float x = step_element<kFactored>(raw, g, i + l, prev_scale);
      byte |= static_cast<std::uint8_t>(onebit_sign(x)) << l;
      p.a.l[l] += static_cast<double>(x) * x;
      p.b.l[l] += std::fabs(static_cast<double>(x));
    }
    bits[i >> 3] = byte;
  }
  return StepSums{p.a.total(), p.b.total()};
}

double pack_rest(const float* x, std::size_t n, float scale, std::uint8_t* bits, float* residual,
                 Partial p) {
  for (std::size_t i = p.done; i < n; i += 8) {
    const std::size_t m = n - i < 8 ? n - i : 8;
    std::uint8_t byte = 0;
    for (std::size_t l = 0; l < m; ++l) {
      const float v = x[i + l];
      const bool positive = onebit_sign(v);
      byte |= static_cast<std::uint8_t>(positive) << l;
      const float r = v - onebit_value(positive, scale);
      p.a.l[l] += static_cast<double>(r) * r;
      if (residual) residual[i + l] = r;
    }
    bits[i >> 3] = byte;
  }
  return p.a.total();
}

// ---- SSE2 -------------------------------------------------------------------------------

#if TW_SSE2
inline __m128 sign_of(__m128 x) {
  return _mm_cmpge_ps(x, _mm_setzero_ps());
}
inline __m128 value_of(__m128 positive, __m128 s) {
  return _mm_xor_ps(s, _mm_andnot_ps(positive, _mm_set1_ps(-0.0f)));
}
// Lanes (2j, 2j+1) of x's low or high half, in double.
inline __m128d lo_pd(__m128 x) {
  return _mm_cvtps_pd(x);
}
inline __m128d hi_pd(__m128 x) {
  return _mm_cvtps_pd(_mm_movehl_ps(x, x));
}
inline void store_lanes(Lanes8* out, __m128d a, __m128d b, __m128d c, __m128d d) {
  _mm_storeu_pd(out->l + 0, a);
  _mm_storeu_pd(out->l + 2, b);
  _mm_storeu_pd(out->l + 4, c);
  _mm_storeu_pd(out->l + 6, d);
}

template <bool kFactored>
Partial ef_step_sse2(float* raw, const float* g, std::size_t n, float prev_scale,
                     std::uint8_t* bits) {
  const __m128 sp = _mm_set1_ps(prev_scale);
  const __m128d abs_mask = _mm_castsi128_pd(_mm_set1_epi64x(0x7fffffffffffffffLL));
  __m128d q0 = _mm_setzero_pd(), q1 = q0, q2 = q0, q3 = q0;  // sum x^2
  __m128d a0 = q0, a1 = q0, a2 = q0, a3 = q0;                // sum |x|
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m128 e0 = _mm_loadu_ps(raw + i), e1 = _mm_loadu_ps(raw + i + 4);
    if (kFactored) {
      e0 = _mm_sub_ps(e0, value_of(sign_of(e0), sp));
      e1 = _mm_sub_ps(e1, value_of(sign_of(e1), sp));
    }
    const __m128 x0 = _mm_add_ps(e0, _mm_loadu_ps(g + i));
    const __m128 x1 = _mm_add_ps(e1, _mm_loadu_ps(g + i + 4));
    _mm_storeu_ps(raw + i, x0);
    _mm_storeu_ps(raw + i + 4, x1);
    bits[i >> 3] = static_cast<std::uint8_t>(_mm_movemask_ps(sign_of(x0)) |
                                             (_mm_movemask_ps(sign_of(x1)) << 4));
    const __m128d d0 = lo_pd(x0), d1 = hi_pd(x0), d2 = lo_pd(x1), d3 = hi_pd(x1);
    q0 = _mm_add_pd(q0, _mm_mul_pd(d0, d0));
    q1 = _mm_add_pd(q1, _mm_mul_pd(d1, d1));
    q2 = _mm_add_pd(q2, _mm_mul_pd(d2, d2));
    q3 = _mm_add_pd(q3, _mm_mul_pd(d3, d3));
    a0 = _mm_add_pd(a0, _mm_and_pd(d0, abs_mask));
    a1 = _mm_add_pd(a1, _mm_and_pd(d1, abs_mask));
    a2 = _mm_add_pd(a2, _mm_and_pd(d2, abs_mask));
    a3 = _mm_add_pd(a3, _mm_and_pd(d3, abs_mask));
  }
  Partial p;
  p.done = i;
  store_lanes(&p.a, q0, q1, q2, q3);
  store_lanes(&p.b, a0, a1, a2, a3);
  return p;
}

Partial pack_sse2(const float* x, std::size_t n, float scale, std::uint8_t* bits, float* residual) {
  const __m128 s = _mm_set1_ps(scale);
  __m128d q0 = _mm_setzero_pd(), q1 = q0, q2 = q0, q3 = q0;
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128 x0 = _mm_loadu_ps(x + i), x1 = _mm_loadu_ps(x + i + 4);
    const __m128 p0 = sign_of(x0), p1 = sign_of(x1);
    bits[i >> 3] = static_cast<std::uint8_t>(_mm_movemask_ps(p0) | (_mm_movemask_ps(p1) << 4));
    const __m128 r0 = _mm_sub_ps(x0, value_of(p0, s)), r1 = _mm_sub_ps(x1, value_of(p1, s));
    if (residual) {
      _mm_storeu_ps(residual + i, r0);
      _mm_storeu_ps(residual + i + 4, r1);
    }
    const __m128d d0 = lo_pd(r0), d1 = hi_pd(r0), d2 = lo_pd(r1), d3 = hi_pd(r1);
    q0 = _mm_add_pd(q0, _mm_mul_pd(d0, d0));
    q1 = _mm_add_pd(q1, _mm_mul_pd(d1, d1));
    q2 = _mm_add_pd(q2, _mm_mul_pd(d2, d2));
    q3 = _mm_add_pd(q3, _mm_mul_pd(d3, d3));
  }
  Partial p;
  p.done = i;
  store_lanes(&p.a, q0, q1, q2, q3);
  return p;
}

// For each nibble, the sign bits of its four lanes (set where the bit is clear).
constexpr std::array<std::uint32_t, 64> make_nibble_signs() {
  std::array<std::uint32_t, 64> t{};
  for (int v = 0; v < 16; ++v)
    for (int l = 0; l < 4; ++l) t[4 * v + l] = ((v >> l) & 1) ? 0u : 0x80000000u;
  return t;
}
alignas(16) constexpr std::array<std::uint32_t, 64> kNibbleSigns = make_nibble_signs();
inline __m128 nibble_signs(unsigned v) {
  return _mm_load_ps(reinterpret_cast<const float*>(kNibbleSigns.data() + 4 * v));
}

std::size_t unpack_sse2(const std::uint8_t* bits, std::size_t n, float scale, float* out,
                        bool accumulate) {
  const __m128 s = _mm_set1_ps(scale);
  std::size_t i = 0;
  if (accumulate) {
    for (; i + 8 <= n; i += 8) {
      const unsigned b = bits[i >> 3];
      _mm_storeu_ps(out + i,
                    _mm_add_ps(_mm_loadu_ps(out + i), _mm_xor_ps(s, nibble_signs(b & 15u))));
      _mm_storeu_ps(out + i + 4,
                    _mm_add_ps(_mm_loadu_ps(out + i + 4), _mm_xor_ps(s, nibble_signs(b >> 4))));
    }
  } else {
    for (; i + 8 <= n; i += 8) {
      const unsigned b = bits[i >> 3];
      _mm_storeu_ps(out + i, _mm_xor_ps(s, nibble_signs(b & 15u)));
      _mm_storeu_ps(out + i + 4, _mm_xor_ps(s, nibble_signs(b >> 4)));
    }
  }
  return i;
}

std::size_t residual_of_sse2(const float* raw, std::size_t n, float scale, float* e) {
  const __m128 s = _mm_set1_ps(scale);
  std::size_t i = 0;
  for (; i + 4 <= n; i += 4) {
    const __m128 x = _mm_loadu_ps(raw + i);
    _mm_storeu_ps(e + i, _mm_sub_ps(x, value_of(sign_of(x), s)));
  }
  return i;
}
#endif

// ---- AVX2 -------------------------------------------------------------------------------

#if TW_AVX2
TW_TARGET_AVX2 inline __m256 sign_of8(__m256 x) {
  return _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_GE_OQ);
}
TW_TARGET_AVX2 inline __m256 value_of8(__m256 positive, __m256 s) {
  return _mm256_xor_ps(s, _mm256_andnot_ps(positive, _mm256_set1_ps(-0.0f)));
}
TW_TARGET_AVX2 inline __m256d lo_pd8(__m256 x) {
  return _mm256_cvtps_pd(_mm256_castps256_ps128(x));
}
TW_TARGET_AVX2 inline __m256d hi_pd8(__m256 x) {
  return _mm256_cvtps_pd(_mm256_extractf128_ps(x, 1));
}

template <bool kFactored>
TW_TARGET_AVX2 Partial ef_step_avx2(float* raw, const float* g, std::size_t n, float prev_scale,
                                    std::uint8_t* bits) {
  const __m256 sp = _mm256_set1_ps(prev_scale);
  const __m256d abs_mask = _mm256_castsi256_pd(_mm256_set1_epi64x(0x7fffffffffffffffLL));
  __m256d q_lo = _mm256_setzero_pd(), q_hi = q_lo, a_lo = q_lo, a_hi = q_lo;
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 e = _mm256_loadu_ps(raw + i);
    if (kFactored) e = _mm256_sub_ps(e, value_of8(sign_of8(e), sp));
    const __m256 x = _mm256_add_ps(e, _mm256_loadu_ps(g + i));
    _mm256_storeu_ps(raw + i, x);
    bits[i >> 3] = static_cast<std::uint8_t>(_mm256_movemask_ps(sign_of8(x)));
    const __m256d d0 = lo_pd8(x), d1 = hi_pd8(x);
    q_lo = _mm256_fmadd_pd(d0, d0, q_lo);
    q_hi = _mm256_fmadd_pd(d1, d1, q_hi);
    a_lo = _mm256_add_pd(a_lo, _mm256_and_pd(d0, abs_mask));
    a_hi = _mm256_add_pd(a_hi, _mm256_and_pd(d1, abs_mask));
  }
  Partial p;
  p.done = i;
  _mm256_storeu_pd(p.a.l, q_lo);
  _mm256_storeu_pd(p.a.l + 4, q_hi);
  _mm256_storeu_pd(p.b.l, a_lo);
  _mm256_storeu_pd(p.b.l + 4, a_hi);
  return p;
}

TW_TARGET_AVX2 Partial pack_avx2(const float* x, std::size_t n, float scale, std::uint8_t* bits,
                                 float* residual) {
  const __m256 s = _mm256_set1_ps(scale);
  __m256d q_lo = _mm256_setzero_pd(), q_hi = q_lo;
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_loadu_ps(x + i);
    const __m256 pos = sign_of8(v);
    bits[i >> 3] = static_cast<std::uint8_t>(_mm256_movemask_ps(pos));
    const __m256 r = _mm256_sub_ps(v, value_of8(pos, s));
    if (residual) _mm256_storeu_ps(residual + i, r);
    const __m256d d0 = lo_pd8(r), d1 = hi_pd8(r);
    q_lo = _mm256_fmadd_pd(d0, d0, q_lo);
    q_hi = _mm256_fmadd_pd(d1, d1, q_hi);
  }
  Partial p;
  p.done = i;
  _mm256_storeu_pd(p.a.l, q_lo);
  _mm256_storeu_pd(p.a.l + 4, q_hi);
  return p;
}
#endif

}  // namespace

float scale_from(double sum_sq, std::size_t n) {
  // A NaN sum (a NaN in x) carries whichever NaN the additions happened to propagate;
  // every path writes the same one.
  if (std::isnan(sum_sq)) return std::numeric_limits<float>::quiet_NaN();
  return n ? static_cast<float>(std::sqrt(sum_sq / static_cast<double>(n))) : 0.0f;
}

double pack(const float* x, std::size_t n, float scale, std::uint8_t* bits, float* residual) {
  Partial p;
  const SimdLevel level = simd_level();
#if TW_AVX2
  if (level == SimdLevel::avx2) p = pack_avx2(x, n, scale, bits, residual);
#endif
#if TW_SSE2
  if (level == SimdLevel::sse2) p = pack_sse2(x, n, scale, bits, residual);
#endif
  return pack_rest(x, n, scale, bits, residual, p);
}

void unpack(const std::uint8_t* bits, std::size_t n, float scale, float* out, bool accumulate) {
  std::size_t i = 0;
#if TW_SSE2
  if (simd_level() != SimdLevel::scalar) i = unpack_sse2(bits, n, scale, out, accumulate);
#endif
  for (; i < n; ++i) {
    const float v = onebit_value((bits[i >> 3] >> (i & 7)) & 1u, scale);
    if (accumulate)
      out[i] += v;
    else
      out[i] = v;
  }
}

void residual_of(const float* raw, std::size_t n, float scale, float* e) {
  std::size_t i = 0;
#if TW_SSE2
  if (simd_level() != SimdLevel::scalar) i = residual_of_sse2(raw, n, scale, e);
#endif
  for (; i < n; ++i) e[i] = raw[i] - onebit_value(onebit_sign(raw[i]), scale);
}

StepSums ef_step(float* raw, const float* g, std::size_t n, bool factored, float prev_scale,
                 std::uint8_t* bits) {
  Partial p;
  const SimdLevel level = simd_level();
#if TW_AVX2
  if (level == SimdLevel::avx2)
    p = factored ? ef_step_avx2<true>(raw, g, n, prev_scale, bits)
                 : ef_step_avx2<false>(raw, g, n, prev_scale, bits);
#endif
#if TW_SSE2
  if (level == SimdLevel::sse2)
    p = factored ? ef_step_sse2<true>(raw, g, n, prev_scale, bits)
                 : ef_step_sse2<false>(raw, g, n, prev_scale, bits);
#endif
  return factored ? ef_step_rest<true>(raw, g, n, prev_scale, bits, p)
                  : ef_step_rest<false>(raw, g, n, prev_scale, bits, p);
}

}  // namespace thinwire::detail::onebit
