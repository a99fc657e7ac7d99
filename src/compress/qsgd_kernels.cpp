#include "compress/qsgd_kernels.hpp"

#include <cstring>

#include "common/simd.hpp"
#include "compress/qsgd_math.hpp"

// The vector paths follow qsgd_math.hpp step by step: a = |x| / s * L (division, then
// product), NaN -> 0, min(a, L), floor(a) by truncation (a >= 0), p = a - floor(a),
// q = floor(a) + (u < p), negated for x < 0; values are float(q) * unit. No step is fused.

namespace thinwire::detail::qsgd {

namespace {

constexpr float kMaxFinite = 3.4028234663852886e+38f;

struct Partial {
  std::size_t done = 0;
  Lanes8 a, b;
};

// ---- SSE2 -------------------------------------------------------------------------------

#if TW_SSE2
inline __m128 abs_sse2(__m128 x) {
  return _mm_and_ps(x, _mm_castsi128_ps(_mm_set1_epi32(0x7fffffff)));
}

std::size_t bucket_max_sse2(const float* x, std::size_t n, float* m) {
  const __m128 big = _mm_set1_ps(kMaxFinite);
  __m128 acc = _mm_setzero_ps();
  std::size_t i = 0;
  for (; i + 4 <= n; i += 4) {
    const __m128 a = abs_sse2(_mm_loadu_ps(x + i));
    acc = _mm_max_ps(acc, _mm_and_ps(a, _mm_cmple_ps(a, big)));  // NaN and inf count as 0
  }
  acc = _mm_max_ps(acc, _mm_movehl_ps(acc, acc));
  acc = _mm_max_ss(acc, _mm_shuffle_ps(acc, acc, 1));
  *m = _mm_cvtss_f32(acc);
  return i;
}

inline void add_sq_sse2(__m128d* lo, __m128d* hi, __m128 x) {
  const __m128d d0 = _mm_cvtps_pd(x), d1 = _mm_cvtps_pd(_mm_movehl_ps(x, x));
  *lo = _mm_add_pd(*lo, _mm_mul_pd(d0, d0));
  *hi = _mm_add_pd(*hi, _mm_mul_pd(d1, d1));
}

// Adds double(p) * double(1 - p) to two pairs of lanes.
inline void add_variance_sse2(__m128d* lo, __m128d* hi, __m128 p) {
  const __m128 r = _mm_sub_ps(_mm_set1_ps(1.0f), p);
  *lo = _mm_add_pd(*lo, _mm_mul_pd(_mm_cvtps_pd(p), _mm_cvtps_pd(r)));
  *hi = _mm_add_pd(
      *hi, _mm_mul_pd(_mm_cvtps_pd(_mm_movehl_ps(p, p)), _mm_cvtps_pd(_mm_movehl_ps(r, r))));
}

inline void store_lanes(Lanes8* out, __m128d a, __m128d b, __m128d c, __m128d d) {
  _mm_storeu_pd(out->l + 0, a);
  _mm_storeu_pd(out->l + 2, b);
  _mm_storeu_pd(out->l + 4, c);
  _mm_storeu_pd(out->l + 6, d);
}

// q for four lanes, and p (the fraction).
inline __m128i quantize4_sse2(__m128 x, __m128 u, __m128 s, __m128 lv, bool positive_scale,
                              __m128* p) {
  __m128 a = positive_scale ? _mm_mul_ps(_mm_div_ps(abs_sse2(x), s), lv) : _mm_setzero_ps();
  a = _mm_and_ps(a, _mm_cmpge_ps(a, _mm_setzero_ps()));  // NaN -> 0
  a = _mm_min_ps(a, lv);
  const __m128i lower = _mm_cvttps_epi32(a);
  *p = _mm_sub_ps(a, _mm_cvtepi32_ps(lower));
  __m128i q = _mm_sub_epi32(lower, _mm_castps_si128(_mm_cmplt_ps(u, *p)));
  const __m128i neg = _mm_castps_si128(_mm_cmplt_ps(x, _mm_setzero_ps()));
  return _mm_sub_epi32(_mm_xor_si128(q, neg), neg);
}

Partial quantize_sse2(const float* x, const float* u, std::size_t n, float scale, int levels,
                      std::int8_t* q) {
  const __m128 s = _mm_set1_ps(scale), lv = _mm_set1_ps(static_cast<float>(levels));
  const bool positive = scale > 0.0f;
  __m128d q0 = _mm_setzero_pd(), q1 = q0, q2 = q0, q3 = q0, v0 = q0, v1 = q0, v2 = q0, v3 = q0;
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128 x0 = _mm_loadu_ps(x + i), x1 = _mm_loadu_ps(x + i + 4);
    __m128 p0, p1;
    const __m128i a = quantize4_sse2(x0, _mm_loadu_ps(u + i), s, lv, positive, &p0);
    const __m128i b = quantize4_sse2(x1, _mm_loadu_ps(u + i + 4), s, lv, positive, &p1);
    const __m128i w = _mm_packs_epi32(a, b);
    _mm_storel_epi64(reinterpret_cast<__m128i*>(q + i), _mm_packs_epi16(w, w));
    add_sq_sse2(&q0, &q1, x0);
    add_sq_sse2(&q2, &q3, x1);
    add_variance_sse2(&v0, &v1, p0);
    add_variance_sse2(&v2, &v3, p1);
  }
  Partial r;
  r.done = i;
  store_lanes(&r.a, q0, q1, q2, q3);
  store_lanes(&r.b, v0, v1, v2, v3);
  return r;
}

// Sign-extends 8 int8 to two vectors of 4 int32.
inline void widen8_sse2(const std::int8_t* q, __m128i* lo, __m128i* hi) {
  const __m128i b = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(q));
  const __m128i w = _mm_srai_epi16(_mm_unpacklo_epi8(b, b), 8);
  *lo = _mm_srai_epi32(_mm_unpacklo_epi16(w, w), 16);
  *hi = _mm_srai_epi32(_mm_unpackhi_epi16(w, w), 16);
}

