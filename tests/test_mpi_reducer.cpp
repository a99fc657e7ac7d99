// Multi-rank tests of the Reducer: run under mpiexec -n 2, 3 and 4 (CTest mpi_np*).
// Every test checks that all ranks hold identical bits after every step.
#include <gtest/gtest.h>
#include <mpi.h>

#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "common/half.hpp"
#include "reference.hpp"
#include "test_support.hpp"

namespace thinwire::test {
namespace {

// Matrices, vectors and sizes that divide by nothing in particular (ranks, 8, buckets).
std::vector<Layer> mixed_layers() {
  return {{"fc1.weight", {37, 53}}, {"fc1.bias", {37}}, {"fc2.weight", {64, 129}},
          {"scalar", {}},           {"empty", {0}},     {"conv.weight", {6, 3, 5, 23}},
          {"fc3.weight", {3, 701}}, {"fc3.bias", {3}}};
}

GradientFn seeded_gradients(const std::vector<Layer>& layers, std::uint64_t seed) {
  return [layers, seed](std::uint64_t step, int rank, std::size_t l) {
    return seeded_normal(seed, rank, l, step, layers[l].numel());
  };
}

std::vector<std::vector<float>> gradients_at(const std::vector<Layer>& layers, const GradientFn& fn,
                                             std::uint64_t step, int rank) {
  std::vector<std::vector<float>> g;
  for (std::size_t l = 0; l < layers.size(); ++l) g.push_back(fn(step, rank, l));
  return g;
}

// Routes whose result the reference reproduces bit for bit: the payload routes with plain
// error feedback. Dense sums and PowerSGD's factor sums go through MPI's allreduce, whose
// summation order is MPI's own; EControl's updates are written in an equivalent but not
// bit-identical order in the library.
bool bitwise_comparable(const Config& c, const std::string& route) {
  if (c.ef == ErrorFeedback::econtrol) return false;
  return route == "topk" || route == "onebit" || route == "qsgd";
}

class MpiReducerSpec : public ::testing::TestWithParam<std::string> {};

TEST_P(MpiReducerSpec, IdenticalOnAllRanksAndMatchesOneProcessReference) {
  const Config config = Config::parse(GetParam());
  const std::vector<Layer> layers = mixed_layers();
  const int p = world_size(), me = world_rank();
  const int steps = 4;
  const GradientFn fn = seeded_gradients(layers, 1234);
  const auto ref = reference_run(layers, config, p, steps, fn);

  Reducer reducer(Communicator::from_mpi(MPI_COMM_WORLD), layers, config);
  for (int step = 0; step < steps; ++step) {
    auto g = gradients_at(layers, fn, static_cast<std::uint64_t>(step), me);
    reducer.allreduce(views(g));
    ASSERT_TRUE(identical_on_all_ranks(g, MPI_COMM_WORLD)) << GetParam() << " step " << step;
    const Stats s = reducer.stats();
    for (std::size_t l = 0; l < layers.size(); ++l) {
      const std::string& route = s.layers[l].route;
      if (bitwise_comparable(config, route)) {
        ASSERT_EQ(0, std::memcmp(g[l].data(), ref[step][l].data(), g[l].size() * sizeof(float)))
            << GetParam() << " layer " << layers[l].name << " route " << route << " step " << step;
      } else {
        EXPECT_LT(relative_error(g[l], ref[step][l]), 2e-5)
            << GetParam() << " layer " << layers[l].name << " route " << route << " step " << step;
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Mpi, MpiReducerSpec,
                         ::testing::Values("none", "topk:0.05", "topk:0.05,min_numel=0",
                                           "topk:0.3,select=sampled,min_numel=0",
                                           "topk:0.05,ef=none", "onebit", "onebit,min_numel=0",
                                           "onebit,ef=none", "qsgd:4",
                                           "qsgd:2,bucket=100,min_numel=0", "qsgd:8,seed=7",
                                           "qsgd:3,ef=none", "powersgd:2", "powersgd:1,min_numel=0",
                                           "topk:0.05,ef=econtrol", "onebit,ef=econtrol,eta=0.3",
                                           "qsgd:4,ef=econtrol", "powersgd:2,ef=econtrol",
                                           "topk:0.05,warmup=2", "onebit,warmup=1,min_numel=0"),
                         [](const ::testing::TestParamInfo<std::string>& param) {
                           std::string name;
                           for (char c : param.param)
                             name += std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
                           return name;
                         });

// Lossless settings equal the exact average (up to summation order).
TEST(MpiReducer, LosslessSettingsGiveTheExactAverage) {
  const std::vector<Layer> layers = {{"w", {24, 40}}, {"b", {40}}, {"v", {1}}, {"m", {5, 300}}};
  const int p = world_size(), me = world_rank();
  for (const char* spec :
       {"none", "topk:1.0,min_numel=0", "powersgd:24,min_numel=0", "powersgd:5"}) {
    const Config config = Config::parse(spec);
    Reducer reducer(Communicator::from_mpi(MPI_COMM_WORLD), layers, config);
    for (int step = 0; step < 3; ++step) {
      auto g =
          gradients_at(layers, seeded_gradients(layers, 99), static_cast<std::uint64_t>(step), me);
      std::vector<std::vector<double>> exact(layers.size());
      for (std::size_t l = 0; l < layers.size(); ++l) {
        exact[l].assign(layers[l].numel(), 0.0);
        for (int r = 0; r < p; ++r) {
          const auto gr =
              seeded_normal(99, r, l, static_cast<std::uint64_t>(step), layers[l].numel());
          for (std::size_t i = 0; i < gr.size(); ++i) exact[l][i] += static_cast<double>(gr[i]) / p;
        }
      }
      reducer.allreduce(views(g));
      ASSERT_TRUE(identical_on_all_ranks(g, MPI_COMM_WORLD)) << spec;
      for (std::size_t l = 0; l < layers.size(); ++l)
        for (std::size_t i = 0; i < g[l].size(); ++i)
          ASSERT_NEAR(g[l][i], exact[l][i], 1e-5 * (1.0 + std::fabs(exact[l][i])))
              << spec << " layer " << l << " i " << i;
    }
  }
}

// A rank-dependent gradient that jumps after step 0 and then stays constant: with error
// feedback, what one step drops is sent later, so the running mean of the results converges
// to the running mean of the true averages (EControl's h must also track the jump).
TEST(MpiReducer, ErrorFeedbackMakesTheRunningMeanConverge) {
  const std::vector<Layer> layers = {{"w", {32, 48}}, {"v", {2000}}};
  const int p = world_size(), me = world_rank();
  const int steps = 150;
  auto gradient = [&](std::uint64_t step, int r, std::size_t l) {
    return seeded_normal(step == 0 ? 5 : 6, r, l, 0, layers[l].numel());
  };
  std::vector<std::vector<float>> truth(layers.size());  // mean over steps of the exact averages
  for (std::size_t l = 0; l < layers.size(); ++l) {
    std::vector<double> acc(layers[l].numel(), 0.0);
    for (int r = 0; r < p; ++r)
      for (std::uint64_t step : {0, 1}) {
        const auto gr = gradient(step, r, l);
        const double weight = step == 0 ? 1.0 : steps - 1.0;
        for (std::size_t i = 0; i < gr.size(); ++i) acc[i] += weight * gr[i] / p / steps;
      }
    for (double v : acc) truth[l].push_back(static_cast<float>(v));
  }
  auto run = [&](const std::string& spec, double* first_step_error) {
    Reducer reducer(Communicator::from_mpi(MPI_COMM_WORLD), layers, Config::parse(spec));
    std::vector<std::vector<double>> sum(layers.size());
    for (std::size_t l = 0; l < layers.size(); ++l) sum[l].assign(layers[l].numel(), 0.0);
    for (int step = 0; step < steps; ++step) {
      auto g = gradients_at(layers, gradient, static_cast<std::uint64_t>(step), me);
      std::vector<std::vector<float>> exact = g;  // this step's exact average, for step 1
      reducer.allreduce(views(g));
      EXPECT_TRUE(identical_on_all_ranks(g, MPI_COMM_WORLD)) << spec;
      if (step == 1) {
        for (std::size_t l = 0; l < layers.size(); ++l) {
          std::fill(exact[l].begin(), exact[l].end(), 0.0f);
          for (int r = 0; r < p; ++r) {
            const auto gr = gradient(1, r, l);
            for (std::size_t i = 0; i < gr.size(); ++i)
              exact[l][i] += gr[i] / static_cast<float>(p);
          }
        }
        *first_step_error = relative_error(g, exact);
      }
      for (std::size_t l = 0; l < layers.size(); ++l)
        for (std::size_t i = 0; i < g[l].size(); ++i) sum[l][i] += g[l][i];
    }
    std::vector<std::vector<float>> mean(layers.size());
    for (std::size_t l = 0; l < layers.size(); ++l)
      for (double v : sum[l]) mean[l].push_back(static_cast<float>(v / steps));
    return relative_error(mean, truth);
  };
  for (const char* spec :
       {"topk:0.05", "onebit", "qsgd:2", "qsgd:4", "powersgd:2", "topk:0.05,ef=econtrol",
        "onebit,ef=econtrol", "qsgd:2,ef=econtrol", "powersgd:2,ef=econtrol"}) {
    double first = 0;
    const double final_error = run(spec, &first);
    if (world_rank() == 0)
      std::printf("[ converge ] %-24s step-1 error %.4f  running-mean error %.5f\n", spec, first,
                  final_error);
    EXPECT_LT(final_error, 0.1) << spec << ": running mean after " << steps << " steps";
    EXPECT_LT(final_error, first / 5) << spec << ": step-1 error " << first;
  }
  // Without error feedback top-k keeps dropping the same entries: no convergence.
  double first = 0;
  const double no_ef = run("topk:0.05,ef=none", &first);
  EXPECT_GT(no_ef, 0.5) << "topk without error feedback should not converge";
}

// 1000 small layers of varied sizes, all compressed.
TEST(MpiReducer, ThousandSmallLayers) {
  std::vector<Layer> layers;
  for (int i = 0; i < 1000; ++i)
    layers.push_back({"l" + std::to_string(i), {1 + (i * 7) % 23, 1 + (i * 3) % 5}});
  const int p = world_size(), me = world_rank();
  for (const char* spec :
       {"topk:0.2,min_numel=0", "onebit,min_numel=0", "qsgd:4,min_numel=0,bucket=16", "none"}) {
    const Config config = Config::parse(spec);
    const GradientFn fn = seeded_gradients(layers, 77);
    const auto ref = reference_run(layers, config, p, 2, fn);
    Reducer reducer(Communicator::from_mpi(MPI_COMM_WORLD), layers, config);
    for (int step = 0; step < 2; ++step) {
      auto g = gradients_at(layers, fn, static_cast<std::uint64_t>(step), me);
      reducer.allreduce(views(g));
      ASSERT_TRUE(identical_on_all_ranks(g, MPI_COMM_WORLD)) << spec;
      EXPECT_LT(relative_error(g, ref[step]), 1e-6) << spec;
      if (config.method != Method::none) {
        for (std::size_t l = 0; l < layers.size(); ++l) {
          ASSERT_EQ(0, std::memcmp(g[l].data(), ref[step][l].data(), g[l].size() * 4))
              << spec << " layer " << l;
        }
      }
    }
  }
}

// On thinwire's ring, dense layers of 64 KiB or more (DenseAllreduce::kInPlaceMinBytes) are
// sent and summed where they are, and runs of smaller ones packed between them. The result
// must be the bits of the average of one packed buffer: the concatenated gradient as one
// layer, which is reduced where it is, is that buffer. Chunk boundaries fall inside layers
// and inside packed runs; also with messages cut into segments, with the check in the sum,
// and on MPI's route.
TEST(MpiReducer, DenseLayersSummedWhereTheyAreGiveThePackedBits) {
  const std::vector<Layer> layers = {{"a", {70001}}, {"b1", {5}},       {"b2", {3000}},
                                     {"empty", {0}}, {"c", {128, 300}}, {"d", {16384}},
                                     {"e", {16383}}, {"f", {40000}},    {"g", {7}}};
  std::int64_t total = 0;
  for (const Layer& l : layers) total += static_cast<std::int64_t>(l.numel());
  const std::vector<Layer> one = {{"all", {total}}};
  const int me = world_rank();
  // MPI's own allreduce (THINWIRE_MPI_ALLREDUCE=mpi) packs the spans inside the transport.
  for (const char* segment : {"0", "32768", "mpi"}) {
    const bool mpi_route = std::string(segment) == "mpi";
    ScopedEnv env("THINWIRE_MPI_SEGMENT_BYTES", mpi_route ? "0" : segment);
    ScopedEnv route("THINWIRE_MPI_ALLREDUCE", mpi_route ? "mpi" : "ring");
    Communicator comm = Communicator::from_mpi(MPI_COMM_WORLD);
    for (const char* spec : {"none", "none,nan=propagate"}) {
      Reducer split(comm, layers, Config::parse(spec));
      Reducer whole(comm, one, Config::parse(spec));
      for (int step = 0; step < 2; ++step) {
        auto g =
            gradients_at(layers, seeded_gradients(layers, 5), static_cast<std::uint64_t>(step), me);
        std::vector<float> concat;
        for (const auto& t : g) concat.insert(concat.end(), t.begin(), t.end());
        split.allreduce(views(g));
        whole.allreduce({TensorView::host(concat.data(), concat.size())});
        ASSERT_TRUE(identical_on_all_ranks(g, MPI_COMM_WORLD)) << spec;
        std::size_t off = 0;
        for (std::size_t l = 0; l < layers.size(); ++l) {
          if (!g[l].empty()) {  // memcmp wants pointers even for 0 bytes
            ASSERT_EQ(0, std::memcmp(g[l].data(), concat.data() + off, g[l].size() * 4))
                << spec << ", segment " << segment << ", step " << step << ", layer " << l;
          }
          off += g[l].size();
        }
      }
    }
  }
}

// f16 and bf16 gradients: computation in f32, results rounded back, identical everywhere.
TEST(MpiReducer, HalfPrecisionGradients) {
  const std::vector<Layer> layers = {{"w", {40, 60}}, {"b", {60}}};
  const int me = world_rank();
  for (DType dt : {DType::f16, DType::bf16}) {
    for (const char* spec : {"none", "topk:0.1", "onebit", "qsgd:4", "powersgd:2"}) {
      Reducer reducer(Communicator::from_mpi(MPI_COMM_WORLD), layers, Config::parse(spec));
      std::vector<std::vector<std::uint16_t>> g16(layers.size());
      for (std::size_t l = 0; l < layers.size(); ++l)
        for (float v : seeded_normal(3, me, l, 0, layers[l].numel()))
          g16[l].push_back(dt == DType::f16 ? detail::f32_to_f16(v) : detail::f32_to_bf16(v));
      std::vector<TensorView> v;
      for (auto& t : g16) v.push_back(TensorView::host(t.data(), t.size(), dt));
      reducer.allreduce(v);
      reducer.allreduce(v);
      for (auto& t : g16)
        ASSERT_TRUE(identical_on_all_ranks(t.data(), t.size() * 2, MPI_COMM_WORLD)) << spec;
    }
  }
}

// Bytes on the wire follow the documented ring/pairwise formulas.
TEST(MpiReducer, StatsCountBytesAsDocumented) {
  const int p = world_size(), me = world_rank();
  const std::vector<Layer> layers = {{"w", {50, 80}}, {"b", {80}}};
  const std::uint64_t pm1 = static_cast<std::uint64_t>(p - 1);
  const std::uint64_t dense_w = 2 * 4000 * 4 * pm1 / p, dense_b = 2 * 80 * 4 * pm1 / p;
  struct Case {
    const char* spec;
    std::uint64_t w_bytes;
  };
  const std::size_t chunk = (4000 + p - 1) / p;
  const Case cases[] = {
      {"none", dense_w},
      {"topk:0.01", pm1 * (32 + 8 * 40)},
      {"onebit", 2 * pm1 * (32 + 4 + (chunk + 7) / 8)},
      {"qsgd:4", 2 * pm1 * (32 + 4 * ((chunk + 511) / 512) + (chunk * 4 + 7) / 8)},
      {"powersgd:4", 2 * 4 * (50 * 4) * pm1 / p + 2 * 4 * (80 * 4) * pm1 / p},
  };
  for (const Case& c : cases) {
    Reducer r(Communicator::from_mpi(MPI_COMM_WORLD), layers, Config::parse(c.spec));
    std::vector<std::vector<float>> g = {seeded_normal(8, me, 0, 0, 4000),
                                         seeded_normal(8, me, 1, 0, 80)};
    r.allreduce(views(g));
    r.allreduce(views(g));
    const Stats s = r.stats();
    EXPECT_EQ(s.layers[0].bytes_sent, 2 * c.w_bytes) << c.spec;
    EXPECT_EQ(s.layers[0].bytes_dense, 2 * dense_w) << c.spec;
    EXPECT_EQ(s.layers[1].bytes_sent, 2 * dense_b) << c.spec;
    // Totals add the 256-byte control exchange of construction and of each step.
    EXPECT_EQ(s.bytes_sent, s.layers[0].bytes_sent + s.layers[1].bytes_sent + 3 * 256 * pm1)
        << c.spec;
    EXPECT_GT(s.seconds_total, 0.0);
  }
}

// --- ranks that disagree ------------------------------------------------------------------

TEST(MpiReducerMismatch, DifferentShapeOnOneRankFailsEveryRankNamingTheLayer) {
  const int me = world_rank();
  std::vector<Layer> layers = {{"a", {10, 10}}, {"b", {20}}, {"c", {5, 5}}};
  if (me == world_size() - 1) layers[1].shape = {21};
  auto err = error_from([&] {
    Reducer r(Communicator::from_mpi(MPI_COMM_WORLD), layers, Config::parse("topk:0.1"));
  });
  ASSERT_TRUE(err.has_value());
  EXPECT_EQ(err->code(), ErrorCode::mismatch);
  EXPECT_NE(std::string(err->what()).find("'b[21]'"), std::string::npos) << err->what();
  EXPECT_NE(std::string(err->what()).find("'b[20]'"), std::string::npos) << err->what();
}

TEST(MpiReducerMismatch, DifferentSpecOrLayerCountFailsEveryRank) {
  const int me = world_rank();
  const std::vector<Layer> layers = {{"a", {10, 10}}, {"b", {20}}};
  auto err = error_from([&] {
    Reducer r(Communicator::from_mpi(MPI_COMM_WORLD), layers,
              Config::parse(me == 0 ? "topk:0.1" : "topk:0.2"));
  });
  ASSERT_TRUE(err.has_value());
  EXPECT_EQ(err->code(), ErrorCode::mismatch);
  EXPECT_NE(std::string(err->what()).find("topk:0.2"), std::string::npos) << err->what();

  std::vector<Layer> fewer = layers;
  if (me == 0) fewer.pop_back();
  err = error_from(
      [&] { Reducer r(Communicator::from_mpi(MPI_COMM_WORLD), fewer, Config::parse("onebit")); });
  ASSERT_TRUE(err.has_value());
  EXPECT_EQ(err->code(), ErrorCode::mismatch);
  EXPECT_NE(std::string(err->what()).find("layer 1"), std::string::npos) << err->what();
}

TEST(MpiReducerMismatch, BadTensorOnOneRankFailsEveryRankAndTheReducerStaysUsable) {
  const int me = world_rank(), p = world_size();
  const std::vector<Layer> layers = {{"a", {10, 10}}, {"b", {20}}};
  Reducer reducer(Communicator::from_mpi(MPI_COMM_WORLD), layers,
                  Config::parse("onebit,min_numel=0"));
  std::vector<std::vector<float>> g = {std::vector<float>(100, 1.0f),
                                       std::vector<float>(me == p - 1 ? 19 : 20, 1.0f)};
  auto err = error_from([&] { reducer.allreduce(views(g)); });
  ASSERT_TRUE(err.has_value());
  EXPECT_EQ(err->code(), ErrorCode::invalid_argument);
  EXPECT_NE(std::string(err->what()).find("rank " + std::to_string(p - 1)), std::string::npos)
      << err->what();
  EXPECT_NE(std::string(err->what()).find("expected 20 elements"), std::string::npos)
      << err->what();
  // Nothing was exchanged, so the next correct call works.
  g[1].assign(20, 2.0f);
  reducer.allreduce(views(g));
  EXPECT_TRUE(identical_on_all_ranks(g, MPI_COMM_WORLD));
  EXPECT_EQ(reducer.step(), 1u);
}

TEST(MpiReducerMismatch, DifferentDtypeOnOneRankFailsEveryRank) {
  const int me = world_rank();
  const std::vector<Layer> layers = {{"a", {64}}, {"b", {32}}};
  Reducer reducer(Communicator::from_mpi(MPI_COMM_WORLD), layers, Config::parse("none"));
  std::vector<float> a(64, 1.0f), b32(32, 1.0f);
  std::vector<std::uint16_t> b16(32, 0x3c00);
  std::vector<TensorView> v = {
      TensorView::host(a.data(), 64),
      me == 0 ? TensorView::host(b16.data(), 32, DType::f16) : TensorView::host(b32.data(), 32)};
  auto err = error_from([&] { reducer.allreduce(v); });
  ASSERT_TRUE(err.has_value());
  EXPECT_EQ(err->code(), ErrorCode::mismatch);
  EXPECT_NE(std::string(err->what()).find("'b[32]'"), std::string::npos) << err->what();
  EXPECT_NE(std::string(err->what()).find("f16"), std::string::npos) << err->what();
}

TEST(MpiReducerMismatch, RanksOutOfStepFailEveryRank) {
  const int me = world_rank();
  const std::vector<Layer> layers = {{"a", {64}}};
  Communicator comm = Communicator::from_mpi(MPI_COMM_WORLD);
  Reducer first(comm, layers, Config::parse("none"));
  std::vector<float> a(64, 1.0f);
  first.allreduce({TensorView::host(a.data(), 64)});
  // Rank 0 calls the reducer at step 1; the others call a fresh one, at step 0.
  Reducer second(comm, layers, Config::parse("none"));
  auto err =
      error_from([&] { (me == 0 ? first : second).allreduce({TensorView::host(a.data(), 64)}); });
  ASSERT_TRUE(err.has_value());
  EXPECT_EQ(err->code(), ErrorCode::mismatch);
  EXPECT_NE(std::string(err->what()).find("out of step"), std::string::npos) << err->what();
}

TEST(MpiReducerMismatch, EnvironmentOverrideOnOneRankIsCaught) {
  const int me = world_rank();
  const std::vector<Layer> layers = {{"a", {4096}}};
  if (me == 0) setenv("THINWIRE_COMPRESSION", "qsgd:4", 1);
  auto err = error_from(
      [&] { Reducer r(Communicator::from_mpi(MPI_COMM_WORLD), layers, Config::parse("onebit")); });
  if (me == 0) unsetenv("THINWIRE_COMPRESSION");
  ASSERT_TRUE(err.has_value());
  EXPECT_EQ(err->code(), ErrorCode::mismatch);
  EXPECT_NE(std::string(err->what()).find("qsgd:4"), std::string::npos) << err->what();
}

TEST(MpiReducerMismatch, BadSpecOnOneRankFailsEveryRank) {
  const int me = world_rank();
  const std::vector<Layer> layers = {{"a", {4096}}};
  if (me == 0) setenv("THINWIRE_COMPRESSION", "topk:7", 1);
  auto err = error_from(
      [&] { Reducer r(Communicator::from_mpi(MPI_COMM_WORLD), layers, Config::parse("onebit")); });
  if (me == 0) unsetenv("THINWIRE_COMPRESSION");
  ASSERT_TRUE(err.has_value());
  EXPECT_EQ(err->code(), ErrorCode::invalid_argument);
  EXPECT_NE(std::string(err->what()).find("THINWIRE_COMPRESSION"), std::string::npos)
      << err->what();
}

}  // namespace
}  // namespace thinwire::test
