// Reducer in one process (MPI_COMM_SELF): validation, configuration, dtypes, statistics.
#include <gtest/gtest.h>
#include <mpi.h>

#include <cstdlib>
#include <cstring>
#include <nlohmann/json.hpp>

#include "common/half.hpp"
#include "launch.hpp"
#include "test_support.hpp"
#include "transport/device_transport.hpp"

namespace thinwire::test {
namespace {

Communicator self() {
  return Communicator::from_mpi(MPI_COMM_SELF);
}

TEST(Reducer, NoneWithOneRankReturnsTheGradient) {
  const std::vector<Layer> layers = {{"w", {30, 40}}, {"b", {40}}};
  Reducer r(self(), layers, Config::parse("none"));
  std::vector<std::vector<float>> g = {seeded_normal(1, 0, 0, 0, 1200),
                                       seeded_normal(1, 0, 1, 0, 40)};
  const auto before = g;
  r.allreduce(views(g));
  EXPECT_EQ(g, before);
  EXPECT_EQ(r.step(), 1u);
  EXPECT_EQ(r.stats().steps, 1u);
  EXPECT_EQ(r.stats().layers[0].route, "dense");
}

// With one rank top-k returns what it sent: result + new error == gradient + old error.
TEST(Reducer, TopkErrorFeedbackConservesTheSignalWithOneRank) {
  const std::vector<Layer> layers = {{"w", {64, 64}}};
  Reducer r(self(), layers, Config::parse("topk:0.01"));
  std::vector<double> sent(4096, 0.0), given(4096, 0.0);
  for (int step = 0; step < 20; ++step) {
    std::vector<std::vector<float>> g = {
        seeded_normal(2, 0, 0, static_cast<std::uint64_t>(step), 4096)};
    for (int i = 0; i < 4096; ++i) given[i] += g[0][i];
    r.allreduce(views(g));
    int nonzero = 0;
    for (int i = 0; i < 4096; ++i) {
      sent[i] += g[0][i];
      nonzero += g[0][i] != 0.0f;
    }
    EXPECT_EQ(nonzero, 41);  // ceil(0.01 * 4096)
  }
  // Whatever was not sent is still in the error memory: sent + error == given. The error
  // memory is internal, so check that the gap is what top-k keeps back: small and bounded.
  double gap = 0, norm = 0;
  for (int i = 0; i < 4096; ++i) {
    gap += (given[i] - sent[i]) * (given[i] - sent[i]);
    norm += given[i] * given[i];
  }
  EXPECT_GT(gap, 0.0);
  EXPECT_LT(gap, norm);
  const LayerStats ls = r.stats().layers[0];
  EXPECT_EQ(ls.route, "topk");
  EXPECT_GT(ls.last_sq_error, 0.0);
  EXPECT_GT(ls.last_sq_norm, ls.last_sq_error);
}

TEST(Reducer, EveryMethodRunsWithOneRankAndReportsItsRoute) {
  const std::vector<Layer> layers = {{"w", {64, 96}}, {"b", {96}}, {"tiny", {3}}};
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"none", "dense"},
      {"topk:0.1", "topk"},
      {"topk:0.1,select=sampled", "topk"},
      {"onebit", "onebit"},
      {"qsgd:4", "qsgd"},
      {"powersgd:4", "powersgd"},
      {"topk:0.1,ef=econtrol", "dense"}};  // EControl's first step goes dense
  for (const auto& [spec, route] : cases) {
    Reducer r(self(), layers, Config::parse(spec));
    std::vector<std::vector<float>> g = {seeded_normal(3, 0, 0, 0, 6144),
                                         seeded_normal(3, 0, 1, 0, 96),
                                         seeded_normal(3, 0, 2, 0, 3)};
    r.allreduce(views(g));
    const Stats s = r.stats();
    EXPECT_EQ(s.layers[0].route, route) << spec;
    EXPECT_EQ(s.layers[1].route, "dense") << spec << ": 96 < min_numel";
    EXPECT_EQ(s.layers[0].spec, Config::parse(spec).to_string());
    for (const auto& t : g)
      for (float v : t) ASSERT_TRUE(std::isfinite(v)) << spec;
  }
}