Partial finish_sse2(const float* x, const std::int8_t* q, std::size_t n, float unit, int levels,
                    std::uint8_t* codes, float* residual) {
  const __m128 un = _mm_set1_ps(unit);
  const __m128i lv = _mm_set1_epi8(static_cast<char>(levels));
  __m128d e0 = _mm_setzero_pd(), e1 = e0, e2 = e0, e3 = e0;
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i b = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(q + i));
    _mm_storel_epi64(reinterpret_cast<__m128i*>(codes + i), _mm_add_epi8(b, lv));
    __m128i lo, hi;
    widen8_sse2(q + i, &lo, &hi);
    const __m128 r0 = _mm_sub_ps(_mm_loadu_ps(x + i), _mm_mul_ps(_mm_cvtepi32_ps(lo), un));
    const __m128 r1 = _mm_sub_ps(_mm_loadu_ps(x + i + 4), _mm_mul_ps(_mm_cvtepi32_ps(hi), un));
    if (residual) {
      _mm_storeu_ps(residual + i, r0);
      _mm_storeu_ps(residual + i + 4, r1);
    }
    add_sq_sse2(&e0, &e1, r0);
    add_sq_sse2(&e2, &e3, r1);
  }
  Partial r;
  r.done = i;
  store_lanes(&r.a, e0, e1, e2, e3);
  return r;
}
#endif

// ---- AVX2 -------------------------------------------------------------------------------

#if TW_AVX2
TW_TARGET_AVX2 inline void add_sq_avx2(__m256d* lo, __m256d* hi, __m256 x) {
  const __m256d d0 = _mm256_cvtps_pd(_mm256_castps256_ps128(x));
  const __m256d d1 = _mm256_cvtps_pd(_mm256_extractf128_ps(x, 1));
  *lo = _mm256_fmadd_pd(d0, d0, *lo);  // exact: the square of an f32 is exact in double
  *hi = _mm256_fmadd_pd(d1, d1, *hi);
}

TW_TARGET_AVX2 std::size_t bucket_max_avx2(const float* x, std::size_t n, float* m) {
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  const __m256 big = _mm256_set1_ps(kMaxFinite);
  __m256 acc = _mm256_setzero_ps();
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 a = _mm256_and_ps(_mm256_loadu_ps(x + i), abs_mask);
    acc = _mm256_max_ps(acc, _mm256_and_ps(a, _mm256_cmp_ps(a, big, _CMP_LE_OQ)));
  }
  __m128 h = _mm_max_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
  h = _mm_max_ps(h, _mm_movehl_ps(h, h));
  h = _mm_max_ss(h, _mm_shuffle_ps(h, h, 1));
  *m = _mm_cvtss_f32(h);
  return i;
}

