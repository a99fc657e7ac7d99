#include "compress/topk_scan.hpp"

#include <array>
#include <cstring>
#include <vector>

namespace thinwire::detail::topk {

namespace {

// The keys compare as signed 32-bit integers (they are < 2^31): key >= lo is
// key > lo - 1, which for lo == 0 is key > -1, true for every key.
inline std::int32_t lo_minus_one(std::uint32_t lo) {
  return static_cast<std::int32_t>(lo - 1u);
}

inline bool room(const HitList* h) {
  return h->size + 8 <= h->capacity;
}

// Appends base + l and v[l] for each set bit l of `bits`, in order, without branching on the
// bits: every lane is written, only the set ones advance. Needs 8 free entries.
inline void push_bits(HitList* hits, unsigned bits, std::size_t base, const float* v) {
  std::uint32_t* index = hits->index + hits->size;
  float* value = hits->value + hits->size;
  std::size_t n = 0;
  for (unsigned l = 0; l < 8; ++l) {
    index[n] = static_cast<std::uint32_t>(base + l);
    value[n] = v[l];
    n += (bits >> l) & 1u;
  }
  hits->size += n;
}

// ---- scalar -----------------------------------------------------------------------------

template <bool kFused>
std::size_t scan_scalar(const float* x, float* e, const float* g, std::size_t i, std::size_t n,
                        std::uint32_t lo, HitList* hits, Lanes8* below) {
  for (; i < n; i += 8) {
    if (!room(hits)) return i;
    const std::size_t m = n - i < 8 ? n - i : 8;
    for (std::size_t l = 0; l < m; ++l) {
      float v;
      if (kFused) {
        v = e[i + l] + g[i + l];
        e[i + l] = v;
      } else {
        v = x[i + l];
      }
      if (magnitude_key(v) >= lo) {
        hits->index[hits->size] = static_cast<std::uint32_t>(i + l);
        hits->value[hits->size++] = v;
      } else if (below) {
        below->l[l] += static_cast<double>(v) * v;
      }
    }
  }
  return n;
}

// ---- SSE2 -------------------------------------------------------------------------------

#if TW_SSE2
template <bool kFused, bool kSums>
std::size_t scan_sse2(const float* x, float* e, const float* g, std::size_t i, std::size_t n,
                      std::uint32_t lo, HitList* hits, Lanes8* below) {
  const __m128i abs_mask = _mm_set1_epi32(0x7fffffff);
  const __m128i lo1 = _mm_set1_epi32(lo_minus_one(lo));
  __m128d s0 = _mm_setzero_pd(), s1 = s0, s2 = s0, s3 = s0;
  if (kSums) {
    s0 = _mm_loadu_pd(below->l + 0);
    s1 = _mm_loadu_pd(below->l + 2);
    s2 = _mm_loadu_pd(below->l + 4);
    s3 = _mm_loadu_pd(below->l + 6);
  }
  for (; i + 8 <= n; i += 8) {
    if (!room(hits)) break;
    __m128 v0, v1;
    if (kFused) {
      v0 = _mm_add_ps(_mm_loadu_ps(e + i), _mm_loadu_ps(g + i));
      v1 = _mm_add_ps(_mm_loadu_ps(e + i + 4), _mm_loadu_ps(g + i + 4));
      _mm_storeu_ps(e + i, v0);
      _mm_storeu_ps(e + i + 4, v1);
    } else {
      v0 = _mm_loadu_ps(x + i);
      v1 = _mm_loadu_ps(x + i + 4);
    }
    const __m128i m0 = _mm_cmpgt_epi32(_mm_and_si128(_mm_castps_si128(v0), abs_mask), lo1);
    const __m128i m1 = _mm_cmpgt_epi32(_mm_and_si128(_mm_castps_si128(v1), abs_mask), lo1);
    if (kSums) {
      const __m128 w0 = _mm_andnot_ps(_mm_castsi128_ps(m0), v0);
      const __m128 w1 = _mm_andnot_ps(_mm_castsi128_ps(m1), v1);
      const __m128d d0 = _mm_cvtps_pd(w0), d1 = _mm_cvtps_pd(_mm_movehl_ps(w0, w0));
      const __m128d d2 = _mm_cvtps_pd(w1), d3 = _mm_cvtps_pd(_mm_movehl_ps(w1, w1));
      s0 = _mm_add_pd(s0, _mm_mul_pd(d0, d0));
      s1 = _mm_add_pd(s1, _mm_mul_pd(d1, d1));
      s2 = _mm_add_pd(s2, _mm_mul_pd(d2, d2));
      s3 = _mm_add_pd(s3, _mm_mul_pd(d3, d3));
    }
    const unsigned bits = static_cast<unsigned>(_mm_movemask_ps(_mm_castsi128_ps(m0)) |
                                                (_mm_movemask_ps(_mm_castsi128_ps(m1)) << 4));
    if (bits) push_bits(hits, bits, i, kFused ? e + i : x + i);
  }
  if (kSums) {
    _mm_storeu_pd(below->l + 0, s0);
    _mm_storeu_pd(below->l + 2, s1);
    _mm_storeu_pd(below->l + 4, s2);
    _mm_storeu_pd(below->l + 6, s3);
  }
  return i;
}
#endif

// ---- AVX2 -------------------------------------------------------------------------------

#if TW_AVX2
// For each 8-bit mask, the lanes of its set bits in order (one byte each), for left-packing.
constexpr std::array<std::uint64_t, 256> make_pack_table() {
  std::array<std::uint64_t, 256> t{};
  for (unsigned m = 0; m < 256; ++m) {
    unsigned n = 0;
    for (unsigned l = 0; l < 8; ++l)
      if ((m >> l) & 1u) t[m] |= static_cast<std::uint64_t>(l) << (8 * n++);
  }
  return t;
}
constexpr std::array<std::uint64_t, 256> kPack = make_pack_table();

// The running state of an AVX2 pass.
struct Avx2Scan {
  __m256i abs_mask, lo1;
  __m256d s_lo, s_hi;
  std::uint32_t* index;
  std::uint32_t* value;
  std::size_t size;
};

template <bool kFused, bool kSums, bool kDense>
TW_TARGET_AVX2 __attribute__((always_inline)) inline void block_avx2(Avx2Scan& st, const float* x,
                                                                     float* e, const float* g,
                                                                     std::size_t i, __m256i idx) {
  __m256 v;
  if (kFused) {
    v = _mm256_add_ps(_mm256_loadu_ps(e + i), _mm256_loadu_ps(g + i));
    _mm256_storeu_ps(e + i, v);
  } else {
    v = _mm256_loadu_ps(x + i);
  }
  const __m256i m =
      _mm256_cmpgt_epi32(_mm256_and_si256(_mm256_castps_si256(v), st.abs_mask), st.lo1);
  if (kSums) {
    const __m256 w = _mm256_andnot_ps(_mm256_castsi256_ps(m), v);
    const __m256d d0 = _mm256_cvtps_pd(_mm256_castps256_ps128(w));
    const __m256d d1 = _mm256_cvtps_pd(_mm256_extractf128_ps(w, 1));
    st.s_lo = _mm256_fmadd_pd(d0, d0, st.s_lo);
    st.s_hi = _mm256_fmadd_pd(d1, d1, st.s_hi);
  }
  const unsigned bits = static_cast<unsigned>(_mm256_movemask_ps(_mm256_castsi256_ps(m)));
  if (kDense || bits) {
    // Left-pack the hit lanes' indices and values.
    const __m256i perm =
        _mm256_cvtepu8_epi32(_mm_cvtsi64_si128(static_cast<long long>(kPack[bits])));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(st.index + st.size),
                        _mm256_permutevar8x32_epi32(idx, perm));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(st.value + st.size),
                        _mm256_permutevar8x32_epi32(_mm256_castps_si256(v), perm));
    st.size += static_cast<std::size_t>(__builtin_popcount(bits));
  }
}