TEST(Reducer, WarmupStepsGoDense) {
  const std::vector<Layer> layers = {{"w", {64, 64}}};
  Reducer r(self(), layers, Config::parse("topk:0.01,warmup=2"));
  for (int step = 0; step < 3; ++step) {
    std::vector<std::vector<float>> g = {
        seeded_normal(4, 0, 0, static_cast<std::uint64_t>(step), 4096)};
    const auto before = g;
    r.allreduce(views(g));
    EXPECT_EQ(r.stats().layers[0].route, step < 2 ? "dense" : "topk");
    if (step < 2) {
      EXPECT_EQ(g, before);
    }
  }
}

TEST(Reducer, HalfPrecisionRoundTripsWithOneRank) {
  const std::vector<Layer> layers = {{"w", {100}}};
  for (DType dt : {DType::f16, DType::bf16}) {
    Reducer r(self(), layers, Config::parse("none"));
    std::vector<std::uint16_t> g;
    for (float v : seeded_normal(5, 0, 0, 0, 100))
      g.push_back(dt == DType::f16 ? detail::f32_to_f16(v) : detail::f32_to_bf16(v));
    const auto before = g;
    r.allreduce({TensorView::host(g.data(), g.size(), dt)});
    EXPECT_EQ(g, before) << to_string(dt);
  }
}

TEST(Reducer, BadTensorsRaiseAndLeaveTheReducerUsable) {
  const std::vector<Layer> layers = {{"w", {10, 10}}, {"b", {10}}};
  Reducer r(self(), layers, Config::parse("onebit,min_numel=0"));
  std::vector<float> w(100, 1.0f), b(10, 1.0f), short_b(9, 1.0f);
  auto expect = [&](const std::vector<TensorView>& v, ErrorCode code, const std::string& text) {
    auto err = error_from([&] { r.allreduce(v); });
    ASSERT_TRUE(err.has_value()) << text;
    EXPECT_EQ(err->code(), code) << err->what();
    EXPECT_NE(std::string(err->what()).find(text), std::string::npos) << err->what();
    EXPECT_NE(std::string(err->what()).find("[rank 0]"), std::string::npos) << err->what();
  };
  expect({TensorView::host(w.data(), 100)}, ErrorCode::invalid_argument,
         "got 1 tensors for 2 layers");
  expect({TensorView::host(w.data(), 100), TensorView::host(short_b.data(), 9)},
         ErrorCode::invalid_argument, "'b[10]': expected 10 elements, got a tensor of 9");
  expect({TensorView::host(w.data(), 100), TensorView::host(static_cast<float*>(nullptr), 10)},
         ErrorCode::invalid_argument, "null data pointer");
  expect({TensorView::host(w.data(), 100), TensorView::cuda(b.data(), 10, DType::f32, 0)},
         ErrorCode::invalid_argument, "one allreduce() takes tensors in one place");
  // Two layers over the same bytes (a tied weight passed twice): refused, even by one float.
  expect({TensorView::host(w.data(), 100), TensorView::host(w.data() + 90, 10)},
         ErrorCode::invalid_argument, "layers 0 'w' and 1 'b' share memory");
  std::vector<float> both(110, 1.0f);
  expect({TensorView::host(both.data() + 10, 100), TensorView::host(both.data() + 1, 10)},
         ErrorCode::invalid_argument, "layers 0 'w' and 1 'b' share memory");
  // Adjacent is not overlapping.
  r.allreduce({TensorView::host(both.data() + 10, 100), TensorView::host(both.data(), 10)});
  EXPECT_EQ(r.step(), 1u);
  // Host memory passed off as device memory: without a usable device the request cannot be
  // served; with one, the pointer check catches it before any kernel touches it.
  std::string why;
  if (kernels::device_count(&why) == 0)
    expect({TensorView::cuda(w.data(), 100, DType::f32, 0),
            TensorView::cuda(b.data(), 10, DType::f32, 0)},
           ErrorCode::unsupported, "no CUDA device is usable here");
  else
    expect({TensorView::cuda(w.data(), 100, DType::f32, 0),
            TensorView::cuda(b.data(), 10, DType::f32, 0)},
           ErrorCode::invalid_argument, "is host memory");
  EXPECT_EQ(r.step(), 1u);
  r.allreduce({TensorView::host(w.data(), 100), TensorView::host(b.data(), 10)});
  EXPECT_EQ(r.step(), 2u);
}