TW_TARGET_AVX2 Partial quantize_avx2(const float* x, const float* u, std::size_t n, float scale,
                                     int levels, std::int8_t* q) {
  const __m256 s = _mm256_set1_ps(scale), lv = _mm256_set1_ps(static_cast<float>(levels));
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  const __m256 one = _mm256_set1_ps(1.0f), zero = _mm256_setzero_ps();
  const bool positive = scale > 0.0f;
  __m256d sq_lo = _mm256_setzero_pd(), sq_hi = sq_lo, var_lo = sq_lo, var_hi = sq_lo;
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_loadu_ps(x + i);
    __m256 a = positive ? _mm256_mul_ps(_mm256_div_ps(_mm256_and_ps(v, abs_mask), s), lv) : zero;
    a = _mm256_and_ps(a, _mm256_cmp_ps(a, zero, _CMP_GE_OQ));  // NaN -> 0
    a = _mm256_min_ps(a, lv);
    const __m256i lower = _mm256_cvttps_epi32(a);
    const __m256 p = _mm256_sub_ps(a, _mm256_cvtepi32_ps(lower));
    __m256i qi = _mm256_sub_epi32(
        lower, _mm256_castps_si256(_mm256_cmp_ps(_mm256_loadu_ps(u + i), p, _CMP_LT_OQ)));
    const __m256i neg = _mm256_castps_si256(_mm256_cmp_ps(v, zero, _CMP_LT_OQ));
    qi = _mm256_sub_epi32(_mm256_xor_si256(qi, neg), neg);
    const __m128i w = _mm_packs_epi32(_mm256_castsi256_si128(qi), _mm256_extracti128_si256(qi, 1));
    _mm_storel_epi64(reinterpret_cast<__m128i*>(q + i), _mm_packs_epi16(w, w));
    add_sq_avx2(&sq_lo, &sq_hi, v);
    // double(p) * double(1 - p): the product of two f32 is exact in double, so FMA is too.
    const __m256 r = _mm256_sub_ps(one, p);
    var_lo = _mm256_fmadd_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(p)),
                             _mm256_cvtps_pd(_mm256_castps256_ps128(r)), var_lo);
    var_hi = _mm256_fmadd_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(p, 1)),
                             _mm256_cvtps_pd(_mm256_extractf128_ps(r, 1)), var_hi);
  }
  Partial out;
  out.done = i;
  _mm256_storeu_pd(out.a.l, sq_lo);
  _mm256_storeu_pd(out.a.l + 4, sq_hi);
  _mm256_storeu_pd(out.b.l, var_lo);
  _mm256_storeu_pd(out.b.l + 4, var_hi);
  return out;
}

TW_TARGET_AVX2 Partial finish_avx2(const float* x, const std::int8_t* q, std::size_t n, float unit,
                                   int levels, std::uint8_t* codes, float* residual) {
  const __m256 un = _mm256_set1_ps(unit);
  const __m128i lv = _mm_set1_epi8(static_cast<char>(levels));
  __m256d e_lo = _mm256_setzero_pd(), e_hi = e_lo;
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i b = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(q + i));
    _mm_storel_epi64(reinterpret_cast<__m128i*>(codes + i), _mm_add_epi8(b, lv));
    const __m256 value = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(b)), un);
    const __m256 r = _mm256_sub_ps(_mm256_loadu_ps(x + i), value);
    if (residual) _mm256_storeu_ps(residual + i, r);
    add_sq_avx2(&e_lo, &e_hi, r);
  }
  Partial out;
  out.done = i;
  _mm256_storeu_pd(out.a.l, e_lo);
  _mm256_storeu_pd(out.a.l + 4, e_hi);
  return out;
}

TW_TARGET_AVX2 std::size_t dequantize_avx2(const std::uint8_t* codes, std::size_t n, int levels,
                                           float unit, float* out, bool accumulate) {
  const __m256i lv = _mm256_set1_epi32(levels);
  const __m256 un = _mm256_set1_ps(unit);
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256i c =
        _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(codes + i)));
    __m256 v = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(c, lv)), un);
    if (accumulate) v = _mm256_add_ps(_mm256_loadu_ps(out + i), v);
    _mm256_storeu_ps(out + i, v);
  }
  return i;
}
#endif

