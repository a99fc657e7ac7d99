// L-GreCo (adaptive:<family>): the knapsack solver against brute force, the candidate sets,
// the error measurements against the codecs and an exact SVD, and (Mpi* suite) decisions
// that are identical on every rank and send fewer bytes than the uniform default.
#include <gtest/gtest.h>
#include <mpi.h>

#include <Eigen/Dense>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "adaptive/candidates.hpp"
#include "adaptive/compression_error.hpp"
#include "adaptive/knapsack.hpp"
#include "compress/topk_codec.hpp"
#include "test_support.hpp"

namespace thinwire::test {
namespace {

using namespace thinwire::detail;

// Every combination, the least bytes with total units <= capacity (or none).
std::pair<bool, std::uint64_t> brute_force(const std::vector<std::vector<std::uint64_t>>& bytes,
                                           const std::vector<std::vector<std::uint32_t>>& units,
                                           std::uint32_t capacity) {
  bool found = false;
  std::uint64_t best = 0;
  std::vector<std::size_t> c(bytes.size(), 0);
  for (;;) {
    std::uint64_t b = 0, u = 0;
    bool ok = true;
    for (std::size_t l = 0; l < bytes.size(); ++l) {
      if (units[l][c[l]] == kInfeasibleUnits) ok = false;
      b += bytes[l][c[l]];
      u += units[l][c[l]];
    }
    if (ok && u <= capacity && (!found || b < best)) found = true, best = b;
    std::size_t l = 0;
    while (l < c.size() && ++c[l] == bytes[l].size()) c[l++] = 0;
    if (l == c.size()) break;
  }
  return {found, best};
}

TEST(Knapsack, DpEqualsBruteForceOnSmallRandomInstances) {
  std::mt19937_64 rng(7);
  for (int trial = 0; trial < 400; ++trial) {
    const std::size_t layers = 1 + rng() % 5, cands = 1 + rng() % 4;
    const auto capacity = static_cast<std::uint32_t>(rng() % 40);
    std::vector<std::vector<std::uint64_t>> bytes(layers);
    std::vector<std::vector<std::uint32_t>> units(layers);
    for (std::size_t l = 0; l < layers; ++l)
      for (std::size_t c = 0; c < cands; ++c) {
        bytes[l].push_back(rng() % 1000);
        units[l].push_back(rng() % 10 == 0 ? kInfeasibleUnits
                                           : static_cast<std::uint32_t>(rng() % 20));
      }
    const KnapsackChoice dp = min_bytes_within(bytes, units, capacity);
    const auto [found, best] = brute_force(bytes, units, capacity);
    ASSERT_EQ(dp.feasible, found) << "trial " << trial;
    if (!found) continue;
    ASSERT_EQ(dp.bytes, best) << "trial " << trial;
    // The reported choice is a real solution with those bytes.
    std::uint64_t b = 0, u = 0;
    for (std::size_t l = 0; l < layers; ++l) {
      ASSERT_LT(dp.choice[l], cands);
      ASSERT_NE(units[l][dp.choice[l]], kInfeasibleUnits);
      b += bytes[l][dp.choice[l]];
      u += units[l][dp.choice[l]];
    }
    EXPECT_EQ(b, dp.bytes);
    EXPECT_LE(u, capacity);
  }
}

TEST(Knapsack, DiscretisationRoundsUp) {
  const auto u = discretise_errors({{0.0, 0.5, 1.0, 1.01, 2.5, NAN}}, 1.0, 4);
  EXPECT_EQ(u[0], (std::vector<std::uint32_t>{0, 2, 4, kInfeasibleUnits, kInfeasibleUnits,
                                              kInfeasibleUnits}));
  const auto zero = discretise_errors({{0.0, 1e-30}}, 0.0, 4);
  EXPECT_EQ(zero[0], (std::vector<std::uint32_t>{0, kInfeasibleUnits}));
}

// On real-valued errors: the total error of the choice never exceeds the uniform default's,
// its bytes never exceed the uniform's, and it is as small as brute force over the same
// candidates allows up to the discretisation (checked: brute force under a budget shrunk by
// the worst-case rounding of one unit per layer never beats it).
TEST(Knapsack, ChoiceMeetsTheBudgetAndBeatsUniform) {
  std::mt19937_64 rng(11);
  std::uniform_real_distribution<double> unif(0.0, 1.0);
  for (int trial = 0; trial < 300; ++trial) {
    const std::size_t layers = 1 + rng() % 5, cands = 2 + rng() % 4, uniform = rng() % cands;
    std::vector<std::vector<std::uint64_t>> bytes(layers);
    std::vector<std::vector<double>> err(layers);
    for (std::size_t l = 0; l < layers; ++l) {
      const double scale = std::pow(10.0, 4.0 * unif(rng) - 2.0);  // heterogeneous layers
      for (std::size_t c = 0; c < cands; ++c) {
        bytes[l].push_back(100 + rng() % 10000);
        err[l].push_back(unif(rng) < 0.1 ? 0.0 : scale * unif(rng));
      }
    }
    double budget = 0.0;
    std::uint64_t uniform_bytes = 0;
    for (std::size_t l = 0; l < layers; ++l) {
      budget += err[l][uniform];
      uniform_bytes += bytes[l][uniform];
    }
    const KnapsackChoice k = choose_layerwise(bytes, err, uniform);
    ASSERT_TRUE(k.feasible);
    double total = 0.0;
    std::uint64_t b = 0;
    for (std::size_t l = 0; l < layers; ++l) {
      total += err[l][k.choice[l]];
      b += bytes[l][k.choice[l]];
    }
    EXPECT_LE(total, budget) << "trial " << trial;
    EXPECT_EQ(b, k.bytes);
    EXPECT_LE(k.bytes, uniform_bytes);
    // No combination within budget * (1 - layers / units) is cheaper.
    const double tight = budget * (1.0 - static_cast<double>(layers) / kKnapsackMinUnits);
    std::vector<std::size_t> c(layers, 0);
    for (;;) {
      double e = 0.0;
      std::uint64_t bb = 0;
      for (std::size_t l = 0; l < layers; ++l) e += err[l][c[l]], bb += bytes[l][c[l]];
      if (e <= tight) {
        EXPECT_GE(bb, k.bytes) << "trial " << trial;
      }
      std::size_t l = 0;
      while (l < layers && ++c[l] == cands) c[l++] = 0;
      if (l == layers) break;
    }
  }
}

TEST(Adaptive, CandidateSetsAsDocumented) {
  const CandidateSet topk = adaptive_candidates(Config::parse("adaptive:topk,select=sampled"));
  std::vector<double> d;
  for (const Config& c : topk.configs) {
    d.push_back(c.density);
    EXPECT_EQ(c.method, Method::topk);
    EXPECT_EQ(c.select, Selection::sampled);
    EXPECT_NO_THROW(Config::parse(c.to_string())) << c.to_string();
  }
  EXPECT_EQ(d,
            (std::vector<double>{0.01 / 16, 0.01 / 8, 0.01 / 4, 0.01 / 2, 0.01, 0.02, 0.04, 0.08}));
  EXPECT_EQ(topk.configs[topk.default_index].density, 0.01);
  const CandidateSet dense_end = adaptive_candidates(Config::parse("adaptive:topk,density=0.3"));
  EXPECT_EQ(dense_end.configs.back().density, 0.6);  // 1.2 and 2.4 are not densities
  EXPECT_EQ(dense_end.configs[dense_end.default_index].density, 0.3);

  std::vector<int> ranks;
  const CandidateSet ps = adaptive_candidates(Config::parse("adaptive:powersgd"));
  for (const Config& c : ps.configs) ranks.push_back(c.rank);
  EXPECT_EQ(ranks, (std::vector<int>{1, 2, 3, 4, 6, 8, 16}));
  EXPECT_EQ(ps.configs[ps.default_index].rank, 4);
  ranks.clear();
  for (const Config& c : adaptive_candidates(Config::parse("adaptive:powersgd,rank=1")).configs)
    ranks.push_back(c.rank);
  EXPECT_EQ(ranks, (std::vector<int>{1, 2, 4}));

  std::vector<int> bits;
  const CandidateSet q = adaptive_candidates(Config::parse("adaptive:qsgd,bits=3,bucket=128"));
  for (const Config& c : q.configs) {
    bits.push_back(c.bits);
    EXPECT_EQ(c.bucket, 128u);
  }
  EXPECT_EQ(bits, (std::vector<int>{2, 3, 4, 5, 6, 7, 8}));
  EXPECT_EQ(q.configs[q.default_index].bits, 3);
}

TEST(Adaptive, TopkErrorsMatchTheCodec) {
  const std::vector<float> x = seeded_normal(3, 0, 0, 0, 5000);
  std::vector<std::size_t> ks;
  for (double d : {0.0005, 0.01, 0.3, 1.0}) ks.push_back(topk_count(d, x.size()));
  const std::vector<double> e = topk_errors(x.data(), x.size(), ks);
  for (std::size_t j = 0; j < ks.size(); ++j) {
    TopkCodec codec(static_cast<double>(ks[j]) / x.size(), Selection::exact);
    std::vector<std::uint8_t> out(codec.encoded_bytes(x.size()));
    const double want = codec.encode(x.data(), x.size(), {}, out.data(), nullptr).sq_error;
    EXPECT_NEAR(e[j], want, 1e-9 * (1.0 + want)) << "k " << ks[j];
  }
  EXPECT_EQ(e.back(), 0.0);
}

TEST(Adaptive, LowRankErrorsMatchAnExactSvd) {
  // A decaying spectrum (rank-6 signal with weights 8..1, plus noise), 90 x 70.
  const std::size_t rows = 90, cols = 70;
  std::vector<float> m(rows * cols, 0.0f);
  for (int s = 0; s < 6; ++s) {
    const auto u = seeded_normal(4, 0, s, 0, rows), v = seeded_normal(4, 1, s, 0, cols);
    for (std::size_t i = 0; i < rows; ++i)
      for (std::size_t j = 0; j < cols; ++j) m[i * cols + j] += (8.0f - s) * u[i] * v[j];
  }
  const auto noise = seeded_normal(5, 0, 0, 0, rows * cols, 0.3f);
  for (std::size_t i = 0; i < m.size(); ++i) m[i] += noise[i];
  const std::vector<std::size_t> ranks = {1, 2, 4, 8};
  const std::vector<double> e = low_rank_errors(m.data(), rows, cols, ranks, 17);
  const Eigen::MatrixXd md =
      Eigen::Map<const Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>(
          m.data(), rows, cols)
          .cast<double>();
  const Eigen::VectorXd sv = Eigen::JacobiSVD<Eigen::MatrixXd>(md).singularValues();
  for (std::size_t j = 0; j < ranks.size(); ++j) {
    double exact = 0.0;
    for (Eigen::Index i = static_cast<Eigen::Index>(ranks[j]); i < sv.size(); ++i)
      exact += sv(i) * sv(i);
    // The subspace iteration captures at most the top-r energy: never below the exact
    // error, and within 1 % of it here.
    EXPECT_GE(e[j], exact * (1.0 - 1e-9)) << "rank " << ranks[j];
    EXPECT_LE(e[j], exact * 1.01) << "rank " << ranks[j];
  }
}

// Layers that want different parameters: "spiky" has a few large entries over tiny noise
// (top-k at a low density loses little), "signs" holds +-s (qsgd at 2 bits is exact), "low"
// is a rank-1 matrix shared by every rank (PowerSGD at rank 1 is exact), "noise" is
// Gaussian and rank dependent.
std::vector<Layer> heterogeneous_layers() {
  return {{"spiky", {100, 120}},
          {"signs", {60, 80}},
          {"low", {80, 90}},
          {"noise", {70, 90}},
          {"bias", {90}}};
}

std::vector<std::vector<float>> heterogeneous_gradients(int rank, std::uint64_t step) {
  std::vector<std::vector<float>> g;
  auto spiky = seeded_normal(31, rank, 0, step, 12000, 0.001f);
  for (std::size_t i = 0; i < spiky.size(); i += 97)
    spiky[i] = (i % 2 ? 5.0f : -5.0f) * (1 + step % 3);
  g.push_back(spiky);
  auto signs = seeded_normal(31, rank, 1, step, 4800);
  for (float& x : signs) x = x >= 0 ? 0.5f : -0.5f;
  g.push_back(signs);
  const auto u = seeded_normal(32, 0, 2, step, 80), v = seeded_normal(32, 1, 2, step, 90);
  std::vector<float> low(7200);
  for (std::size_t i = 0; i < 80; ++i)
    for (std::size_t j = 0; j < 90; ++j) low[i * 90 + j] = u[i] * v[j];
  g.push_back(low);
  g.push_back(seeded_normal(31, rank, 3, step, 6300));
  g.push_back(seeded_normal(31, rank, 4, step, 90));
  return g;
}

TEST(Adaptive, StatsReportTheChosenParameterPerLayer) {
  Reducer r(Communicator::from_mpi(MPI_COMM_SELF), heterogeneous_layers(),
            Config::parse("adaptive:topk,period=3"));
  EXPECT_EQ(r.layer_spec(0), "topk:0.01");  // the uniform default before the first decision
  auto g = heterogeneous_gradients(0, 0);
  r.allreduce(views(g));
  const Stats s = r.stats();
  bool changed = false;
  for (std::size_t l = 0; l < 4; ++l) {
    EXPECT_EQ(s.layers[l].spec, r.layer_spec(l));
    EXPECT_EQ(s.layers[l].spec.rfind("topk:", 0), 0u) << s.layers[l].spec;
    changed = changed || s.layers[l].spec != "topk:0.01";
  }
  EXPECT_TRUE(changed);
  EXPECT_EQ(r.layer_spec(4), "topk:0.01");  // below min_numel: dense, not adapted
  EXPECT_EQ(s.layers[4].route, "dense");
}

bool specs_identical(const Reducer& r) {
  std::string all;
  for (std::size_t l = 0; l < r.layers().size(); ++l) all += r.layer_spec(l) + ";";
  return identical_on_all_ranks(all.data(), all.size(), MPI_COMM_WORLD);
}

// Every family: all ranks apply the same choice in the same step and hold the same bits,
// and the adaptive run sends fewer bytes than the uniform default on these layers.
TEST(MpiAdaptive, SameDecisionsOnEveryRankAndFewerBytesThanUniform) {
  const int me = world_rank();
  Communicator comm = Communicator::from_mpi(MPI_COMM_WORLD);
  const std::pair<const char*, const char*> cases[] = {
      {"adaptive:topk,period=4", "topk:0.01"},
      {"adaptive:topk,period=4,select=sampled,dgc=on,momentum=0.9",
       "topk:0.01,select=sampled,dgc=on,momentum=0.9"},
      {"adaptive:powersgd,period=4", "powersgd:4"},
      {"adaptive:qsgd,period=4", "qsgd:4"},
      {"adaptive:qsgd,period=4,bits=3,ef=econtrol", "qsgd:3,ef=econtrol"}};
  for (const auto& [adaptive, uniform] : cases) {
    Reducer a(comm, heterogeneous_layers(), Config::parse(adaptive));
    Reducer u(comm, heterogeneous_layers(), Config::parse(uniform));
    for (std::uint64_t step = 0; step < 10; ++step) {
      auto ga = heterogeneous_gradients(me, step);
      auto gu = ga;
      a.allreduce(views(ga));
      u.allreduce(views(gu));
      ASSERT_TRUE(identical_on_all_ranks(ga, MPI_COMM_WORLD)) << adaptive << " step " << step;
      ASSERT_TRUE(specs_identical(a)) << adaptive << " step " << step;
    }
    EXPECT_LT(a.stats().bytes_sent, u.stats().bytes_sent) << adaptive;
    if (me == 0) {
      std::string specs;
      for (std::size_t l = 0; l < 5; ++l) specs += " " + a.layer_spec(l);
      std::printf("%s: %.0f vs %.0f bytes;%s\n", adaptive, double(a.stats().bytes_sent),
                  double(u.stats().bytes_sent), specs.c_str());
    }
  }
}

// At step 0 every error memory is empty, so both runs compress the same x: the adaptive
// choice's total error (averaged over ranks, exact top-k) stays within the uniform one's.
TEST(MpiAdaptive, TheErrorBudgetHoldsEndToEnd) {
  const int me = world_rank(), p = world_size();
  Communicator comm = Communicator::from_mpi(MPI_COMM_WORLD);
  Reducer a(comm, heterogeneous_layers(), Config::parse("adaptive:topk"));
  Reducer u(comm, heterogeneous_layers(), Config::parse("topk:0.01"));
  auto ga = heterogeneous_gradients(me, 0);
  auto gu = ga;
  a.allreduce(views(ga));
  u.allreduce(views(gu));
  double err[2] = {0.0, 0.0};
  for (const LayerStats& l : a.stats().layers) err[0] += l.last_sq_error;
  for (const LayerStats& l : u.stats().layers) err[1] += l.last_sq_error;
  MPI_Allreduce(MPI_IN_PLACE, err, 2, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
  EXPECT_LE(err[0] / p, err[1] / p * (1.0 + 1e-9));
  // Payload bytes (the totals also hold the control and statistics exchanges).
  std::uint64_t bytes[2] = {0, 0};
  for (const LayerStats& l : a.stats().layers) bytes[0] += l.bytes_sent;
  for (const LayerStats& l : u.stats().layers) bytes[1] += l.bytes_sent;
  EXPECT_LT(bytes[0], bytes[1]);
}

}  // namespace
}  // namespace thinwire::test