TEST(Reducer, BadLayersAndUnsupportedSpecsRaise) {
  auto err = error_from([&] { Reducer r(self(), {{"neg", {4, -1}}}, Config::parse("none")); });
  ASSERT_TRUE(err.has_value());
  EXPECT_EQ(err->code(), ErrorCode::invalid_argument);
  EXPECT_NE(std::string(err->what()).find("neg[4,-1]"), std::string::npos) << err->what();

  err = error_from([&] {
    Reducer r(self(), {{"huge", {1 << 20, 1 << 13}}}, Config::parse("topk:0.01"));
  });
  ASSERT_TRUE(err.has_value());
  EXPECT_EQ(err->code(), ErrorCode::unsupported);

  // Two layers under one name: refused, naming both positions.
  err = error_from([&] {
    Reducer r(self(), {{"fc.weight", {8, 4}}, {"fc.bias", {8}}, {"fc.weight", {4, 8}}},
              Config::parse("none"));
  });
  ASSERT_TRUE(err.has_value());
  EXPECT_EQ(err->code(), ErrorCode::invalid_argument);
  EXPECT_NE(std::string(err->what()).find("layers 0 and 2 are both named 'fc.weight'"),
            std::string::npos)
      << err->what();
  err = error_from([&] { Reducer r(self(), {{"", {8}}, {"", {8}}}, Config::parse("none")); });
  ASSERT_TRUE(err.has_value());
  EXPECT_EQ(err->code(), ErrorCode::invalid_argument);

  // adaptive, dgc and clip arrived with the training-quality work: they construct now.
  for (const char* spec : {"adaptive:topk", "topk:0.01,dgc=on,momentum=0.9", "onebit,clip=1"}) {
    err = error_from([&] { Reducer r(self(), {{"w", {10}}}, Config::parse(spec)); });
    EXPECT_FALSE(err.has_value()) << spec << ": " << err->what();
  }
}

TEST(Reducer, EnvironmentOverridesTheProgramsSpec) {
  setenv("THINWIRE_COMPRESSION", "qsgd:3,bucket=64", 1);
  Reducer r(self(), {{"w", {4096}}}, Config::parse("topk:0.01"));
  unsetenv("THINWIRE_COMPRESSION");
  EXPECT_EQ(r.config().to_string(), "qsgd:3,bucket=64");
  EXPECT_EQ(r.layer_spec(0), "qsgd:3,bucket=64");

  setenv("THINWIRE_COMPRESSION", "qsgd:9", 1);
  auto err = error_from([&] { Reducer bad(self(), {{"w", {4096}}}, Config::parse("topk:0.01")); });
  unsetenv("THINWIRE_COMPRESSION");
  ASSERT_TRUE(err.has_value());
  EXPECT_NE(std::string(err->what()).find("THINWIRE_COMPRESSION"), std::string::npos)
      << err->what();
}

TEST(Reducer, EmptyModelAndEmptyLayers) {
  Reducer none(self(), {}, Config::parse("topk:0.1"));
  none.allreduce({});
  EXPECT_EQ(none.step(), 1u);
  Reducer r(self(), {{"empty", {0}}, {"one", {1}}}, Config::parse("topk:0.5,min_numel=0"));
  float one = 3.0f;
  r.allreduce({TensorView::host(static_cast<float*>(nullptr), 0), TensorView::host(&one, 1)});
  EXPECT_EQ(one, 3.0f);
  EXPECT_EQ(r.stats().layers[0].route, "empty");
}

TEST(Reducer, StatsJsonParsesAndResetClearsCounts) {
  Reducer r(self(), {{"w", {64, 64}}, {"b", {64}}}, Config::parse("onebit"));
  std::vector<std::vector<float>> g = {seeded_normal(6, 0, 0, 0, 4096),
                                       seeded_normal(6, 0, 1, 0, 64)};
  r.allreduce(views(g));
  const auto j = nlohmann::json::parse(r.stats().to_json());
  EXPECT_EQ(j["steps"], 1);
  ASSERT_EQ(j["layers"].size(), 2u);
  EXPECT_EQ(j["layers"][0]["name"], "w");
  EXPECT_EQ(j["layers"][0]["route"], "onebit");
  EXPECT_GT(j["layers"][0]["sq_norm"].get<double>(), 0.0);
  EXPECT_TRUE(j["seconds"].contains("encode"));
  r.reset_stats();
  EXPECT_EQ(r.stats().steps, 0u);
  EXPECT_EQ(r.stats().layers[0].sq_norm, 0.0);
  EXPECT_EQ(r.stats().layers[0].name, "w");
}

}  // namespace
}  // namespace thinwire::test