// One code at bit `pos` (codes straddle at most two bytes), ORed in.
inline void or_code(std::uint8_t* out, std::size_t pos, std::uint32_t code, int bits) {
  out[pos >> 3] |= static_cast<std::uint8_t>(code << (pos & 7));
  if ((pos & 7) + static_cast<std::size_t>(bits) > 8)
    out[(pos >> 3) + 1] |= static_cast<std::uint8_t>(code >> (8 - (pos & 7)));
}

inline std::uint32_t read_code(const std::uint8_t* packed, std::size_t pos, int bits) {
  std::uint32_t word = packed[pos >> 3];
  if ((pos & 7) + static_cast<std::size_t>(bits) > 8)
    word |= static_cast<std::uint32_t>(packed[(pos >> 3) + 1]) << 8;
  return (word >> (pos & 7)) & ((1u << bits) - 1u);
}

}  // namespace

float bucket_max(const float* x, std::size_t n) {
  float m = 0.0f;
  std::size_t i = 0;
#if TW_AVX2
  if (simd_level() == SimdLevel::avx2) i = bucket_max_avx2(x, n, &m);
#endif
#if TW_SSE2
  if (simd_level() == SimdLevel::sse2) i = bucket_max_sse2(x, n, &m);
#endif
  // max is exact and order-free: folding the rest in gives the same value.
  for (; i < n; ++i) m = qsgd_scale_step(m, x[i]);
  return m;
}

QuantizeSums quantize(const float* x, const float* u, std::size_t n, float scale, int levels,
                      std::int8_t* q) {
  Partial p;
  const SimdLevel level = simd_level();
#if TW_AVX2
  if (level == SimdLevel::avx2) p = quantize_avx2(x, u, n, scale, levels, q);
#endif
#if TW_SSE2
  if (level == SimdLevel::sse2) p = quantize_sse2(x, u, n, scale, levels, q);
#endif
  for (std::size_t i = p.done; i < n; ++i) {
    const float v = x[i];
    q[i] = static_cast<std::int8_t>(qsgd_quantize(v, scale, levels, u[i]));
    const float frac = qsgd_fraction(v, scale, levels);
    p.a.l[i & 7] += static_cast<double>(v) * v;
    p.b.l[i & 7] += static_cast<double>(frac) * (1.0f - frac);
  }
  return QuantizeSums{p.a.total(), p.b.total()};
}

double finish(const float* x, const std::int8_t* q, std::size_t n, float unit, int levels,
              std::uint8_t* codes, float* residual) {
  Partial p;
  const SimdLevel level = simd_level();
#if TW_AVX2
  if (level == SimdLevel::avx2) p = finish_avx2(x, q, n, unit, levels, codes, residual);
#endif
#if TW_SSE2
  if (level == SimdLevel::sse2) p = finish_sse2(x, q, n, unit, levels, codes, residual);
#endif
  for (std::size_t i = p.done; i < n; ++i) {
    codes[i] = static_cast<std::uint8_t>(q[i] + levels);
    const float r = x[i] - qsgd_value(q[i], unit);
    p.a.l[i & 7] += static_cast<double>(r) * r;
    if (residual) residual[i] = r;
  }
  return p.a.total();
}

void pack_codes(const std::uint8_t* codes, std::size_t n, int bits, std::uint8_t* out,
                std::size_t bit_pos) {
  const auto b = static_cast<std::size_t>(bits);
  std::size_t i = 0;
  for (; i < n && (bit_pos & 7); ++i, bit_pos += b) or_code(out, bit_pos, codes[i], bits);
  std::uint8_t* p = out + (bit_pos >> 3);
  if (bits == 8) {
    std::memcpy(p, codes + i, n - i);
    return;
  }
#if TW_SSE2
  if (bits == 4 && simd_level() != SimdLevel::scalar) {
    const __m128i low = _mm_set1_epi16(0x00ff);
    for (; i + 16 <= n; i += 16, p += 8, bit_pos += 64) {
      const __m128i c = _mm_loadu_si128(reinterpret_cast<const __m128i*>(codes + i));
      const __m128i pair =
          _mm_or_si128(_mm_and_si128(c, low), _mm_slli_epi16(_mm_srli_epi16(c, 8), 4));
      _mm_storel_epi64(reinterpret_cast<__m128i*>(p), _mm_packus_epi16(pair, pair));
    }
  }
#endif
  // Eight codes fill exactly `bits` bytes.
  for (; i + 8 <= n; i += 8, p += b, bit_pos += 8 * b) {
    std::uint64_t w = 0;
    for (std::size_t j = 0; j < 8; ++j) w |= static_cast<std::uint64_t>(codes[i + j]) << (b * j);
    for (std::size_t k = 0; k < b; ++k) p[k] = static_cast<std::uint8_t>(w >> (8 * k));
  }
  for (; i < n; ++i, bit_pos += b) or_code(out, bit_pos, codes[i], bits);
}