template <bool kFused, bool kSums, bool kDense>
TW_TARGET_AVX2 std::size_t scan_avx2(const float* x, float* e, const float* g, std::size_t i,
                                     std::size_t n, std::uint32_t lo, HitList* hits,
                                     Lanes8* below) {
  Avx2Scan st;
  st.abs_mask = _mm256_set1_epi32(0x7fffffff);
  st.lo1 = _mm256_set1_epi32(lo_minus_one(lo));
  st.s_lo = kSums ? _mm256_loadu_pd(below->l) : _mm256_setzero_pd();
  st.s_hi = kSums ? _mm256_loadu_pd(below->l + 4) : _mm256_setzero_pd();
  st.index = hits->index;
  st.value = reinterpret_cast<std::uint32_t*>(hits->value);
  st.size = hits->size;
  const __m256i eight = _mm256_set1_epi32(8), sixteen = _mm256_set1_epi32(16);
  __m256i idx = _mm256_add_epi32(_mm256_set1_epi32(static_cast<std::int32_t>(i)),
                                 _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  // Two blocks a step while 16 entries are free, then single blocks while 8 are.
  for (; i + 16 <= n && st.size + 16 <= hits->capacity;
       i += 16, idx = _mm256_add_epi32(idx, sixteen)) {
    block_avx2<kFused, kSums, kDense>(st, x, e, g, i, idx);
    block_avx2<kFused, kSums, kDense>(st, x, e, g, i + 8, _mm256_add_epi32(idx, eight));
  }
  for (; i + 8 <= n && st.size + 8 <= hits->capacity; i += 8, idx = _mm256_add_epi32(idx, eight))
    block_avx2<kFused, kSums, kDense>(st, x, e, g, i, idx);
  hits->size = st.size;
  if (kSums) {
    _mm256_storeu_pd(below->l, st.s_lo);
    _mm256_storeu_pd(below->l + 4, st.s_hi);
  }
  return i;
}
#endif

template <bool kFused>
std::size_t scan_any(const float* x, float* e, const float* g, std::size_t begin, std::size_t n,
                     std::uint32_t lo, bool dense, HitList* hits, Lanes8* below) {
  std::size_t i = begin;
  const SimdLevel level = simd_level();
#if TW_AVX2
  if (level == SimdLevel::avx2) {
    if (dense)
      i = below ? scan_avx2<kFused, true, true>(x, e, g, i, n, lo, hits, below)
                : scan_avx2<kFused, false, true>(x, e, g, i, n, lo, hits, below);
    else
      i = below ? scan_avx2<kFused, true, false>(x, e, g, i, n, lo, hits, below)
                : scan_avx2<kFused, false, false>(x, e, g, i, n, lo, hits, below);
  }
#endif
#if TW_SSE2
  if (level == SimdLevel::sse2)
    i = below ? scan_sse2<kFused, true>(x, e, g, i, n, lo, hits, below)
              : scan_sse2<kFused, false>(x, e, g, i, n, lo, hits, below);
#endif
  // The vector loops stop before a partial block or a full list; the scalar loop finishes
  // (or stops at the same full list).
  return scan_scalar<kFused>(x, e, g, i, n, lo, hits, below);
}

}  // namespace

