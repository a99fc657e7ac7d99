// The host kernels take AVX2, SSE2 or scalar paths (common/simd.hpp); every path must give
// the same bits: payloads, residuals, decoded values and the sums that set scales.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "common/non_finite_scan.hpp"
#include "common/philox_host.hpp"
#include "common/simd.hpp"
#include "compress/onebit_codec.hpp"
#include "compress/qsgd_codec.hpp"
#include "compress/topk_codec.hpp"
#include "reducer/non_finite.hpp"
#include "transport/average.hpp"
#include "transport/ring_add.hpp"

namespace thinwire::detail {
namespace {

struct SimdCap {
  explicit SimdCap(SimdLevel level) { set_simd_cap(level); }
  ~SimdCap() { set_simd_cap(SimdLevel::avx2); }
};

constexpr SimdLevel kLevels[] = {SimdLevel::scalar, SimdLevel::sse2, SimdLevel::avx2};

std::string level_name(SimdLevel l) {
  return l == SimdLevel::scalar ? "scalar" : l == SimdLevel::sse2 ? "sse2" : "avx2";
}

// Normal data with the values kernels get wrong first: zeros of both signs, ties, huge and
// tiny magnitudes, and (when `specials`) infinities and NaNs.
std::vector<float> tricky_data(std::size_t n, std::uint32_t seed, bool specials) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> x(n);
  for (float& v : x) v = dist(rng);
  for (std::size_t i = 0; i < n; i += 17) x[i] = (i % 2) ? 0.0f : -0.0f;
  for (std::size_t i = 3; i < n; i += 23) x[i] = (i % 3) ? 0.5f : -0.5f;
  for (std::size_t i = 7; i < n; i += 101) x[i] *= 1e30f;
  for (std::size_t i = 11; i < n; i += 103) x[i] *= 1e-40f;  // subnormal
  if (specials && n > 40) {
    x[n / 3] = std::numeric_limits<float>::infinity();
    x[n / 2] = -std::numeric_limits<float>::quiet_NaN();
    x[n - 1] = std::numeric_limits<float>::quiet_NaN();
  }
  return x;
}

struct Encoded {
  std::vector<std::uint8_t> payload;
  std::vector<float> residual, decoded, accumulated;
  EncodeResult result;
};

Encoded run_codec(Compressor& c, const std::vector<float>& x, const EncodeKey& key) {
  Encoded r;
  r.payload.assign(c.encoded_bytes(x.size()), 0x5a);
  r.residual.assign(x.size(), 7.0f);
  r.result = c.encode(x.data(), x.size(), key, r.payload.data(), r.residual.data());
  r.decoded.assign(x.size(), 9.0f);
  c.decode(r.payload.data(), r.payload.size(), x.size(), r.decoded.data(), DecodeMode::assign, {});
  r.accumulated.assign(x.size(), 0.0f);
  for (std::size_t i = 0; i < x.size(); ++i) r.accumulated[i] = 0.25f * static_cast<float>(i % 9);
  c.decode(r.payload.data(), r.payload.size(), x.size(), r.accumulated.data(),
           DecodeMode::accumulate, {});
  return r;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

void expect_all_levels_agree(const std::function<std::unique_ptr<Compressor>()>& make,
                             const std::string& name, bool specials) {
  for (std::size_t n : {std::size_t{1}, std::size_t{5}, std::size_t{8}, std::size_t{31},
                        std::size_t{100}, std::size_t{1027}, std::size_t{70001}}) {
    const std::vector<float> x = tricky_data(n, static_cast<std::uint32_t>(n), specials);
    EncodeKey key;
    key.seed = 11;
    key.step = 3;
    key.layer = 2;
    key.offset = n / 3;  // not a multiple of 4: random blocks straddle the chunk
    Encoded want;
    for (SimdLevel level : kLevels) {
      SimdCap cap(level);
      std::unique_ptr<Compressor> c = make();
      const Encoded got = run_codec(*c, x, key);
      const std::string what = name + " n=" + std::to_string(n) + " " + level_name(level);
      if (level == SimdLevel::scalar) {
        want = got;
        continue;
      }
      EXPECT_EQ(got.payload, want.payload) << what;
      EXPECT_TRUE(same_bits(got.residual, want.residual)) << what;
      EXPECT_TRUE(same_bits(got.decoded, want.decoded)) << what;
      EXPECT_TRUE(same_bits(got.accumulated, want.accumulated)) << what;
      EXPECT_EQ(std::isnan(got.result.sq_norm), std::isnan(want.result.sq_norm)) << what;
      if (!std::isnan(want.result.sq_norm)) {
        EXPECT_EQ(got.result.sq_norm, want.result.sq_norm) << what;
      }
    }
  }
}

TEST(HostKernels, SumOfSquaresFollowsTheEightLaneOrder) {
  for (std::size_t n : {std::size_t{0}, std::size_t{3}, std::size_t{8}, std::size_t{13},
                        std::size_t{4096}, std::size_t{100003}}) {
    const std::vector<float> x = tricky_data(n, 5, false);
    double lane[8] = {};
    for (std::size_t i = 0; i < n; ++i) lane[i % 8] += static_cast<double>(x[i]) * x[i];
    const double want =
        ((lane[0] + lane[4]) + (lane[2] + lane[6])) + ((lane[1] + lane[5]) + (lane[3] + lane[7]));
    for (SimdLevel level : kLevels) {
      SimdCap cap(level);
      EXPECT_EQ(sum_squares_8lane(x.data(), n), want) << "n=" << n << " " << level_name(level);
    }
  }
}

TEST(HostKernels, OnebitSameBitsOnEveryPath) {
  expect_all_levels_agree([] { return std::make_unique<OnebitCodec>(); }, "onebit", false);
  expect_all_levels_agree([] { return std::make_unique<OnebitCodec>(); }, "onebit", true);
}

TEST(HostKernels, TopkSameBitsOnEveryPath) {
  for (double density : {0.001, 0.01, 0.3}) {
    for (Selection sel : {Selection::exact, Selection::sampled}) {
      const std::string name = std::string("topk ") + std::to_string(density) +
                               (sel == Selection::exact ? " exact" : " sampled");
      expect_all_levels_agree([&] { return std::make_unique<TopkCodec>(density, sel); }, name,
                              false);
      expect_all_levels_agree([&] { return std::make_unique<TopkCodec>(density, sel); }, name,
                              true);
    }
  }
}

TEST(HostKernels, QsgdSameBitsOnEveryPath) {
  for (int bits = 2; bits <= 8; ++bits)
    for (std::size_t bucket : {std::size_t{512}, std::size_t{100}, std::size_t{7}})
      for (bool contractive : {false, true}) {
        const std::string name = "qsgd:" + std::to_string(bits) + " bucket " +
                                 std::to_string(bucket) + (contractive ? " contractive" : "");
        expect_all_levels_agree(
            [&] { return std::make_unique<QsgdCodec>(bits, bucket, contractive); }, name, false);
        expect_all_levels_agree(
            [&] { return std::make_unique<QsgdCodec>(bits, bucket, contractive); }, name, true);
      }
}

TEST(HostKernels, FillUniformsMatchesTheStream) {
  const RandomStream rng = RandomStream::make(0x123456789abcdefULL, 7, kPhaseWorker, 42, 3);
  // Starts on and off block boundaries, short and long runs, and a run that crosses the
  // block counter's 32-bit boundary (element 2^34).
  const std::uint64_t kCross = (std::uint64_t{1} << 34) - 50;
  for (std::uint64_t first : {std::uint64_t{0}, std::uint64_t{1}, std::uint64_t{3},
                              std::uint64_t{1000}, std::uint64_t{1} << 33, kCross})
    for (std::size_t count : {std::size_t{0}, std::size_t{1}, std::size_t{5}, std::size_t{31},
                              std::size_t{32}, std::size_t{100}, std::size_t{1027}})
      for (SimdLevel level : kLevels) {
        SimdCap cap(level);
        std::vector<float> u(count + 1, -1.0f);
        fill_uniforms(rng, first, count, u.data());
        for (std::size_t j = 0; j < count; ++j)
          ASSERT_EQ(u[j], rng.uniform(first + j))
              << "first " << first << " j " << j << " " << level_name(level);
        EXPECT_EQ(u[count], -1.0f);
      }
}

// The fused checks find the first NaN or infinity wherever it sits relative to their blocks
// (first, partial last, one block ahead of the arithmetic), in the operands as they were
// before the ring's addition or in what divide_f32_checked wrote, and leave the arithmetic's
// bits as the plain loops give them.
TEST(HostKernels, FusedNonFiniteChecksFindTheFirstAndKeepTheBits) {
  const float bad[] = {std::numeric_limits<float>::quiet_NaN(),
                       std::numeric_limits<float>::infinity(),
                       -std::numeric_limits<float>::infinity()};
  for (std::size_t n : {std::size_t{1}, std::size_t{255}, std::size_t{256}, std::size_t{257},
                        std::size_t{1000}, std::size_t{5000}}) {
    std::vector<std::size_t> spots = {0, n / 2, n - 1};
    for (std::size_t edge :
         {std::size_t{255}, std::size_t{256}, std::size_t{511}, std::size_t{512}, std::size_t{767}})
      if (edge < n) spots.push_back(edge);
    auto values = [&](int salt) {
      std::vector<float> x(n);
      for (std::size_t i = 0; i < n; ++i)
        x[i] = 0.25f * static_cast<float>((i * 7 + salt) % 97) - 3.0f + 1e-39f * salt;
      return x;
    };
    for (std::size_t at : spots)
      for (int in_src = 0; in_src < 2; ++in_src) {
        std::vector<float> d = values(1), s = values(2);
        std::vector<float>& hit = in_src ? s : d;
        hit[at] = bad[at % 3];
        if (at + 7 < n) hit[at + 7] = bad[(at + 1) % 3];  // a later one does not win
        EXPECT_EQ(first_non_finite_f32(hit.data(), n), at) << n;
        for (float divisor : {1.0f, 4.0f, 3.0f}) {
          std::vector<float> want = d, got = d;
          for (std::size_t i = 0; i < n; ++i)
            want[i] = divisor == 1.0f ? d[i] + s[i] : (d[i] + s[i]) / divisor;
          for (int tests = 0; tests < 4; ++tests) {  // none, dst, src, both
            got = d;
            const bool td = tests & 1, ts = tests & 2;
            const RingAddFound f = ring_add_f32(got.data(), s.data(), n, divisor, td, ts);
            EXPECT_EQ(0, std::memcmp(got.data(), want.data(), n * 4)) << n << " " << divisor;
            EXPECT_EQ(f.dst, td && !in_src ? at : kAllFinite) << n << " " << at << " " << tests;
            EXPECT_EQ(f.src, ts && in_src ? at : kAllFinite) << n << " " << at << " " << tests;
          }
        }
        // Outputs: d / 4 and d / 3 written into z.
        for (float divisor : {4.0f, 3.0f}) {
          std::vector<float> z(n), want(n);
          for (std::size_t i = 0; i < n; ++i) want[i] = d[i] / divisor;
          if (!in_src) {
            EXPECT_EQ(divide_f32_checked(z.data(), d.data(), n, divisor), at) << n;
            EXPECT_EQ(0, std::memcmp(z.data(), want.data(), n * 4));
          }
        }
        // A finite input whose quotient overflows is found in the output.
        std::vector<float> big(n, 1.0f), z(n);
        big[at] = 3e38f;
        EXPECT_EQ(first_non_finite_f32(big.data(), n), kAllFinite);
        EXPECT_EQ(divide_f32_checked(z.data(), big.data(), n, 0.5f), at);
      }
  }
  std::vector<float> finite(3000, 1.5f), out(3000);
  EXPECT_EQ(divide_f32_checked(out.data(), finite.data(), finite.size(), 3.0f), kAllFinite);
}

// A power of two divides as a multiplication by its reciprocal, with the same bits for every
// float (subnormal results, NaN and infinity included); other divisors do not qualify.
TEST(HostKernels, PowerOfTwoDivisorsDivideAsReciprocals) {
  for (float p : {2.0f, 4.0f, 8.0f, 1024.0f, 0.5f}) EXPECT_TRUE(divides_as_reciprocal(p)) << p;
  for (float p : {3.0f, 6.0f, 1e-40f, 0.0f, 1e38f * 10.0f})
    EXPECT_FALSE(divides_as_reciprocal(p)) << p;
  std::mt19937 rng(5);
  std::vector<float> x(1 << 16);
  for (float& v : x) {
    const std::uint32_t bits = rng();
    std::memcpy(&v, &bits, 4);
  }
  x[0] = std::numeric_limits<float>::denorm_min();
  x[1] = std::numeric_limits<float>::min();
  for (float p : {2.0f, 4.0f, 64.0f}) {
    std::vector<float> got(x.size());
    divide_f32(got.data(), x.data(), x.size(), p);
    for (std::size_t i = 0; i < x.size(); ++i) {
      const float want = x[i] / p;
      ASSERT_EQ(0, std::memcmp(&got[i], &want, 4)) << x[i] << " / " << p;
    }
  }
}

// The 16-bit scans: all exponent bits set is non-finite (either sign, any mantissa); the
// largest finite values and a set sign bit alone are not.
TEST(HostKernels, FirstNonFiniteOfHalfAndBfloat16) {
  struct Case {
    DType dtype;
    std::uint16_t finite[3], non_finite[3];
  };
  const Case cases[] = {{DType::f16, {0x7bff, 0xfbff, 0x8000}, {0x7c00, 0xfc00, 0x7e01}},
                        {DType::bf16, {0x7f7f, 0xff7f, 0x8000}, {0x7f80, 0xff80, 0x7fc1}}};
  for (const Case& c : cases)
    for (std::size_t n : {std::size_t{5}, std::size_t{64}, std::size_t{200}}) {
      std::vector<std::uint16_t> v(n);
      for (std::size_t i = 0; i < n; ++i) v[i] = c.finite[i % 3];
      EXPECT_EQ(first_non_finite(TensorView::host(v.data(), n, c.dtype)), kAllFinite);
      for (std::size_t k = 0; k < 3; ++k) {
        const std::size_t at = (n - 1) * k / 2;
        auto w = v;
        w[at] = c.non_finite[k];
        EXPECT_EQ(first_non_finite(TensorView::host(w.data(), n, c.dtype)), at)
            << static_cast<int>(c.dtype) << " " << n << " " << k;
      }
    }
}

// The first non-finite element wins, then the lowest rank; "found in the average" (-1) comes
// after every rank at the same element.
TEST(HostKernels, NonFiniteSumKeepsTheFirstByElementThenRank) {
  NonFiniteSum s;
  EXPECT_FALSE(s.found());
  s.keep_first(kAllFinite, 0);
  EXPECT_FALSE(s.found());
  s.keep_first(900, -1);
  s.keep_first(900, 3);
  EXPECT_EQ(s.rank, 3);
  s.keep_first(900, 1);
  s.keep_first(900, 2);
  s.keep_first(900, -1);
  EXPECT_EQ(s.index, 900u);
  EXPECT_EQ(s.rank, 1);
  s.keep_first(12, 5);
  EXPECT_EQ(s.index, 12u);
  EXPECT_EQ(s.rank, 5);
}

// When dense layers' check rides on their sum: one policy (not propagate) over at least
// 64 KiB of dense layers, and no feature that reads gradients first.
TEST(HostKernels, DenseSumCheckNeedsOnePolicyAndEnoughDenseBytes) {
  auto plans = [](std::vector<std::pair<std::size_t, const char*>> layers) {
    std::vector<LayerPlan> out;
    for (const auto& [n, spec] : layers) {
      LayerPlan p;
      p.config = Config::parse(spec);
      p.route = p.config.method == Method::none ? Route::dense : Route::topk;
      p.numel = n;
      out.push_back(p);
    }
    return out;
  };
  EXPECT_EQ(dense_sum_check(plans({{16384, "none"}}), false), NanPolicy::error);
  EXPECT_EQ(dense_sum_check(plans({{16383, "none"}}), false), NanPolicy::propagate);
  EXPECT_EQ(dense_sum_check(plans({{8192, "none,nan=skip"}, {8192, "none,nan=skip"}}), false),
            NanPolicy::skip);
  EXPECT_EQ(dense_sum_check(plans({{16384, "none"}, {16384, "none,nan=skip"}}), false),
            NanPolicy::propagate);
  EXPECT_EQ(dense_sum_check(plans({{16384, "none"}, {10, "none,nan=propagate"}}), false),
            NanPolicy::propagate);
  EXPECT_EQ(dense_sum_check(plans({{16384, "none"}, {1 << 20, "topk:0.01,nan=skip"}}), false),
            NanPolicy::error);
  EXPECT_EQ(dense_sum_check(plans({{100, "none"}, {1 << 20, "topk:0.01"}}), false),
            NanPolicy::propagate);
  EXPECT_EQ(dense_sum_check(plans({{16384, "none"}}), true), NanPolicy::propagate);
}

}  // namespace
}  // namespace thinwire::detail