namespace thinwire::test {
namespace {

TEST(Communicator, TransportVariableIsChecked) {
  setenv("THINWIRE_TRANSPORT", "tcp", 1);
  auto err = error_from([] { Communicator::from_mpi(MPI_COMM_SELF); });
  ASSERT_TRUE(err.has_value());
  EXPECT_EQ(err->code(), ErrorCode::invalid_argument);
  EXPECT_NE(std::string(err->what()).find("auto, mpi, nccl"), std::string::npos) << err->what();
  // nccl picks the transport of device tensors: accepted when this build has NCCL (host
  // tensors still go over MPI), refused as unsupported when it has not.
  setenv("THINWIRE_TRANSPORT", "nccl", 1);
  err = error_from([] { Communicator::from_mpi(MPI_COMM_SELF); });
  if (detail::have_nccl()) {
    EXPECT_FALSE(err.has_value()) << err->what();
  } else {
    ASSERT_TRUE(err.has_value());
    EXPECT_EQ(err->code(), ErrorCode::unsupported);
    EXPECT_NE(std::string(err->what()).find("no NCCL"), std::string::npos) << err->what();
  }
  setenv("THINWIRE_TRANSPORT", "mpi", 1);
  EXPECT_EQ(Communicator::from_mpi(MPI_COMM_SELF).size(), 1);
  unsetenv("THINWIRE_TRANSPORT");
}

TEST(Communicator, TimeoutVariableIsChecked) {
  setenv("THINWIRE_TIMEOUT_S", "soon", 1);
  auto err = error_from([] { Communicator::from_mpi(MPI_COMM_SELF); });
  unsetenv("THINWIRE_TIMEOUT_S");
  ASSERT_TRUE(err.has_value());
  EXPECT_NE(std::string(err->what()).find("THINWIRE_TIMEOUT_S"), std::string::npos) << err->what();
}

// A transport supplied by the program: thinwire's collectives run over it, and a failure
// inside it breaks the communicator so that later calls fail at once.
class LoopbackTransport : public Transport {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  const char* name() const override { return "loopback"; }
  void allreduce(void*, std::size_t, ElementType, ReduceOp) override { ++calls; }
  void allgather(const void* s, void* r, std::size_t b) override {
    ++calls;
    if (fail_next) throw std::runtime_error("link down");
    std::memmove(r, s, b);
  }
  void alltoall(const void* s, void* r, std::size_t b) override { std::memmove(r, s, b); }
  void broadcast(void*, std::size_t, int) override {}
  void barrier() override {}
  int calls = 0;
  bool fail_next = false;
};

TEST(Communicator, CustomTransportAndBrokenState) {
  auto t = std::make_shared<LoopbackTransport>();
  Communicator comm = Communicator::from_transport(t);
  Reducer r(comm, {{"w", {64, 64}}}, Config::parse("topk:0.1"));
  std::vector<float> g = seeded_normal(9, 0, 0, 0, 4096);
  r.allreduce({TensorView::host(g.data(), g.size())});
  EXPECT_GT(t->calls, 0);
  t->fail_next = true;
  auto err = error_from([&] { r.allreduce({TensorView::host(g.data(), g.size())}); });
  ASSERT_TRUE(err.has_value());
  EXPECT_EQ(err->code(), ErrorCode::transport_error);
  EXPECT_NE(std::string(err->what()).find("link down"), std::string::npos) << err->what();
  EXPECT_TRUE(comm.broken());
  t->fail_next = false;
  err = error_from([&] { r.allreduce({TensorView::host(g.data(), g.size())}); });
  ASSERT_TRUE(err.has_value());
  EXPECT_NE(std::string(err->what()).find("broken"), std::string::npos) << err->what();
}

}  // namespace
}  // namespace thinwire::test