std::size_t scan(const float* x, std::size_t begin, std::size_t n, std::uint32_t lo, bool dense,
                 HitList* hits, Lanes8* below) {
  return scan_any<false>(x, nullptr, nullptr, begin, n, lo, dense, hits, below);
}

std::size_t scan_ef(float* e, const float* g, std::size_t begin, std::size_t n, std::uint32_t lo,
                    bool dense, HitList* hits, Lanes8* below) {
  return scan_any<true>(nullptr, e, g, begin, n, lo, dense, hits, below);
}

void add_into(float* e, const float* g, std::size_t begin, std::size_t n) {
  for (std::size_t i = begin; i < n; ++i) e[i] += g[i];
}

void histogram_high(const float* x, std::size_t n, int shift, std::uint32_t* hist) {
  // Four interleaved tables, so that runs of equal keys do not serialise on one counter.
  const std::size_t bins = std::size_t{1} << (31 - shift);
  std::vector<std::uint32_t> h(4 * bins, 0);
  std::uint32_t *h0 = h.data(), *h1 = h0 + bins, *h2 = h1 + bins, *h3 = h2 + bins;
  std::size_t i = 0;
  for (; i + 4 <= n; i += 4) {
    ++h0[magnitude_key(x[i]) >> shift];
    ++h1[magnitude_key(x[i + 1]) >> shift];
    ++h2[magnitude_key(x[i + 2]) >> shift];
    ++h3[magnitude_key(x[i + 3]) >> shift];
  }
  for (; i < n; ++i) ++h0[magnitude_key(x[i]) >> shift];
  for (std::size_t d = 0; d < bins; ++d) hist[d] = h0[d] + h1[d] + h2[d] + h3[d];
}

}  // namespace thinwire::detail::topk
