#include "common/philox_host.hpp"

#include "common/simd.hpp"

namespace thinwire::detail {

namespace {

constexpr std::uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;
constexpr std::uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;
constexpr float kTwoPowMinus24 = 5.9604644775390625e-08f;

// The SIMD paths run philox4x32_10 on several consecutive blocks at once, one block per
// 32-bit lane (counter words c0..c3 in four registers), then transpose the four outputs of
// each block back into element order.

#if TW_SSE2
// Low and high halves of the 32x32-bit products a*m, lane by lane.
inline void mulhilo_sse2(__m128i a, __m128i m, __m128i* lo, __m128i* hi) {
  const __m128i even = _mm_mul_epu32(a, m);                            // lo0 hi0 lo2 hi2
  const __m128i odd = _mm_mul_epu32(_mm_srli_epi64(a, 32), m);         // lo1 hi1 lo3 hi3
  const __m128i e = _mm_shuffle_epi32(even, _MM_SHUFFLE(3, 1, 2, 0));  // lo0 lo2 hi0 hi2
  const __m128i o = _mm_shuffle_epi32(odd, _MM_SHUFFLE(3, 1, 2, 0));   // lo1 lo3 hi1 hi3
  *lo = _mm_unpacklo_epi32(e, o);
  *hi = _mm_unpackhi_epi32(e, o);
}

inline __m128 to_uniform_sse2(__m128i r) {
  return _mm_mul_ps(_mm_cvtepi32_ps(_mm_srli_epi32(r, 8)), _mm_set1_ps(kTwoPowMinus24));
}

// Blocks b .. b+3 (whose high counter word is the same) into out[0..16).
void blocks4_sse2(const RandomStream& rng, std::uint64_t b, float* out) {
  __m128i c0 = _mm_add_epi32(_mm_set1_epi32(static_cast<int>(static_cast<std::uint32_t>(b))),
                             _mm_setr_epi32(0, 1, 2, 3));
  __m128i c1 =
      _mm_set1_epi32(static_cast<int>(static_cast<std::uint32_t>(b >> 32) ^ rng.phase_bits));
  __m128i c2 = _mm_set1_epi32(static_cast<int>(rng.step));
  __m128i c3 = _mm_set1_epi32(static_cast<int>(rng.rank));
  const __m128i m0 = _mm_set1_epi32(static_cast<int>(kM0)),
                m1 = _mm_set1_epi32(static_cast<int>(kM1));
  std::uint32_t k0 = rng.k0, k1 = rng.k1;
  for (int round = 0; round < 10; ++round) {
    if (round > 0) {
      k0 += kW0;
      k1 += kW1;
    }
    __m128i lo0, hi0, lo1, hi1;
    mulhilo_sse2(c0, m0, &lo0, &hi0);
    mulhilo_sse2(c2, m1, &lo1, &hi1);
    c0 = _mm_xor_si128(_mm_xor_si128(hi1, c1), _mm_set1_epi32(static_cast<int>(k0)));
    c1 = lo1;
    c2 = _mm_xor_si128(_mm_xor_si128(hi0, c3), _mm_set1_epi32(static_cast<int>(k1)));
    c3 = lo0;
  }
  __m128 f0 = to_uniform_sse2(c0), f1 = to_uniform_sse2(c1), f2 = to_uniform_sse2(c2),
         f3 = to_uniform_sse2(c3);
  _MM_TRANSPOSE4_PS(f0, f1, f2, f3);  // row j: the four outputs of block b + j
  _mm_storeu_ps(out, f0);
  _mm_storeu_ps(out + 4, f1);
  _mm_storeu_ps(out + 8, f2);
  _mm_storeu_ps(out + 12, f3);
}
#endif

#if TW_AVX2
TW_TARGET_AVX2 inline void mulhilo_avx2(__m256i a, __m256i m, __m256i* lo, __m256i* hi) {
  const __m256i even = _mm256_mul_epu32(a, m);
  const __m256i odd = _mm256_mul_epu32(_mm256_srli_epi64(a, 32), m);
  *lo = _mm256_blend_epi32(even, _mm256_slli_epi64(odd, 32), 0xAA);
  *hi = _mm256_blend_epi32(_mm256_srli_epi64(even, 32), odd, 0xAA);
}

TW_TARGET_AVX2 inline __m256 to_uniform_avx2(__m256i r) {
  return _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(r, 8)), _mm256_set1_ps(kTwoPowMinus24));
}