void unpack_codes(const std::uint8_t* packed, std::size_t packed_bytes, std::size_t first,
                  std::size_t count, int bits, std::uint8_t* codes) {
  const auto b = static_cast<std::size_t>(bits);
  const std::uint8_t* p = packed + first * b / 8;
  const std::uint8_t* end = packed + packed_bytes;
  std::size_t i = 0;
  if (bits == 8) {
    std::memcpy(codes, p, count);
    return;
  }
#if TW_SSE2
  if (bits == 4 && simd_level() != SimdLevel::scalar) {
    const __m128i nibble = _mm_set1_epi8(0x0f);
    for (; i + 16 <= count; i += 16, p += 8) {
      const __m128i v = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p));
      const __m128i lo = _mm_and_si128(v, nibble), hi = _mm_and_si128(_mm_srli_epi16(v, 4), nibble);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(codes + i), _mm_unpacklo_epi8(lo, hi));
    }
  }
#endif
  const std::uint64_t mask = (std::uint64_t{1} << b) - 1u;
  for (; i + 8 <= count; i += 8, p += b) {
    std::uint64_t w = 0;
    if (p + 8 <= end) {
      std::memcpy(&w, p, 8);
    } else {
      for (std::size_t k = 0; k < b; ++k) w |= static_cast<std::uint64_t>(p[k]) << (8 * k);
    }
    for (std::size_t j = 0; j < 8; ++j)
      codes[i + j] = static_cast<std::uint8_t>((w >> (b * j)) & mask);
  }
  for (; i < count; ++i)
    codes[i] = static_cast<std::uint8_t>(read_code(packed, (first + i) * b, bits));
}

std::uint8_t max_code(const std::uint8_t* codes, std::size_t n) {
  std::uint8_t m = 0;
  std::size_t i = 0;
#if TW_SSE2
  if (simd_level() != SimdLevel::scalar && n >= 16) {
    __m128i acc = _mm_setzero_si128();
    for (; i + 16 <= n; i += 16)
      acc = _mm_max_epu8(acc, _mm_loadu_si128(reinterpret_cast<const __m128i*>(codes + i)));
    alignas(16) std::uint8_t lanes[16];
    _mm_store_si128(reinterpret_cast<__m128i*>(lanes), acc);
    for (std::uint8_t v : lanes) m = v > m ? v : m;
  }
#endif
  for (; i < n; ++i) m = codes[i] > m ? codes[i] : m;
  return m;
}

void dequantize(const std::uint8_t* codes, std::size_t n, int levels, float unit, float* out,
                bool accumulate) {
  std::size_t i = 0;
#if TW_AVX2
  if (simd_level() == SimdLevel::avx2) i = dequantize_avx2(codes, n, levels, unit, out, accumulate);
#endif
#if TW_SSE2
  if (simd_level() == SimdLevel::sse2) {
    const __m128i lv = _mm_set1_epi32(levels), zero = _mm_setzero_si128();
    const __m128 un = _mm_set1_ps(unit);
    for (; i + 8 <= n; i += 8) {
      const __m128i w =
          _mm_unpacklo_epi8(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(codes + i)), zero);
      __m128 v0 = _mm_mul_ps(_mm_cvtepi32_ps(_mm_sub_epi32(_mm_unpacklo_epi16(w, zero), lv)), un);
      __m128 v1 = _mm_mul_ps(_mm_cvtepi32_ps(_mm_sub_epi32(_mm_unpackhi_epi16(w, zero), lv)), un);
      if (accumulate) {
        v0 = _mm_add_ps(_mm_loadu_ps(out + i), v0);
        v1 = _mm_add_ps(_mm_loadu_ps(out + i + 4), v1);
      }
      _mm_storeu_ps(out + i, v0);
      _mm_storeu_ps(out + i + 4, v1);
    }
  }
#endif
  for (; i < n; ++i) {
    const float v = qsgd_value(static_cast<int>(codes[i]) - levels, unit);
    if (accumulate)
      out[i] += v;
    else
      out[i] = v;
  }
}

}  // namespace thinwire::detail::qsgd
