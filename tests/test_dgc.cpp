// DGC's extras (dgc=on, momentum=, clip=, dgc_warmup=): one-process tests and, in the Mpi*
// suite, a multi-rank run against a one-process model of every rank.
#include <gtest/gtest.h>
#include <mpi.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "common/bytes.hpp"
#include "compress/topk_codec.hpp"
#include "reducer/dgc.hpp"
#include "test_support.hpp"

namespace thinwire::test {
namespace {

using detail::dgc_warmup_density;

Communicator self() {
  return Communicator::from_mpi(MPI_COMM_SELF);
}

std::size_t nonzeros(const std::vector<float>& v) {
  std::size_t c = 0;
  for (float x : v) c += x != 0.0f;
  return c;
}

TEST(Dgc, WarmupDensityFollowsDgcsExponentialSchedule) {
  // Four equal stages, target^(1/5), target^(2/5), ...: for 0.001 the paper's 25 %, 6.25 %,
  // 1.5625 %, 0.4 %, then 0.1 %.
  const double t = 0.001;
  EXPECT_NEAR(dgc_warmup_density(t, 100, 0), 0.2512, 1e-4);
  EXPECT_NEAR(dgc_warmup_density(t, 100, 24), 0.2512, 1e-4);
  EXPECT_NEAR(dgc_warmup_density(t, 100, 25), 0.0631, 1e-4);
  EXPECT_NEAR(dgc_warmup_density(t, 100, 50), 0.01585, 1e-5);
  EXPECT_NEAR(dgc_warmup_density(t, 100, 99), 0.00398, 1e-5);
  EXPECT_EQ(dgc_warmup_density(t, 100, 100), t);
  EXPECT_EQ(dgc_warmup_density(t, 100, 1000), t);
  EXPECT_EQ(dgc_warmup_density(t, 0, 0), t);
  EXPECT_EQ(dgc_warmup_density(1.0, 10, 0), 1.0);
  // Never below the target, decreasing stage by stage, even with fewer steps than stages.
  for (std::size_t w : {1u, 2u, 3u, 7u, 1000u}) {
    double prev = 1.0;
    for (std::uint64_t s = 0; s <= w; ++s) {
      const double d = dgc_warmup_density(0.01, w, s);
      EXPECT_LE(d, prev) << w << " " << s;
      EXPECT_GE(d, 0.01);
      prev = d;
    }
  }
}

TEST(Dgc, WarmupSendsTheStagesDensity) {
  const std::size_t n = 10000;
  Reducer r(self(), {{"w", {100, 100}}},
            Config::parse("topk:0.001,dgc=on,momentum=0.9,dgc_warmup=8"));
  for (std::uint64_t step = 0; step < 10; ++step) {
    std::vector<std::vector<float>> g = {seeded_normal(3, 0, 0, step, n)};
    r.allreduce(views(g));
    const double d = dgc_warmup_density(0.001, 8, step);
    EXPECT_EQ(nonzeros(g[0]), detail::topk_count(d, n)) << "step " << step;
  }
}

// With momentum 0 the velocity is the gradient: DGC is plain top-k with error feedback, bit
// for bit, with exact and with sampled selection.
TEST(Dgc, ZeroMomentumIsPlainTopk) {
  for (const char* select : {"exact", "sampled"}) {
    const std::vector<Layer> layers = {{"w", {64, 80}}, {"b", {80}}};
    Reducer plain(self(), layers, Config::parse(std::string("topk:0.02,select=") + select));
    Reducer dgc(self(), layers,
                Config::parse(std::string("topk:0.02,dgc=on,momentum=0,select=") + select));
    for (std::uint64_t step = 0; step < 6; ++step) {
      std::vector<std::vector<float>> a = {seeded_normal(4, 0, 0, step, 5120),
                                           seeded_normal(4, 0, 1, step, 80)};
      auto b = a;
      plain.allreduce(views(a));
      dgc.allreduce(views(b));
      ASSERT_EQ(a, b) << select << " step " << step;
    }
  }
}

// Layers that go dense under dgc=on get ordinary momentum on the average: the result is the
// velocity U_t = m U_{t-1} + g_t.
TEST(Dgc, DenseLayersGetOrdinaryMomentum) {
  Reducer r(self(), {{"small", {100}}}, Config::parse("topk:0.01,dgc=on,momentum=0.5"));
  std::vector<float> u(100, 0.0f);
  for (std::uint64_t step = 0; step < 5; ++step) {
    std::vector<std::vector<float>> g = {seeded_normal(5, 0, 0, step, 100)};
    for (std::size_t i = 0; i < 100; ++i) u[i] = 0.5f * u[i] + g[0][i];
    r.allreduce(views(g));
    EXPECT_EQ(g[0], u) << "step " << step;
    EXPECT_EQ(r.stats().layers[0].route, "dense");
  }
}

double norm(const std::vector<std::vector<float>>& g) {
  double s = 0;
  for (const auto& t : g)
    for (float x : t) s += static_cast<double>(x) * x;
  return std::sqrt(s);
}

// clip=c with one rank: the whole model's gradient is scaled to norm c when it is longer.
TEST(Dgc, ClipScalesTheWholeModelsGradient) {
  const std::vector<Layer> layers = {{"w", {30, 40}}, {"b", {40}}};
  Reducer r(self(), layers, Config::parse("none,clip=2"));
  std::vector<std::vector<float>> g = {seeded_normal(6, 0, 0, 0, 1200),
                                       seeded_normal(6, 0, 1, 0, 40)};
  const auto before = g;
  const double n0 = norm(g);
  ASSERT_GT(n0, 2.0);
  r.allreduce(views(g));
  EXPECT_NEAR(norm(g), 2.0, 1e-5);
  // One factor for every layer: the direction is kept.
  for (std::size_t l = 0; l < 2; ++l)
    for (std::size_t i = 0; i < g[l].size(); ++i)
      ASSERT_NEAR(g[l][i], before[l][i] * 2.0 / n0, 1e-6);
  // A shorter gradient is left alone.
  std::vector<std::vector<float>> small = {std::vector<float>(1200, 0.01f),
                                           std::vector<float>(40, 0.01f)};
  const auto small_before = small;
  r.allreduce(views(small));
  EXPECT_EQ(small, small_before);
}

// Clipping comes before error feedback: what top-k accumulates is the clipped gradient, so
// result + memory never exceeds the clipped norms.
TEST(Dgc, ClipHappensBeforeAccumulation) {
  Reducer clipped(self(), {{"w", {64, 64}}}, Config::parse("topk:0.01,clip=1"));
  Reducer scaled(self(), {{"w", {64, 64}}}, Config::parse("topk:0.01"));
  for (std::uint64_t step = 0; step < 4; ++step) {
    std::vector<std::vector<float>> a = {seeded_normal(7, 0, 0, step, 4096, 10.0f)};
    std::vector<std::vector<float>> b = a;
    const float f = static_cast<float>(1.0 / norm(a));
    for (float& x : b[0]) x *= f;
    clipped.allreduce(views(a));
    scaled.allreduce(views(b));
    ASSERT_EQ(a, b) << "step " << step;
  }
}

// One-process model of DGC on P ranks, written from the paper: clip, u <- m u + g,
// v <- v + u, send the top-k of v, zero u and v where sent; average the P payloads in rank
// order. The top-k selection itself is the library's codec (tested on its own elsewhere).
struct DgcModel {
  Config config;
  std::size_t n;
  std::vector<std::vector<float>> u, v;
  DgcModel(const Config& c, std::size_t n_, int p)
      : config(c), n(n_), u(p, std::vector<float>(n_, 0.0f)), v(p, std::vector<float>(n_, 0.0f)) {}

