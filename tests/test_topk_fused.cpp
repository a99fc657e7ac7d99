// Top-k with error feedback fused into the selection pass (TopkCodec::encode_ef, what
// SparseAllgather runs for ef=ef) against the generic path: x = e + g, then encode with the
// residual in x. Payloads and residuals must be identical, on the fast path and the
// fallback, for exact and sampled selection; the selection's extra outputs (values, the
// squared norm of the rest) must be right.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "compress/topk_codec.hpp"
#include "compress/topk_select.hpp"

namespace thinwire::detail {
namespace {

std::vector<float> normal(std::size_t n, std::uint32_t seed, float scale) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> x(n);
  for (float& v : x) v = dist(rng);
  return x;
}

enum class Data { normal, ties, adversarial };

// Gradients that keep the fast path, defeat it with ties, or defeat its sample (small values
// exactly where it looks).
std::vector<float> gradient(Data d, std::size_t n, std::uint32_t seed) {
  std::vector<float> g = normal(n, seed, 1.0f);
  if (d == Data::ties)
    for (std::size_t i = 0; i < n; ++i) g[i] = (i % 3) ? 1.0f : -1.0f;
  if (d == Data::adversarial) {
    const std::size_t m = 8192;
    for (std::size_t i = 0; i < n; ++i) g[i] = 100.0f + 0.001f * static_cast<float>(i % 97);
    for (std::size_t j = 0; j < m && n > m; ++j) g[TopkSelector::sample_position(j, n, m)] = 0.5f;
  }
  return g;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

TEST(TopkFused, EncodeEfMatchesTheGenericPathStepAfterStep) {
  for (Data d : {Data::normal, Data::ties, Data::adversarial}) {
    for (std::size_t n : {std::size_t{1000}, std::size_t{40009}, std::size_t{1} << 18}) {
      for (double density : {0.001, 0.01, 0.2}) {
        for (Selection sel : {Selection::exact, Selection::sampled}) {
          const std::string what = "data " + std::to_string(static_cast<int>(d)) +
                                   " n=" + std::to_string(n) + " density " +
                                   std::to_string(density) +
                                   (sel == Selection::exact ? " exact" : " sampled");
          TopkCodec generic(density, sel), fused(density, sel);
          // Ties start from a zero memory, so that x itself is tied.
          std::vector<float> e_generic =
              d == Data::ties ? std::vector<float>(n, 0.0f) : normal(n, 5, 0.1f);
          std::vector<float> e_fused = e_generic;
          std::vector<std::uint8_t> want(generic.encoded_bytes(n)), got(want.size());
          for (int step = 0; step < 3; ++step) {
            const std::vector<float> g = gradient(d, n, static_cast<std::uint32_t>(step));
            EncodeKey key;
            key.seed = 9;
            key.step = static_cast<std::uint64_t>(step);
            for (std::size_t i = 0; i < n; ++i) e_generic[i] += g[i];
            const EncodeResult rw =
                generic.encode(e_generic.data(), n, key, want.data(), e_generic.data());
            const EncodeResult rg = fused.encode_ef(e_fused.data(), g.data(), n, key, got.data());
            ASSERT_EQ(got, want) << what << " step " << step;
            ASSERT_TRUE(same_bits(e_fused, e_generic)) << what << " step " << step;
            EXPECT_NEAR(rg.sq_norm, rw.sq_norm, 1e-12 * rw.sq_norm) << what << " step " << step;
            EXPECT_NEAR(rg.sq_error, rw.sq_error, 1e-9 * rw.sq_error) << what << " step " << step;
          }
          if (d != Data::normal && sel == Selection::exact && n >= (std::size_t{1} << 18))
            EXPECT_GT(fused.selector().fallbacks(), 0u) << what << ": the fallback went untested";
        }
      }
    }
  }
}

TEST(TopkFused, SelectionReportsValuesAndTheRestOfTheNorm) {
  const std::size_t n = 100003;
  std::vector<float> x = normal(n, 3, 1.0f);
  x[17] = 1e15f;  // a huge entry that is selected: the rest must not cancel against it
  for (std::size_t k : {std::size_t{1}, std::size_t{1000}, std::size_t{50000}}) {
    TopkSelector sel;
    std::vector<std::uint32_t> idx(k);
    std::vector<float> values(k);
    for (int variant = 0; variant < 3; ++variant) {
      double rest = -1.0;
      const TopkOutput out{idx.data(), values.data(), &rest};
      if (variant == 0) sel.select_exact(x.data(), n, k, out);
      if (variant == 1) sel.select_radix(x.data(), n, k, out);
      if (variant == 2)
        sel.select_sampled(x.data(), n, k, RandomStream::make(1, 2, kPhaseSample, 3, 4), out);
      long double want = 0;
      std::size_t j = 0;
      for (std::size_t i = 0; i < n; ++i) {
        if (j < k && idx[j] == i) {
          EXPECT_EQ(values[j], x[i]) << "variant " << variant << " k=" << k;
          ++j;
          continue;
        }
        want += static_cast<long double>(x[i]) * x[i];
      }
      EXPECT_EQ(j, k);
      EXPECT_NEAR(rest, static_cast<double>(want), 1e-12 * static_cast<double>(want))
          << "variant " << variant << " k=" << k;
    }
  }
}

}  // namespace
}  // namespace thinwire::detail
