// OnebitErrorMemory: the factored one-pass 1-bit error feedback that TwoPhase uses for
// ef=ef gives byte-identical payloads and bit-identical error memories to the generic path
// (x = e + g, then OnebitCodec::encode with the residual in x), step after step.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "common/simd.hpp"
#include "compress/onebit_codec.hpp"
#include "compress/onebit_error_memory.hpp"
#include "compress/wire_format.hpp"

namespace thinwire::detail {
namespace {

std::uint32_t bits_of(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

// Caps the host kernels for one scope.
struct SimdCap {
  explicit SimdCap(SimdLevel level) { set_simd_cap(level); }
  ~SimdCap() { set_simd_cap(SimdLevel::avx2); }
};

std::vector<float> gradient(std::size_t n, std::uint32_t seed, float scale) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> g(n);
  for (float& v : g) v = dist(rng);
  // Zeros of both signs, exact cancellations with the memory, and repeated magnitudes.
  for (std::size_t i = 0; i < n; i += 13) g[i] = (i % 2) ? 0.0f : -0.0f;
  for (std::size_t i = 5; i < n; i += 29) g[i] = 0.25f;
  return g;
}

std::vector<std::size_t> split(std::size_t n, std::size_t parts) {
  std::vector<std::size_t> b(parts + 1);
  for (std::size_t j = 0; j <= parts; ++j) b[j] = n * j / parts;
  return b;
}

// The generic path of one step, as prepare_input() and TwoPhase run it: e += g, then each
// chunk encoded with its residual left in e.
struct Generic {
  OnebitCodec codec;
  std::vector<float> e;
  EncodeResult step(const std::vector<float>& g, const std::vector<std::size_t>& bounds,
                    const EncodeKey& key, std::vector<std::uint8_t>& out, std::size_t stride) {
    if (e.size() != g.size()) e.assign(g.size(), 0.0f);
    for (std::size_t i = 0; i < g.size(); ++i) e[i] += g[i];
    EncodeResult total;
    for (std::size_t j = 0; j + 1 < bounds.size(); ++j) {
      EncodeKey k = key;
      k.offset = bounds[j];
      const EncodeResult r = codec.encode(e.data() + bounds[j], bounds[j + 1] - bounds[j], k,
                                          out.data() + j * stride, e.data() + bounds[j]);
      total.sq_norm += r.sq_norm;
      total.sq_error += r.sq_error;
    }
    return total;
  }
};

void expect_same_step(std::size_t n, std::size_t parts, int steps, SimdLevel level) {
  SimdCap cap(level);
  const std::string what = "n=" + std::to_string(n) + " parts=" + std::to_string(parts) +
                           " simd=" + std::to_string(static_cast<int>(level));
  const std::vector<std::size_t> bounds = split(n, parts);
  OnebitCodec codec;
  const std::size_t stride = codec.encoded_bytes(n / parts + 1);
  Generic generic;
  OnebitErrorMemory memory;
  EncodeKey key;
  key.dtype = DType::bf16;
  for (int step = 0; step < steps; ++step) {
    const float scale = step == 2 ? 1e-3f : 1.0f;  // a step where the memory dominates
    const std::vector<float> g = gradient(n, static_cast<std::uint32_t>(100 * n + step), scale);
    std::vector<std::uint8_t> want(stride * parts, 0xab), got(stride * parts, 0xab);
    const EncodeResult rw = generic.step(g, bounds, key, want, stride);
    const EncodeResult rg =
        memory.encode(g.data(), n, bounds.data(), parts, key, got.data(), stride);
    ASSERT_EQ(got, want) << what << " step " << step << ": payloads differ";
    std::vector<float> e(n, 123.0f);
    memory.materialize(e.data());
    for (std::size_t i = 0; i < n; ++i)
      ASSERT_EQ(bits_of(e[i]), bits_of(generic.e[i]))
          << what << " step " << step << " element " << i << ": " << e[i] << " vs " << generic.e[i];
    EXPECT_EQ(rg.sq_norm, rw.sq_norm) << what << " step " << step;
    // The factored path sums the error from an identity, not from the f32 residuals.
    EXPECT_NEAR(rg.sq_error, rw.sq_error, 1e-6 * rw.sq_error + 1e-30) << what << " step " << step;
  }
}

TEST(OnebitErrorMemory, MatchesTheGenericPathStepAfterStep) {
  for (std::size_t n : {std::size_t{1}, std::size_t{7}, std::size_t{8}, std::size_t{9},
                        std::size_t{63}, std::size_t{1001}, std::size_t{40009}})
    for (std::size_t parts : {std::size_t{1}, std::size_t{2}, std::size_t{3}, std::size_t{5}})
      if (parts <= n) expect_same_step(n, parts, 5, SimdLevel::avx2);
}

TEST(OnebitErrorMemory, EveryInstructionSetGivesTheSameBits) {
  for (SimdLevel level : {SimdLevel::scalar, SimdLevel::sse2, SimdLevel::avx2})
    for (std::size_t parts : {std::size_t{1}, std::size_t{4}})
      expect_same_step(4099, parts, 4, level);
}

TEST(OnebitErrorMemory, ChunkLayoutChangeAndAssign) {
  const std::size_t n = 1000;
  Generic generic;
  OnebitErrorMemory memory;
  OnebitCodec codec;
  const std::size_t stride = codec.encoded_bytes(n);
  std::vector<std::uint8_t> want(4 * stride), got(4 * stride);
  // Steps over different chunkings: the factored form is flattened in between.
  const std::size_t layouts[] = {3, 3, 4, 1, 4};
  for (int step = 0; step < 5; ++step) {
    const std::vector<std::size_t> bounds = split(n, layouts[step]);
    const std::vector<float> g = gradient(n, static_cast<std::uint32_t>(7 + step), 1.0f);
    generic.step(g, bounds, EncodeKey{}, want, stride);
    memory.encode(g.data(), n, bounds.data(), layouts[step], EncodeKey{}, got.data(), stride);
    ASSERT_EQ(got, want) << "step " << step;
  }
  std::vector<float> e(n);
  memory.materialize(e.data());
  for (std::size_t i = 0; i < n; ++i) ASSERT_EQ(bits_of(e[i]), bits_of(generic.e[i])) << i;

  // assign() takes an eager memory over; another size starts from zero.
  OnebitErrorMemory other;
  other.assign(generic.e.data(), n);
  std::vector<float> back(n);
  other.materialize(back.data());
  EXPECT_EQ(0, std::memcmp(back.data(), generic.e.data(), n * sizeof(float)));
  const std::vector<std::size_t> b1 = split(10, 1);
  const std::vector<float> g(10, 1.5f);
  other.encode(g.data(), 10, b1.data(), 1, EncodeKey{}, got.data(), stride);
  EXPECT_EQ(other.size(), 10u);
  std::vector<float> e10(10);
  other.materialize(e10.data());
  for (float v : e10) EXPECT_EQ(v, 0.0f);  // x = 0 + 1.5 is sent exactly
  other.clear();
  EXPECT_TRUE(other.empty());
}

TEST(OnebitErrorMemory, NonFiniteInputsMatchTheGenericPath) {
  const std::size_t n = 37;
  const std::vector<std::size_t> bounds = split(n, 2);
  OnebitCodec codec;
  const std::size_t stride = codec.encoded_bytes(n);
  for (float bad : {std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity(),
                    std::numeric_limits<float>::quiet_NaN()}) {
    Generic generic;
    OnebitErrorMemory memory;
    std::vector<std::uint8_t> want(2 * stride), got(2 * stride);
    for (int step = 0; step < 3; ++step) {
      std::vector<float> g = gradient(n, static_cast<std::uint32_t>(step), 1.0f);
      if (step == 1) g[3] = bad;
      const EncodeResult rw = generic.step(g, bounds, EncodeKey{}, want, stride);
      const EncodeResult rg =
          memory.encode(g.data(), n, bounds.data(), 2, EncodeKey{}, got.data(), stride);
      ASSERT_EQ(got, want) << bad << " step " << step;
      std::vector<float> e(n);
      memory.materialize(e.data());
      for (std::size_t i = 0; i < n; ++i)
        ASSERT_EQ(bits_of(e[i]), bits_of(generic.e[i])) << bad << " step " << step << " at " << i;
      EXPECT_EQ(std::isnan(rg.sq_error), std::isnan(rw.sq_error)) << bad << " step " << step;
    }
  }
}

}  // namespace
}  // namespace thinwire::detail