  std::vector<float> step(std::vector<std::vector<float>> g, std::uint64_t step_index) {
    const int p = static_cast<int>(u.size());
    const double density = dgc_warmup_density(config.density, config.dgc_warmup, step_index);
    detail::TopkCodec codec(density, config.select);
    std::vector<float> sum(n, 0.0f);
    std::vector<bool> touched(n, false);
    for (int r = 0; r < p; ++r) {
      if (config.clip > 0) {
        double s = 0;
        for (float x : g[r]) s += static_cast<double>(x) * x;
        const double limit = config.clip * std::sqrt(static_cast<double>(p));
        if (std::sqrt(s) > limit) {
          const float f = static_cast<float>(limit / std::sqrt(s));
          for (float& x : g[r]) x *= f;
        }
      }
      for (std::size_t i = 0; i < n; ++i)
        u[r][i] = static_cast<float>(config.momentum) * u[r][i] + g[r][i];
      std::vector<std::uint8_t> payload(codec.encoded_bytes(n));
      const detail::EncodeKey key{
          config.seed,          step_index, 0,         static_cast<std::uint32_t>(r),
          detail::kPhaseWorker, 0,          DType::f32};
      // encode_ef adds u into v and leaves v with the sent entries zeroed.
      codec.encode_ef(v[r].data(), u[r].data(), n, key, payload.data());
      const auto view = codec.parse(payload.data(), payload.size(), n, {"w", r, 0});
      for (std::size_t j = 0; j < view.k; ++j) {
        const auto i = detail::load_le<std::uint32_t>(view.indices + 4 * j);
        sum[i] += detail::load_le<float>(view.values + 4 * j);
        touched[i] = true;
        u[r][i] = 0.0f;  // momentum factor masking
      }
    }
    if (p > 1)
      for (std::size_t i = 0; i < n; ++i)
        if (touched[i]) sum[i] /= static_cast<float>(p);
    return sum;
  }
};

TEST(MpiDgc, MatchesAOneProcessModelOfEveryRank) {
  const int p = world_size(), me = world_rank();
  for (const char* spec :
       {"topk:0.01,dgc=on,momentum=0.9,min_numel=0",
        "topk:0.01,dgc=on,momentum=0.9,select=sampled,min_numel=0",
        "topk:0.002,dgc=on,momentum=0.7,clip=3,dgc_warmup=6,min_numel=0",
        "topk:0.003,dgc=on,momentum=0.9,clip=50,dgc_warmup=4,select=sampled,seed=9,min_numel=0"}) {
    const Config config = Config::parse(spec);
    const std::size_t n = 60 * 70;
    Reducer reducer(Communicator::from_mpi(MPI_COMM_WORLD), {{"w", {60, 70}}}, config);
    DgcModel model(config, n, p);
    for (std::uint64_t step = 0; step < 10; ++step) {
      std::vector<std::vector<float>> all;
      for (int r = 0; r < p; ++r) all.push_back(seeded_normal(8, r, 0, step, n, 1.0f + step % 3));
      std::vector<std::vector<float>> mine = {all[static_cast<std::size_t>(me)]};
      reducer.allreduce(views(mine));
      const std::vector<float> expected = model.step(all, step);
      ASSERT_TRUE(identical_on_all_ranks(mine, MPI_COMM_WORLD)) << spec << " step " << step;
      ASSERT_EQ(0, std::memcmp(mine[0].data(), expected.data(), n * sizeof(float)))
          << spec << " step " << step;
    }
  }
}

// clip=c on P ranks: each rank's gradient is clipped to c sqrt(P), i.e. its share g/P of the
// average to c / sqrt(P) (DGC's N^-1/2 scaling), before the average.
TEST(MpiDgc, ClipThresholdScalesWithTheNumberOfRanks) {
  const int p = world_size(), me = world_rank();
  const std::vector<Layer> layers = {{"w", {20, 30}}, {"b", {30}}};
  Reducer reducer(Communicator::from_mpi(MPI_COMM_WORLD), layers, Config::parse("none,clip=5"));
  std::vector<std::vector<float>> mine;
  std::vector<double> expected(630, 0.0);
  for (int r = 0; r < p; ++r) {
    // Ranks with short and long gradients: only the long ones are clipped.
    const float scale = r % 2 ? 0.05f : 2.0f;
    std::vector<std::vector<float>> g = {seeded_normal(9, r, 0, 0, 600, scale),
                                         seeded_normal(9, r, 1, 0, 30, scale)};
    const double nr = norm(g), limit = 5.0 * std::sqrt(static_cast<double>(p));
    const double f = nr > limit ? limit / nr : 1.0;
    for (std::size_t i = 0; i < 600; ++i) expected[i] += g[0][i] * f / p;
    for (std::size_t i = 0; i < 30; ++i) expected[600 + i] += g[1][i] * f / p;
    if (r == me) mine = g;
  }
  reducer.allreduce(views(mine));
  ASSERT_TRUE(identical_on_all_ranks(mine, MPI_COMM_WORLD));
  for (std::size_t i = 0; i < 600; ++i) ASSERT_NEAR(mine[0][i], expected[i], 1e-5);
  for (std::size_t i = 0; i < 30; ++i) ASSERT_NEAR(mine[1][i], expected[600 + i], 1e-5);
}

}  // namespace
}  // namespace thinwire::test
