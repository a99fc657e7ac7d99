// src/common: Philox4x32-10 and RandomStream, f16/bf16 conversions, Hasher, little-endian
// bytes and checked arithmetic, cat().
#include <gtest/gtest.h>

#include <cfenv>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <limits>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "common/bytes.hpp"
#include "common/half.hpp"
#include "common/hash.hpp"
#include "common/philox.hpp"
#include "common/strcat.hpp"

namespace thinwire::detail {
namespace {

// ---- Philox4x32-10 ----------------------------------------------------------------------------

struct PhiloxKat {
  std::uint32_t ctr[4];
  std::uint32_t key[2];
  std::uint32_t out[4];
};

// Known-answer vectors of Random123 (kat_vectors, philox4x32 10 rounds).
const PhiloxKat kPhiloxKats[] = {
    {{0, 0, 0, 0}, {0, 0}, {0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u}},
    {{0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu},
     {0xffffffffu, 0xffffffffu},
     {0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu}},
    {{0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u},
     {0xa4093822u, 0x299f31d0u},
     {0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u}},
};

TEST(CommonPhilox, KnownAnswerVectors) {
  for (const PhiloxKat& kat : kPhiloxKats) {
    const Philox4 r =
        philox4x32_10(kat.ctr[0], kat.ctr[1], kat.ctr[2], kat.ctr[3], kat.key[0], kat.key[1]);
    for (int lane = 0; lane < 4; ++lane)
      EXPECT_EQ(r.v[lane], kat.out[lane])
          << "lane " << lane << " of ctr " << std::hex << kat.ctr[0];
  }
}

TEST(CommonPhilox, EveryInputWordMatters) {
  const Philox4 base = philox4x32_10(1, 2, 3, 4, 5, 6);
  const std::uint32_t in[6] = {1, 2, 3, 4, 5, 6};
  for (int w = 0; w < 6; ++w) {
    std::uint32_t v[6];
    std::memcpy(v, in, sizeof v);
    v[w] ^= 1u << (w * 5);
    const Philox4 r = philox4x32_10(v[0], v[1], v[2], v[3], v[4], v[5]);
    int same = 0;
    for (int lane = 0; lane < 4; ++lane) same += r.v[lane] == base.v[lane];
    EXPECT_EQ(same, 0) << "flipping a bit of input word " << w;
  }
}

TEST(CommonRandom, UniformFromBitsRange) {
  EXPECT_EQ(uniform_from_bits(0u), 0.0f);
  EXPECT_EQ(uniform_from_bits(0xffu), 0.0f);  // only the top 24 bits count
  EXPECT_EQ(uniform_from_bits(0x100u), std::ldexp(1.0f, -24));
  EXPECT_EQ(uniform_from_bits(0xffffffffu), 1.0f - std::ldexp(1.0f, -24));
  EXPECT_LT(uniform_from_bits(0xffffffffu), 1.0f);
  EXPECT_EQ(uniform_from_bits(0x80000000u), 0.5f);
}

TEST(CommonRandom, StreamLayoutIsTheDocumentedOne) {
  // Element i: lane i%4 of the block with counter (i/4 low, i/4 high ^ phase<<24, step, rank)
  // under key (seed low, seed high ^ layer*golden).
  const std::uint64_t seed = 0x0123456789abcdefull;
  const std::uint32_t layer = 7, phase = 3, rank = 5;
  const std::uint64_t step = 1234;
  const RandomStream s = RandomStream::make(seed, layer, phase, step, rank);
  for (std::uint64_t i : {std::uint64_t{0}, std::uint64_t{1}, std::uint64_t{2}, std::uint64_t{3},
                          std::uint64_t{4}, std::uint64_t{1001}, (std::uint64_t{5} << 34) + 3}) {
    const std::uint64_t b = i / 4;
    const Philox4 blk = philox4x32_10(
        static_cast<std::uint32_t>(b), static_cast<std::uint32_t>(b >> 32) ^ (phase << 24),
        static_cast<std::uint32_t>(step), rank, static_cast<std::uint32_t>(seed),
        static_cast<std::uint32_t>(seed >> 32) ^ (layer * 0x9E3779B9u));
    EXPECT_EQ(s.uniform(i), uniform_from_bits(blk.v[i % 4])) << "element " << i;
  }
}

TEST(CommonRandom, UniformInUnitIntervalAndRoughlyUniform) {
  const RandomStream s = RandomStream::make(42, 3, kPhaseWorker, 9, 1);
  constexpr int kBins = 64;
  constexpr std::uint64_t kDraws = 1 << 20;
  std::vector<double> hist(kBins, 0.0);
  double sum = 0.0, sum_sq = 0.0;
  float lo = 1.0f, hi = 0.0f;
  for (std::uint64_t i = 0; i < kDraws; ++i) {
    const float u = s.uniform(i);
    ASSERT_GE(u, 0.0f) << i;
    ASSERT_LT(u, 1.0f) << i;
    lo = std::min(lo, u);
    hi = std::max(hi, u);
    sum += u;
    sum_sq += static_cast<double>(u) * u;
    hist[static_cast<int>(u * kBins)] += 1.0;
  }
  const double mean = sum / kDraws, var = sum_sq / kDraws - mean * mean;
  EXPECT_NEAR(mean, 0.5, 6.0 * std::sqrt(1.0 / 12.0 / kDraws));
  EXPECT_NEAR(var, 1.0 / 12.0, 5e-4);
  EXPECT_LT(lo, 1e-5f);
  EXPECT_GT(hi, 1.0f - 1e-5f);
  // Pearson chi-square with 63 degrees of freedom: the 99.999% quantile is about 125.
  const double expect = static_cast<double>(kDraws) / kBins;
  double chi2 = 0.0;
  for (double h : hist) chi2 += (h - expect) * (h - expect) / expect;
  EXPECT_LT(chi2, 125.0);
  // Consecutive draws are uncorrelated.
  double cov = 0.0;
  for (std::uint64_t i = 0; i + 1 < 100000; ++i)
    cov += (s.uniform(i) - 0.5) * (s.uniform(i + 1) - 0.5);
  EXPECT_NEAR(cov / 100000, 0.0, 6.0 / 12.0 / std::sqrt(100000.0));
}

TEST(CommonRandom, StreamsDifferInEveryCoordinate) {
  const RandomStream base = RandomStream::make(1, 2, kPhaseWorker, 4, 5);
  const RandomStream others[] = {
      RandomStream::make(2, 2, kPhaseWorker, 4, 5),
      RandomStream::make(std::uint64_t{1} | (std::uint64_t{1} << 40), 2, kPhaseWorker, 4, 5),
      RandomStream::make(1, 3, kPhaseWorker, 4, 5),
      RandomStream::make(1, 2, kPhaseServer, 4, 5),
      RandomStream::make(1, 2, kPhaseSample, 4, 5),
      RandomStream::make(1, 2, kPhaseWorker, 5, 5),
      RandomStream::make(1, 2, kPhaseWorker, 4, 6),
  };
  for (std::size_t o = 0; o < std::size(others); ++o) {
    int same = 0;
    for (std::uint64_t i = 0; i < 64; ++i) same += base.uniform(i) == others[o].uniform(i);
    EXPECT_LT(same, 4) << "stream " << o;
  }
  // And the same coordinates give the same stream.
  const RandomStream again = RandomStream::make(1, 2, kPhaseWorker, 4, 5);
  for (std::uint64_t i = 0; i < 64; ++i) EXPECT_EQ(base.uniform(i), again.uniform(i));
}

// ---- f16 / bf16 -------------------------------------------------------------------------------

bool is_f16_nan(std::uint16_t h) {
  return (h & 0x7c00u) == 0x7c00u && (h & 0x3ffu) != 0;
}
bool is_bf16_nan(std::uint16_t b) {
  return (b & 0x7f80u) == 0x7f80u && (b & 0x7fu) != 0;
}

// f16 bits -> value, by the definition of binary16, in double.
double f16_value(std::uint16_t h) {
  const int sign = h >> 15, e = (h >> 10) & 0x1f, m = h & 0x3ff;
  double v;
  if (e == 0)
    v = std::ldexp(static_cast<double>(m), -24);
  else if (e == 31)
    v = m ? std::numeric_limits<double>::quiet_NaN() : HUGE_VAL;
  else
    v = std::ldexp(1024.0 + m, e - 25);
  return sign ? -v : v;
}

// f32 -> f16 bits by exact arithmetic in double: scale to an integer number of quanta of the
// target binade, round half to even with nearbyint, then encode the rounded value.
std::uint16_t f16_reference(float f) {
  const std::uint16_t sign = std::signbit(f) ? 0x8000u : 0u;
  if (std::isnan(f)) return 0;  // callers check NaN separately
  const double a = std::fabs(static_cast<double>(f));
  if (a == 0.0) return sign;
  int exp = 0;
  std::frexp(a, &exp);  // a in [2^(exp-1), 2^exp)
  const int quantum_exp = std::max(exp - 1, -14) - 10;
  const double q = std::nearbyint(std::ldexp(a, -quantum_exp));  // exact scaling
  const double v = std::ldexp(q, quantum_exp);
  if (v >= 65536.0) return sign | 0x7c00u;
  if (v < std::ldexp(1.0, -14))
    return static_cast<std::uint16_t>(sign | static_cast<std::uint16_t>(q));
  int ve = 0;
  const double frac = std::frexp(v, &ve);  // v = frac * 2^ve, frac in [0.5, 1)
  const int e = ve - 1 + 15;
  const int m = static_cast<int>(frac * 2048.0) - 1024;
  return static_cast<std::uint16_t>(sign | (e << 10) | m);
}

std::uint16_t bf16_reference(float f) {
  const std::uint32_t sign = float_bits(f) & 0x80000000u;
  const double a = std::fabs(static_cast<double>(f));
  if (a == 0.0) return static_cast<std::uint16_t>(sign >> 16);
  int exp = 0;
  std::frexp(a, &exp);
  const int quantum_exp = std::max(exp - 1, -126) - 7;
  const double q = std::nearbyint(std::ldexp(a, -quantum_exp));
  const double v = std::ldexp(q, quantum_exp);
  if (v >= std::ldexp(1.0, 128)) return static_cast<std::uint16_t>((sign >> 16) | 0x7f80u);
  const float vf = static_cast<float>(v);  // exact: v has at most 8 significant bits
  EXPECT_EQ(static_cast<double>(vf), v);
  return static_cast<std::uint16_t>((sign | float_bits(vf)) >> 16);
}

TEST(CommonHalf, F16RoundTripsAllPatterns) {
  for (std::uint32_t u = 0; u < 65536; ++u) {
    const auto h = static_cast<std::uint16_t>(u);
    const float f = f16_to_f32(h);
    const std::uint16_t back = f32_to_f16(f);
    if (is_f16_nan(h)) {
      ASSERT_TRUE(std::isnan(f)) << std::hex << u;
      ASSERT_TRUE(is_f16_nan(back)) << std::hex << u << " -> " << back;
      ASSERT_EQ(back & 0x8000u, h & 0x8000u) << std::hex << u;
    } else {
      ASSERT_EQ(back, h) << std::hex << u;
      ASSERT_EQ(static_cast<double>(f), f16_value(h)) << std::hex << u;
    }
  }
}

TEST(CommonHalf, Bf16RoundTripsAllPatterns) {
  for (std::uint32_t u = 0; u < 65536; ++u) {
    const auto b = static_cast<std::uint16_t>(u);
    const float f = bf16_to_f32(b);
    EXPECT_EQ(float_bits(f), u << 16);
    const std::uint16_t back = f32_to_bf16(f);
    if (is_bf16_nan(b)) {
      ASSERT_TRUE(std::isnan(f)) << std::hex << u;
      ASSERT_TRUE(is_bf16_nan(back)) << std::hex << u << " -> " << back;
      ASSERT_EQ(back & 0x8000u, b & 0x8000u) << std::hex << u;
    } else {
      ASSERT_EQ(back, b) << std::hex << u;
    }
  }
}

#if defined(__FLT16_MAX__)
TEST(CommonHalf, F16ToF32MatchesCompilerFloat16) {
  for (std::uint32_t u = 0; u < 65536; ++u) {
    const auto h = static_cast<std::uint16_t>(u);
    _Float16 c;
    std::memcpy(&c, &h, sizeof c);
    const float want = static_cast<float>(c);
    const float got = f16_to_f32(h);
    if (std::isnan(want))
      ASSERT_TRUE(std::isnan(got)) << std::hex << u;
    else
      ASSERT_EQ(float_bits(got), float_bits(want)) << std::hex << u;
  }
}
#endif

// The f32 inputs worth checking: every combination of the bits that survive into f16 with
// the low 13 bits at and around the rounding boundary, the exact midpoints between adjacent
// f16 values and their f32 neighbours, and random patterns.
std::vector<float> f16_probe_inputs() {
  std::vector<float> in;
  const std::uint32_t lows[] = {0x0000u, 0x0001u, 0x0fffu, 0x1000u, 0x1001u, 0x1fffu};
  for (std::uint32_t hi = 0; hi < (1u << 19); ++hi)
    for (std::uint32_t low : lows) in.push_back(bits_float((hi << 13) | low));
  for (std::uint32_t h = 0; h < 0x7c00u; ++h) {  // positive finite f16 and the next one up
    const double mid =
        (f16_value(static_cast<std::uint16_t>(h)) +
         (h + 1 == 0x7c00u ? 65536.0 : f16_value(static_cast<std::uint16_t>(h + 1)))) /
        2.0;
    const float m = static_cast<float>(mid);
    EXPECT_EQ(static_cast<double>(m), mid);  // midpoints are exact in f32
    for (float v : {m, std::nextafter(m, 0.0f), std::nextafter(m, HUGE_VALF)}) {
      in.push_back(v);
      in.push_back(-v);
    }
  }
  std::mt19937 rng(7);
  for (int i = 0; i < (1 << 20); ++i) in.push_back(bits_float(rng()));
  return in;
}

TEST(CommonHalf, F32ToF16MatchesExactReference) {
  ASSERT_EQ(std::fegetround(), FE_TONEAREST);  // the reference rounds with nearbyint
  const std::vector<float> in = f16_probe_inputs();
  std::size_t checked = 0;
  for (float f : in) {
    const std::uint16_t got = f32_to_f16(f);
    if (std::isnan(f)) {
      ASSERT_TRUE(is_f16_nan(got)) << std::hex << float_bits(f);
      ASSERT_EQ(got & 0x8000u, (float_bits(f) >> 16) & 0x8000u);
      continue;
    }
    ASSERT_EQ(got, f16_reference(f)) << std::hexfloat << f << " bits " << std::hex << float_bits(f);
    ++checked;
  }
  EXPECT_GT(checked, in.size() / 2);
}

#if defined(__FLT16_MAX__)
TEST(CommonHalf, F32ToF16MatchesCompilerFloat16) {
  const std::vector<float> in = f16_probe_inputs();
  for (float f : in) {
    const _Float16 c = static_cast<_Float16>(f);
    std::uint16_t want;
    std::memcpy(&want, &c, sizeof want);
    const std::uint16_t got = f32_to_f16(f);
    if (std::isnan(f))
      ASSERT_TRUE(is_f16_nan(got) && is_f16_nan(want));
    else
      ASSERT_EQ(got, want) << std::hexfloat << f << " bits " << std::hex << float_bits(f);
  }
}
#endif

TEST(CommonHalf, F32ToF16SpecialCases) {
  // Overflow: 65504 is the largest f16; 65520 is the tie with 65536 and goes to infinity.
  EXPECT_EQ(f32_to_f16(65504.0f), 0x7bffu);
  EXPECT_EQ(f32_to_f16(std::nextafter(65520.0f, 0.0f)), 0x7bffu);
  EXPECT_EQ(f32_to_f16(65520.0f), 0x7c00u);
  EXPECT_EQ(f32_to_f16(-65520.0f), 0xfc00u);
  EXPECT_EQ(f32_to_f16(1e10f), 0x7c00u);
  EXPECT_EQ(f32_to_f16(std::numeric_limits<float>::max()), 0x7c00u);
  EXPECT_EQ(f32_to_f16(-std::numeric_limits<float>::max()), 0xfc00u);
  EXPECT_EQ(f32_to_f16(HUGE_VALF), 0x7c00u);
  EXPECT_EQ(f32_to_f16(-HUGE_VALF), 0xfc00u);
  // Zeros keep their sign.
  EXPECT_EQ(f32_to_f16(0.0f), 0x0000u);
  EXPECT_EQ(f32_to_f16(-0.0f), 0x8000u);
  // Subnormals: 2^-24 is the smallest; half of it ties to even (zero); a bit more rounds up.
  EXPECT_EQ(f32_to_f16(std::ldexp(1.0f, -24)), 0x0001u);
  EXPECT_EQ(f32_to_f16(std::ldexp(1.0f, -25)), 0x0000u);
  EXPECT_EQ(f32_to_f16(-std::ldexp(1.0f, -25)), 0x8000u);
  EXPECT_EQ(f32_to_f16(std::nextafter(std::ldexp(1.0f, -25), 1.0f)), 0x0001u);
  EXPECT_EQ(f32_to_f16(3.0f * std::ldexp(1.0f, -25)), 0x0002u);  // 1.5 quanta -> 2 (even)
  EXPECT_EQ(f32_to_f16(5.0f * std::ldexp(1.0f, -25)), 0x0002u);  // 2.5 quanta -> 2 (even)
  EXPECT_EQ(f32_to_f16(std::numeric_limits<float>::denorm_min()), 0x0000u);
  EXPECT_EQ(f32_to_f16(-std::numeric_limits<float>::denorm_min()), 0x8000u);
  EXPECT_EQ(f32_to_f16(std::numeric_limits<float>::min()), 0x0000u);
  // The largest subnormal rounds up into the smallest normal.
  EXPECT_EQ(f32_to_f16(std::nextafter(std::ldexp(1.0f, -14), 0.0f)), 0x0400u);
  EXPECT_EQ(f32_to_f16(std::ldexp(1023.0f, -24)), 0x03ffu);
  // Ties to even between normals: 1 + 2^-11 lies halfway between 1 and 1 + 2^-10.
  EXPECT_EQ(f32_to_f16(1.0f + std::ldexp(1.0f, -11)), 0x3c00u);
  EXPECT_EQ(f32_to_f16(1.0f + 3.0f * std::ldexp(1.0f, -11)), 0x3c02u);
  EXPECT_EQ(f32_to_f16(std::nextafter(1.0f + std::ldexp(1.0f, -11), 2.0f)), 0x3c01u);
  // Rounding that carries into the exponent.
  EXPECT_EQ(f32_to_f16(std::nextafter(2.0f, 0.0f)), 0x4000u);
  // NaN stays NaN, sign kept.
  const std::uint16_t qnan = f32_to_f16(std::numeric_limits<float>::quiet_NaN());
  EXPECT_TRUE(is_f16_nan(qnan));
  EXPECT_TRUE(is_f16_nan(f32_to_f16(bits_float(0x7f800001u))));  // payload only in low bits
  EXPECT_TRUE(is_f16_nan(f32_to_f16(bits_float(0xff800001u))));
  EXPECT_EQ(f32_to_f16(bits_float(0xff800001u)) & 0x8000u, 0x8000u);
  EXPECT_TRUE(std::isnan(f16_to_f32(qnan)));
  EXPECT_EQ(f16_to_f32(0x7c00u), HUGE_VALF);
  EXPECT_EQ(f16_to_f32(0xfc00u), -HUGE_VALF);
  EXPECT_EQ(float_bits(f16_to_f32(0x8000u)), 0x80000000u);
}

TEST(CommonHalf, F32ToBf16MatchesExactReference) {
  ASSERT_EQ(std::fegetround(), FE_TONEAREST);
  std::vector<float> in;
  const std::uint32_t lows[] = {0x0000u, 0x0001u, 0x7fffu, 0x8000u, 0x8001u, 0xffffu};
  for (std::uint32_t hi = 0; hi < 65536; ++hi)
    for (std::uint32_t low : lows) in.push_back(bits_float((hi << 16) | low));
  std::mt19937 rng(11);
  for (int i = 0; i < (1 << 20); ++i) in.push_back(bits_float(rng()));
  for (float f : in) {
    const std::uint16_t got = f32_to_bf16(f);
    if (std::isnan(f)) {
      ASSERT_TRUE(is_bf16_nan(got)) << std::hex << float_bits(f);
      ASSERT_EQ(got & 0x8000u, (float_bits(f) >> 16) & 0x8000u);
      continue;
    }
    ASSERT_EQ(got, bf16_reference(f))
        << std::hexfloat << f << " bits " << std::hex << float_bits(f);
  }
}

TEST(CommonHalf, F32ToBf16SpecialCases) {
  EXPECT_EQ(f32_to_bf16(1.0f), 0x3f80u);
  EXPECT_EQ(f32_to_bf16(bits_float(0x3f808000u)), 0x3f80u);  // tie, even stays
  EXPECT_EQ(f32_to_bf16(bits_float(0x3f818000u)), 0x3f82u);  // tie, odd rounds up
  EXPECT_EQ(f32_to_bf16(bits_float(0x3f808001u)), 0x3f81u);
  EXPECT_EQ(f32_to_bf16(bits_float(0x3f807fffu)), 0x3f80u);
  EXPECT_EQ(f32_to_bf16(std::numeric_limits<float>::max()), 0x7f80u);  // overflow -> inf
  EXPECT_EQ(f32_to_bf16(-std::numeric_limits<float>::max()), 0xff80u);
  EXPECT_EQ(f32_to_bf16(bits_float(0x7f7f7fffu)), 0x7f7fu);
  EXPECT_EQ(f32_to_bf16(HUGE_VALF), 0x7f80u);
  EXPECT_EQ(f32_to_bf16(-0.0f), 0x8000u);
  EXPECT_EQ(f32_to_bf16(std::numeric_limits<float>::denorm_min()), 0x0000u);  // tie -> even 0
  EXPECT_EQ(f32_to_bf16(bits_float(0x00008001u)), 0x0001u);
  EXPECT_TRUE(is_bf16_nan(f32_to_bf16(bits_float(0x7f800001u))));  // payload below bit 16
  EXPECT_TRUE(is_bf16_nan(f32_to_bf16(bits_float(0xffffffffu))));
  EXPECT_TRUE(is_bf16_nan(f32_to_bf16(std::numeric_limits<float>::quiet_NaN())));
}

// ---- Hasher -----------------------------------------------------------------------------------

TEST(CommonHash, Fnv1aKnownAnswers) {
  // FNV-1a 64-bit reference values (Fowler/Noll/Vo test suite).
  EXPECT_EQ(Hasher().value(), 0xcbf29ce484222325ull);
  EXPECT_EQ(Hasher().bytes("a", 1).value(), 0xaf63dc4c8601ec8cull);
  EXPECT_EQ(Hasher().bytes("foobar", 6).value(), 0x85944171f73967e8ull);
  // Chunking the bytes does not matter.
  EXPECT_EQ(Hasher().bytes("foo", 3).bytes("bar", 3).value(), Hasher().bytes("foobar", 6).value());
}

TEST(CommonHash, U64IsLittleEndianBytes) {
  const std::uint64_t v = 0x0807060504030201ull;
  const unsigned char le[8] = {1, 2, 3, 4, 5, 6, 7, 8};
  EXPECT_EQ(Hasher().u64(v).value(), Hasher().bytes(le, 8).value());
  EXPECT_NE(Hasher().u64(1).value(), Hasher().u64(1ull << 56).value());
}

TEST(CommonHash, StringsAreLengthPrefixed) {
  EXPECT_NE(Hasher().str("ab").str("c").value(), Hasher().str("a").str("bc").value());
  EXPECT_NE(Hasher().str("").str("x").value(), Hasher().str("x").str("").value());
  EXPECT_NE(Hasher().str("abc").value(), Hasher().bytes("abc", 3).value());
  EXPECT_EQ(Hasher().str("abc").value(), Hasher().u64(3).bytes("abc", 3).value());
  EXPECT_EQ(Hasher().str("fc1.weight").value(), Hasher().str(std::string("fc1.weight")).value());
  // Many distinct short strings, no collisions.
  std::set<std::uint64_t> seen;
  for (int i = 0; i < 20000; ++i) seen.insert(Hasher().str(std::to_string(i)).value());
  EXPECT_EQ(seen.size(), 20000u);
}

// ---- bytes.hpp, cat() -------------------------------------------------------------------------

TEST(CommonBytes, LittleEndianStoreLoad) {
  std::uint8_t buf[8] = {};
  store_le<std::uint32_t>(buf, 0x04030201u);
  EXPECT_EQ(buf[0], 1);
  EXPECT_EQ(buf[1], 2);
  EXPECT_EQ(buf[2], 3);
  EXPECT_EQ(buf[3], 4);
  EXPECT_EQ(load_le<std::uint32_t>(buf), 0x04030201u);
  store_le<std::uint64_t>(buf, 0x1122334455667788ull);
  EXPECT_EQ(buf[0], 0x88);
  EXPECT_EQ(buf[7], 0x11);
  EXPECT_EQ(load_le<std::uint64_t>(buf), 0x1122334455667788ull);
  store_le<float>(buf + 3, 1.0f);  // unaligned
  EXPECT_EQ(load_le<std::uint32_t>(buf + 3), 0x3f800000u);
  EXPECT_EQ(load_le<float>(buf + 3), 1.0f);
}

TEST(CommonBytes, CheckedArithmetic) {
  const std::size_t max = std::numeric_limits<std::size_t>::max();
  std::size_t out = 0;
  EXPECT_TRUE(mul_ok(3, 5, &out));
  EXPECT_EQ(out, 15u);
  EXPECT_FALSE(mul_ok(max / 2 + 1, 2, &out));
  EXPECT_TRUE(mul_ok(max, 1, &out));
  EXPECT_TRUE(mul_ok(0, max, &out));
  EXPECT_EQ(out, 0u);
  EXPECT_TRUE(add_ok(max - 1, 1, &out));
  EXPECT_EQ(out, max);
  EXPECT_FALSE(add_ok(max, 1, &out));
  for (std::size_t a = 0; a < 50; ++a)
    for (std::size_t b = 1; b < 20; ++b)
      EXPECT_EQ(ceil_div(a, b), (a + b - 1) / b) << a << "/" << b;
  EXPECT_EQ(ceil_div(max, 2), max / 2 + 1);
}

TEST(CommonStrcat, ConcatenatesAnythingStreamable) {
  EXPECT_EQ(cat("a", 1, 'b', 2.5, std::string("c"), 7u), "a1b2.5c7");
}

}  // namespace
}  // namespace thinwire::detail
