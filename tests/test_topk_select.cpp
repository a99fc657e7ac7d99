// TopkSelector: select_exact, select_radix and select_sampled against a sort-based reference.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "common/philox.hpp"
#include "compress/topk_select.hpp"

namespace thinwire::detail {
namespace {

// |a| > |b| in the order of DESIGN.md: by magnitude, NaN above infinity (NaNs among
// themselves by their bits without the sign), +0 and -0 equal.
bool magnitude_greater(float a, float b) {
  const bool na = std::isnan(a), nb = std::isnan(b);
  if (na && nb) {
    std::uint32_t ua, ub;
    std::memcpy(&ua, &a, 4);
    std::memcpy(&ub, &b, 4);
    return (ua & 0x7fffffffu) > (ub & 0x7fffffffu);
  }
  if (na || nb) return na;
  return std::fabs(a) > std::fabs(b);
}

// All indices by descending magnitude, ties to the lower index: the first k of it (sorted
// ascending) are the top k.
std::vector<std::uint32_t> magnitude_order(const std::vector<float>& x) {
  std::vector<std::uint32_t> order(x.size());
  std::iota(order.begin(), order.end(), 0u);
  std::stable_sort(order.begin(), order.end(),
                   [&](std::uint32_t a, std::uint32_t b) { return magnitude_greater(x[a], x[b]); });
  return order;
}

std::vector<std::uint32_t> reference_topk(const std::vector<std::uint32_t>& order, std::size_t k) {
  std::vector<std::uint32_t> top(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(k));
  std::sort(top.begin(), top.end());
  return top;
}

constexpr std::uint32_t kSentinel = 0xdeadbeefu;

enum class Algo { exact, radix, sampled };
const char* name(Algo a) {
  return a == Algo::exact ? "exact" : a == Algo::radix ? "radix" : "sampled";
}

// Runs one selection into a buffer with a guard tail, and checks the tail is untouched.
std::vector<std::uint32_t> run_select(TopkSelector& sel, Algo algo, const std::vector<float>& x,
                                      std::size_t k, const RandomStream& rng) {
  std::vector<std::uint32_t> buf(k + 16, kSentinel);
  switch (algo) {
    case Algo::exact:
      sel.select_exact(x.data(), x.size(), k, buf.data());
      break;
    case Algo::radix:
      sel.select_radix(x.data(), x.size(), k, buf.data());
      break;
    case Algo::sampled:
      sel.select_sampled(x.data(), x.size(), k, rng, buf.data());
      break;
  }
  for (std::size_t i = k; i < buf.size(); ++i)
    EXPECT_EQ(buf[i], kSentinel) << name(algo) << " wrote past k = " << k << " at " << i;
  buf.resize(k);
  return buf;
}

void expect_strictly_ascending_below(const std::vector<std::uint32_t>& idx, std::size_t n,
                                     const std::string& what) {
  for (std::size_t j = 0; j < idx.size(); ++j) {
    ASSERT_LT(idx[j], n) << what << " entry " << j;
    if (j > 0) {
      ASSERT_LT(idx[j - 1], idx[j]) << what << " not strictly ascending at " << j;
    }
  }
}

std::uint32_t key_of(float x) {
  std::uint32_t u;
  std::memcpy(&u, &x, 4);
  return u & 0x7fffffffu;
}

// select_sampled's contract without knowing its sample: either the exact top-k (the sampled
// threshold let >= k entries pass and the result was trimmed), or C = {|x| >= t} for some t
// with |C| < k, padded with the lowest-index entries outside C. In the padded case every
// index below the first unselected one is selected, every selected index above it is in C,
// and no unselected entry is in C: max key over the unselected < min key over the selected
// entries above the first unselected index.
void expect_sampled_contract(const std::vector<float>& x, const std::vector<std::uint32_t>& got,
                             const std::vector<std::uint32_t>& exact, const std::string& what) {
  ASSERT_EQ(got.size(), exact.size()) << what;
  expect_strictly_ascending_below(got, x.size(), what);
  if (got == exact) return;
  std::vector<bool> chosen(x.size(), false);
  for (std::uint32_t i : got) chosen[i] = true;
  std::size_t first_out = 0;
  while (first_out < x.size() && chosen[first_out]) ++first_out;
  ASSERT_LT(first_out, x.size()) << what;
  std::uint32_t max_out = 0, min_high = 0xffffffffu;
  bool any_high = false;
  for (std::size_t i = 0; i < x.size(); ++i) {
    if (!chosen[i]) {
      max_out = std::max(max_out, key_of(x[i]));
    } else if (i > first_out) {
      min_high = std::min(min_high, key_of(x[i]));
      any_high = true;
    }
  }
  if (any_high) {
    EXPECT_LT(max_out, min_high) << what << ": neither the exact top-k nor threshold + padding";
  }
}

// ---- data -----------------------------------------------------------------------------------

enum class Dist {
  normal,
  uniform,
  all_equal,
  many_ties,
  zeros,
  signed_zeros,
  denormals,
  with_inf,
  with_nan,
  heavy_tailed,
  ascending,
  descending,
};
const Dist kAllDists[] = {Dist::normal,   Dist::uniform,      Dist::all_equal, Dist::many_ties,
                          Dist::zeros,    Dist::signed_zeros, Dist::denormals, Dist::with_inf,
                          Dist::with_nan, Dist::heavy_tailed, Dist::ascending, Dist::descending};

const char* name(Dist d) {
  switch (d) {
    case Dist::normal:
      return "normal";
    case Dist::uniform:
      return "uniform";
    case Dist::all_equal:
      return "all_equal";
    case Dist::many_ties:
      return "many_ties";
    case Dist::zeros:
      return "zeros";
    case Dist::signed_zeros:
      return "signed_zeros";
    case Dist::denormals:
      return "denormals";
    case Dist::with_inf:
      return "with_inf";
    case Dist::with_nan:
      return "with_nan";
    case Dist::heavy_tailed:
      return "heavy_tailed";
    case Dist::ascending:
      return "ascending";
    case Dist::descending:
      return "descending";
  }
  return "?";
}

std::vector<float> make_data(Dist d, std::size_t n, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_real_distribution<float> uni(-1.0f, 1.0f);
  std::vector<float> x(n);
  const float inf = std::numeric_limits<float>::infinity();
  for (std::size_t i = 0; i < n; ++i) {
    switch (d) {
      case Dist::normal:
        x[i] = normal(rng);
        break;
      case Dist::uniform:
        x[i] = uni(rng);
        break;
      case Dist::all_equal:
        x[i] = (i % 2) ? -0.75f : 0.75f;
        break;
      case Dist::many_ties:
        x[i] = static_cast<float>(static_cast<int>(rng() % 7) - 3) * 0.5f;
        break;
      case Dist::zeros:
        x[i] = 0.0f;
        break;
      case Dist::signed_zeros:
        x[i] = (rng() & 1) ? -0.0f : 0.0f;
        break;
      case Dist::denormals: {
        const float tiny = std::numeric_limits<float>::denorm_min();
        x[i] = tiny * static_cast<float>(rng() % 1000) * ((rng() & 1) ? -1.0f : 1.0f);
        break;
      }
      case Dist::with_inf: {
        const std::uint32_t r = rng() % 50;
        x[i] = r == 0 ? inf : r == 1 ? -inf : normal(rng);
        break;
      }
      case Dist::with_nan: {
        const std::uint32_t r = rng() % 40;
        x[i] = r == 0   ? std::numeric_limits<float>::quiet_NaN()
               : r == 1 ? -std::numeric_limits<float>::quiet_NaN()
               : r == 2 ? inf
               : r == 3 ? -inf
                        : normal(rng);
        break;
      }
      case Dist::heavy_tailed: {  // Cauchy: a few enormous entries
        const float u = std::uniform_real_distribution<float>(0.0f, 1.0f)(rng);
        x[i] = std::tan(3.14159265f * (u - 0.5f));
        break;
      }
      case Dist::ascending:
        x[i] = static_cast<float>(i) * 1e-3f - 0.5f;
        break;
      case Dist::descending:
        x[i] = static_cast<float>(n - i) * 1e-3f;
        break;
    }
  }
  return x;
}

std::vector<std::size_t> k_values(std::size_t n, std::uint32_t seed) {
  std::vector<std::size_t> ks = {0};
  if (n >= 1) ks.push_back(1);
  if (n >= 2) ks.push_back(n - 1);
  ks.push_back(n);
  if (n >= 100) ks.push_back(n / 100);
  if (n >= 3) ks.push_back(1 + std::mt19937(seed)() % (n - 1));
  std::sort(ks.begin(), ks.end());
  ks.erase(std::unique(ks.begin(), ks.end()), ks.end());
  return ks;
}

// ---- exact and radix ------------------------------------------------------------------------

class TopkSelectSizes : public ::testing::TestWithParam<std::size_t> {};

TEST_P(TopkSelectSizes, ExactAndRadixMatchReference) {
  const std::size_t n = GetParam();
  TopkSelector sel;
  const RandomStream rng = RandomStream::make(5, 1, kPhaseSample, 0, 0);
  for (Dist d : kAllDists) {
    // The big size only on a representative subset, to keep the suite fast.
    if (n >= (1u << 20) && !(d == Dist::normal || d == Dist::many_ties || d == Dist::with_nan ||
                             d == Dist::heavy_tailed || d == Dist::descending))
      continue;
    const std::vector<float> x = make_data(d, n, static_cast<std::uint32_t>(n) * 31u + 7u);
    const std::vector<std::uint32_t> order = magnitude_order(x);
    for (std::size_t k : k_values(n, static_cast<std::uint32_t>(n))) {
      const std::vector<std::uint32_t> want = reference_topk(order, k);
      for (Algo algo : {Algo::exact, Algo::radix}) {
        const std::string what = std::string(name(algo)) + " n=" + std::to_string(n) +
                                 " k=" + std::to_string(k) + " " + name(d);
        const std::vector<std::uint32_t> got = run_select(sel, algo, x, k, rng);
        expect_strictly_ascending_below(got, n, what);
        ASSERT_EQ(got, want) << what;
      }
      const std::string what =
          "sampled n=" + std::to_string(n) + " k=" + std::to_string(k) + " " + name(d);
      expect_sampled_contract(x, run_select(sel, Algo::sampled, x, k, rng), want, what);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(TopkSelect, TopkSelectSizes,
                         ::testing::Values(std::size_t{0}, std::size_t{1}, std::size_t{2},
                                           std::size_t{7}, std::size_t{1000}, std::size_t{32767},
                                           std::size_t{32768}, std::size_t{100000},
                                           std::size_t{1} << 20));

TEST(TopkSelect, TiesGoToTheLowerIndex) {
  // Five entries of magnitude 2 (both signs) among ones: k = 3 takes the first three.
  const std::vector<float> x = {1, -2, 1, 2, 1, -2, 2, 1, 2, 1};
  TopkSelector sel;
  for (Algo algo : {Algo::exact, Algo::radix}) {
    std::vector<std::uint32_t> got = run_select(sel, algo, x, 3, RandomStream::make(0, 0, 0, 0, 0));
    EXPECT_EQ(got, (std::vector<std::uint32_t>{1, 3, 5})) << name(algo);
  }
  // -0.0 and +0.0 tie.
  const std::vector<float> z = {-0.0f, 0.0f, -0.0f, 0.0f};
  for (Algo algo : {Algo::exact, Algo::radix}) {
    std::vector<std::uint32_t> got = run_select(sel, algo, z, 2, RandomStream::make(0, 0, 0, 0, 0));
    EXPECT_EQ(got, (std::vector<std::uint32_t>{0, 1})) << name(algo);
  }
}

TEST(TopkSelect, NanRanksAboveInfinity) {
  const float inf = std::numeric_limits<float>::infinity();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const std::vector<float> x = {1.0f, inf, 3.0f, nan, -inf, 2.0f, -nan};
  TopkSelector sel;
  for (Algo algo : {Algo::exact, Algo::radix}) {
    EXPECT_EQ(run_select(sel, algo, x, 2, RandomStream::make(0, 0, 0, 0, 0)),
              (std::vector<std::uint32_t>{3, 6}))
        << name(algo);
    EXPECT_EQ(run_select(sel, algo, x, 4, RandomStream::make(0, 0, 0, 0, 0)),
              (std::vector<std::uint32_t>{1, 3, 4, 6}))
        << name(algo);
  }
}

TEST(TopkSelect, ReusedSelectorGivesSameResults) {
  TopkSelector sel;
  const std::vector<float> big = make_data(Dist::normal, 200000, 1);
  const std::vector<float> small = make_data(Dist::uniform, 5000, 2);
  const RandomStream rng = RandomStream::make(0, 0, 0, 0, 0);
  const auto a1 = run_select(sel, Algo::exact, big, 2000, rng);
  const auto b1 = run_select(sel, Algo::exact, small, 50, rng);
  const auto a2 = run_select(sel, Algo::exact, big, 2000, rng);
  const auto b2 = run_select(sel, Algo::exact, small, 50, rng);
  EXPECT_EQ(a1, a2);
  EXPECT_EQ(b1, b2);
  EXPECT_EQ(b1, reference_topk(magnitude_order(small), 50));
}

// ---- the fast path and its fallback ---------------------------------------------------------

TEST(TopkSelectFastPath, TypicalDataNeedsNoFallback) {
  TopkSelector sel;
  const RandomStream rng = RandomStream::make(0, 0, 0, 0, 0);
  for (Dist d : {Dist::normal, Dist::uniform, Dist::heavy_tailed}) {
    const std::vector<float> x = make_data(d, std::size_t{1} << 18, 99);
    const std::vector<std::uint32_t> order = magnitude_order(x);
    for (std::size_t k : {std::size_t{262}, std::size_t{2621}, std::size_t{26214}}) {
      const std::size_t before = sel.fallbacks();
      EXPECT_EQ(run_select(sel, Algo::exact, x, k, rng), reference_topk(order, k))
          << name(d) << " k=" << k;
      EXPECT_EQ(sel.fallbacks(), before) << name(d) << " k=" << k;
    }
  }
}

TEST(TopkSelectFastPath, MatrixWithColumnScalesNeedsNoFallback) {
  // A row-major gradient whose columns differ in scale, with a row length that divides the
  // cells of the sample (1024 | 2^20 / 8192): a sample at the same offset in every cell sees
  // 8 of the 1024 columns and misjudges the k-th key; the fast path must hold.
  TopkSelector sel;
  const RandomStream rng = RandomStream::make(0, 0, 0, 0, 0);
  const std::size_t rows = 1024, cols = 1024;
  std::mt19937 gen(5);
  std::lognormal_distribution<float> column_scale(0.0f, 1.5f);
  std::normal_distribution<float> noise(0.0f, 1.0f);
  std::vector<float> scale(cols);
  for (float& s : scale) s = column_scale(gen);
  for (std::size_t c = 64; c < cols; c += 128) scale[c] = 1e-3f;  // the fixed-offset columns
  std::vector<float> x(rows * cols);
  for (std::size_t r = 0; r < rows; ++r)
    for (std::size_t c = 0; c < cols; ++c) x[r * cols + c] = scale[c] * noise(gen);
  const std::vector<std::uint32_t> order = magnitude_order(x);
  for (std::size_t k : {std::size_t{1049}, std::size_t{10486}}) {
    const std::size_t before = sel.fallbacks();
    EXPECT_EQ(run_select(sel, Algo::exact, x, k, rng), reference_topk(order, k)) << "k=" << k;
    EXPECT_EQ(sel.fallbacks(), before) << "k=" << k;
  }
}

TEST(TopkSelectFastPath, HeavyTiesFallBackAndStayExact) {
  TopkSelector sel;
  const RandomStream rng = RandomStream::make(0, 0, 0, 0, 0);
  const std::size_t n = std::size_t{1} << 20;
  // (a) All magnitudes equal: every entry is a candidate, far more than the fast path holds.
  // (b) 99% equal, 1% larger and distinct, k = 2%: the k-th key sits inside the tie.
  std::vector<float> all_equal = make_data(Dist::all_equal, n, 0);
  std::vector<float> tie_at_k(n, 1.0f);
  std::mt19937 gen(3);
  for (std::size_t j = 0; j < n / 100; ++j)
    tie_at_k[gen() % n] = 2.0f + static_cast<float>(j) * 1e-3f;
  for (const auto* x : {&all_equal, &tie_at_k}) {
    const std::vector<std::uint32_t> order = magnitude_order(*x);
    for (std::size_t k : {n / 50, n / 10}) {
      const std::size_t before = sel.fallbacks();
      EXPECT_EQ(run_select(sel, Algo::exact, *x, k, rng), reference_topk(order, k)) << "k=" << k;
      EXPECT_EQ(sel.fallbacks(), before + 1) << "k=" << k;
    }
  }
}

TEST(TopkSelectFastPath, AdversarialPlacementStaysExact) {
  // Large values exactly where the sample looks, small ones elsewhere, and the reverse:
  // the sample's bracket misses the k-th key. Whatever path is taken, the result is exact.
  TopkSelector sel;
  const RandomStream rng = RandomStream::make(0, 0, 0, 0, 0);
  for (std::size_t n : {std::size_t{1} << 15, std::size_t{100003}, std::size_t{1} << 20}) {
    const std::size_t m = 8192;
    std::vector<float> on_sample(n), off_sample(n);
    std::mt19937 gen(static_cast<std::uint32_t>(n));
    std::uniform_real_distribution<float> small(0.0f, 1.0f);
    for (std::size_t i = 0; i < n; ++i) {
      on_sample[i] = small(gen);
      off_sample[i] = 100.0f + small(gen);
    }
    for (std::size_t j = 0; j < m; ++j) {
      const std::size_t pos = TopkSelector::sample_position(j, n, m);
      on_sample[pos] = 100.0f + small(gen);
      off_sample[pos] = small(gen);
    }
    for (const auto* x : {&on_sample, &off_sample}) {
      const std::vector<std::uint32_t> order = magnitude_order(*x);
      for (std::size_t k : {n / 100, n / 4, n / 2, n - 10}) {
        const std::size_t before = sel.fallbacks();
        EXPECT_EQ(run_select(sel, Algo::exact, *x, k, rng), reference_topk(order, k))
            << "n=" << n << " k=" << k << (x == &on_sample ? " on" : " off");
        EXPECT_LE(sel.fallbacks(), before + 1);
      }
    }
  }
  EXPECT_GT(sel.fallbacks(), 0u)
      << "the adversarial placements should defeat the sample at least once";
}

// ---- sampled --------------------------------------------------------------------------------

TEST(TopkSelectSampled, ExactWhenEnoughPass) {
  // 3k entries share the largest magnitude, the rest are smaller: whatever the sample, its
  // threshold is at most that magnitude, so >= k entries pass and the result is the exact
  // top-k (the lowest-index k of the tie).
  const std::size_t n = 200000, k = 2000;
  std::vector<float> x = make_data(Dist::uniform, n, 4);
  std::mt19937 gen(5);
  for (std::size_t j = 0; j < 3 * k; ++j) x[gen() % n] = (j % 2) ? -10.0f : 10.0f;
  const std::vector<std::uint32_t> want = reference_topk(magnitude_order(x), k);
  TopkSelector sel;
  for (std::uint64_t step = 0; step < 5; ++step) {
    const RandomStream rng = RandomStream::make(17, 2, kPhaseSample, step, 0);
    EXPECT_EQ(run_select(sel, Algo::sampled, x, k, rng), want) << "step " << step;
  }
}

TEST(TopkSelectSampled, ContractOverManyStreams) {
  TopkSelector sel;
  for (Dist d :
       {Dist::normal, Dist::heavy_tailed, Dist::ascending, Dist::descending, Dist::many_ties}) {
    for (std::size_t n : {std::size_t{1024}, std::size_t{1500}, std::size_t{50000}}) {
      const std::vector<float> x = make_data(d, n, static_cast<std::uint32_t>(n));
      const std::vector<std::uint32_t> order = magnitude_order(x);
      for (std::size_t k : {std::size_t{1}, n / 100, n / 10, n / 2}) {
        const std::vector<std::uint32_t> want = reference_topk(order, k);
        for (std::uint64_t step = 0; step < 8; ++step) {
          const RandomStream rng = RandomStream::make(3, 1, kPhaseSample, step, 2);
          expect_sampled_contract(x, run_select(sel, Algo::sampled, x, k, rng), want,
                                  std::string(name(d)) + " n=" + std::to_string(n) +
                                      " k=" + std::to_string(k) + " step=" + std::to_string(step));
        }
      }
    }
  }
}

TEST(TopkSelectSampled, DeterministicForTheSameStream) {
  const std::size_t n = 300000, k = 3000;
  const std::vector<float> x = make_data(Dist::normal, n, 8);
  TopkSelector a, b;
  const RandomStream rng = RandomStream::make(11, 4, kPhaseSample, 6, 1);
  const auto first = run_select(a, Algo::sampled, x, k, rng);
  (void)run_select(a, Algo::sampled, x, k / 3, RandomStream::make(12, 4, kPhaseSample, 6, 1));
  EXPECT_EQ(run_select(a, Algo::sampled, x, k, rng), first);
  EXPECT_EQ(run_select(b, Algo::sampled, x, k, RandomStream::make(11, 4, kPhaseSample, 6, 1)),
            first);
  // Different streams sample differently; over a few of them the results cannot all agree
  // with each other unless every one of them was exact.
  int exact = 0, differs = 0;
  const std::vector<std::uint32_t> want = reference_topk(magnitude_order(x), k);
  for (std::uint64_t step = 0; step < 6; ++step) {
    const auto got =
        run_select(a, Algo::sampled, x, k, RandomStream::make(11, 4, kPhaseSample, step, 1));
    exact += got == want;
    differs += got != first;
  }
  EXPECT_TRUE(exact == 6 || differs > 0);
}

TEST(TopkSelectSampled, SmallInputsAreExact) {
  // Below 1024 elements there is nothing worth sampling: the exact top-k.
  TopkSelector sel;
  for (std::size_t n : {std::size_t{5}, std::size_t{100}, std::size_t{1023}}) {
    const std::vector<float> x = make_data(Dist::normal, n, 12);
    const std::vector<std::uint32_t> order = magnitude_order(x);
    for (std::size_t k : {std::size_t{1}, n / 3, n}) {
      EXPECT_EQ(run_select(sel, Algo::sampled, x, k, RandomStream::make(1, 1, kPhaseSample, 1, 1)),
                reference_topk(order, k))
          << "n=" << n << " k=" << k;
    }
  }
}

}  // namespace
}  // namespace thinwire::detail