// philox4x32_10 on 8*kWays consecutive blocks, kWays vectors interleaved so that the
// multiply latencies overlap.
template <int kWays>
TW_TARGET_AVX2 inline void rounds_avx2(const RandomStream& rng, std::uint64_t b, __m256i c0[],
                                       __m256i c1[], __m256i c2[], __m256i c3[]) {
  for (int w = 0; w < kWays; ++w) {
    c0[w] = _mm256_add_epi32(
        _mm256_set1_epi32(static_cast<int>(static_cast<std::uint32_t>(b) + 8u * w)),
        _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    c1[w] =
        _mm256_set1_epi32(static_cast<int>(static_cast<std::uint32_t>(b >> 32) ^ rng.phase_bits));
    c2[w] = _mm256_set1_epi32(static_cast<int>(rng.step));
    c3[w] = _mm256_set1_epi32(static_cast<int>(rng.rank));
  }
  const __m256i m0 = _mm256_set1_epi32(static_cast<int>(kM0));
  const __m256i m1 = _mm256_set1_epi32(static_cast<int>(kM1));
  std::uint32_t k0 = rng.k0, k1 = rng.k1;
  for (int round = 0; round < 10; ++round) {
    if (round > 0) {
      k0 += kW0;
      k1 += kW1;
    }
    const __m256i key0 = _mm256_set1_epi32(static_cast<int>(k0));
    const __m256i key1 = _mm256_set1_epi32(static_cast<int>(k1));
    for (int w = 0; w < kWays; ++w) {
      __m256i lo0, hi0, lo1, hi1;
      mulhilo_avx2(c0[w], m0, &lo0, &hi0);
      mulhilo_avx2(c2[w], m1, &lo1, &hi1);
      c0[w] = _mm256_xor_si256(_mm256_xor_si256(hi1, c1[w]), key0);
      c1[w] = lo1;
      c2[w] = _mm256_xor_si256(_mm256_xor_si256(hi0, c3[w]), key1);
      c3[w] = lo0;
    }
  }
}

// The four outputs of 8 blocks (one block per lane) as 32 uniforms in element order.
TW_TARGET_AVX2 inline void store_blocks8(__m256i c0, __m256i c1, __m256i c2, __m256i c3,
                                         float* out) {
  // 4x4 transposes within each 128-bit half: row j holds block j (low) and 4+j (high).
  const __m256 f0 = to_uniform_avx2(c0), f1 = to_uniform_avx2(c1), f2 = to_uniform_avx2(c2),
               f3 = to_uniform_avx2(c3);
  const __m256 t0 = _mm256_unpacklo_ps(f0, f1), t1 = _mm256_unpacklo_ps(f2, f3);
  const __m256 t2 = _mm256_unpackhi_ps(f0, f1), t3 = _mm256_unpackhi_ps(f2, f3);
  const __m256 r0 =
      _mm256_castpd_ps(_mm256_unpacklo_pd(_mm256_castps_pd(t0), _mm256_castps_pd(t1)));
  const __m256 r1 =
      _mm256_castpd_ps(_mm256_unpackhi_pd(_mm256_castps_pd(t0), _mm256_castps_pd(t1)));
  const __m256 r2 =
      _mm256_castpd_ps(_mm256_unpacklo_pd(_mm256_castps_pd(t2), _mm256_castps_pd(t3)));
  const __m256 r3 =
      _mm256_castpd_ps(_mm256_unpackhi_pd(_mm256_castps_pd(t2), _mm256_castps_pd(t3)));
  _mm256_storeu_ps(out, _mm256_permute2f128_ps(r0, r1, 0x20));
  _mm256_storeu_ps(out + 8, _mm256_permute2f128_ps(r2, r3, 0x20));
  _mm256_storeu_ps(out + 16, _mm256_permute2f128_ps(r0, r1, 0x31));
  _mm256_storeu_ps(out + 24, _mm256_permute2f128_ps(r2, r3, 0x31));
}

// Blocks b .. b + 8*kWays - 1 (whose high counter word is the same) into
// out[0 .. 32*kWays).
template <int kWays>
TW_TARGET_AVX2 void blocks_avx2(const RandomStream& rng, std::uint64_t b, float* out) {
  __m256i c0[kWays], c1[kWays], c2[kWays], c3[kWays];
  rounds_avx2<kWays>(rng, b, c0, c1, c2, c3);
  for (int w = 0; w < kWays; ++w) store_blocks8(c0[w], c1[w], c2[w], c3[w], out + 32 * w);
}
#endif

// The high counter word of blocks b .. b+count-1 is the same.
inline bool same_high(std::uint64_t b, std::uint64_t count) {
  return (b >> 32) == ((b + count - 1) >> 32);
}

}  // namespace

void fill_uniforms(const RandomStream& rng, std::uint64_t first, std::size_t count, float* out) {
  std::size_t j = 0;
  std::uint64_t i = first;
  // Up to the first block boundary.
  if ((i & 3) && count) {
    const Philox4 b = rng.block(i >> 2);
    for (; j < count && (i & 3); ++j, ++i) out[j] = uniform_from_bits(b.v[i & 3]);
  }
  const SimdLevel level = simd_level();
#if TW_AVX2
  if (level == SimdLevel::avx2) {
    for (; count - j >= 128 && same_high(i >> 2, 32); j += 128, i += 128)
      blocks_avx2<4>(rng, i >> 2, out + j);
    for (; count - j >= 32 && same_high(i >> 2, 8); j += 32, i += 32)
      blocks_avx2<1>(rng, i >> 2, out + j);
  }
#endif
#if TW_SSE2
  if (level != SimdLevel::scalar)
    for (; count - j >= 16 && same_high(i >> 2, 4); j += 16, i += 16)
      blocks4_sse2(rng, i >> 2, out + j);
#endif
  for (; j < count; i += 4) {
    const Philox4 b = rng.block(i >> 2);
    for (unsigned l = 0; l < 4 && j < count; ++l, ++j) out[j] = uniform_from_bits(b.v[l]);
  }
}

}  // namespace thinwire::detail
