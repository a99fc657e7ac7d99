// Multi-rank tests of the cost model against the Reducer (the model's bytes are the library's),
// and of `auto`: every rank makes the same choice, also after recalibrate(), and ends every
// step with identical bits.
#include <gtest/gtest.h>
#include <mpi.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "model/auto_policy.hpp"
#include "model/cost_model.hpp"
#include "reducer/reducer_impl.hpp"
#include "test_support.hpp"
#include "transport/mpi_transport.hpp"

namespace thinwire::test {
namespace {

std::vector<Layer> layers_for_model() {
  return {{"emb", {300, 64}},      {"fc.weight", {129, 77}}, {"fc.bias", {129}}, {"ln", {64}},
          {"conv", {16, 3, 5, 5}}, {"big.bias", {5000}},     {"empty", {0}},     {"scalar", {}}};
}

std::vector<std::vector<float>> gradients(const std::vector<Layer>& layers, int step, int rank) {
  std::vector<std::vector<float>> g;
  for (std::size_t l = 0; l < layers.size(); ++l)
    g.push_back(seeded_normal(77, rank, l, static_cast<std::uint64_t>(step), layers[l].numel()));
  return g;
}

TEST(MpiCostModel, PredictedBytesAreWhatTheReducerSends) {
  const std::vector<Layer> layers = layers_for_model();
  const int p = world_size(), me = world_rank();
  for (const char* spec :
       {"none", "topk:0.01", "topk:0.3,min_numel=0", "onebit", "onebit,min_numel=0", "qsgd:4",
        "qsgd:3,bucket=100", "powersgd:4", "powersgd:1,min_numel=0"}) {
    Reducer r(Communicator::from_mpi(MPI_COMM_WORLD), layers, Config::parse(spec));
    r.reset_stats();
    auto g = gradients(layers, 0, me);
    r.allreduce(views(g));
    const detail::model::StepCost predicted = detail::model::predict_step(
        layers, Config::parse(spec), p, detail::model::Network{}, detail::model::ComputeRates{});
    EXPECT_EQ(r.stats().bytes_sent, predicted.bytes_sent) << spec;
  }
}

// Every rank's view of every layer's spec, compared across ranks.
bool same_specs_on_all_ranks(const Reducer& r) {
  std::string all;
  for (std::size_t i = 0; i < r.layers().size(); ++i) all += r.layer_spec(i) + ";";
  return identical_on_all_ranks(all.data(), all.size(), MPI_COMM_WORLD);
}

class MpiAuto : public ::testing::TestWithParam<std::string> {};

TEST_P(MpiAuto, EveryRankChoosesTheSameAndHoldsTheSameBits) {
  const std::vector<Layer> layers = layers_for_model();
  const int me = world_rank();
  Reducer r(Communicator::from_mpi(MPI_COMM_WORLD), layers, Config::parse(GetParam()));
  EXPECT_EQ(r.config().to_string(), Config::parse(GetParam()).to_string());
  ASSERT_TRUE(same_specs_on_all_ranks(r)) << GetParam();
  for (std::size_t i = 0; i < layers.size(); ++i) {
    // The choice is a plain spec: dense or the family's.
    const Config c = Config::parse(r.layer_spec(i));
    EXPECT_NE(c.method, Method::automatic);
    EXPECT_TRUE(c.method == Method::none || c.method == Config::parse(GetParam()).family)
        << r.layer_spec(i);
    EXPECT_EQ(r.stats().layers[i].spec, r.layer_spec(i));
  }
  for (int step = 0; step < 6; ++step) {
    if (step == 3) {
      r.recalibrate();
      ASSERT_TRUE(same_specs_on_all_ranks(r)) << GetParam();
    }
    auto g = gradients(layers, step, me);
    r.allreduce(views(g));
    ASSERT_TRUE(identical_on_all_ranks(g, MPI_COMM_WORLD)) << GetParam() << " step " << step;
    for (const auto& layer : g)
      for (float v : layer) ASSERT_TRUE(std::isfinite(v));
  }
  EXPECT_EQ(r.step(), 6u);
}

INSTANTIATE_TEST_SUITE_P(Mpi, MpiAuto,
                         ::testing::Values("auto", "auto:topk", "auto:qsgd:2,min_numel=0",
                                           "auto:powersgd:1,ef=econtrol"),
                         [](const ::testing::TestParamInfo<std::string>& param) {
                           std::string name;
                           for (char c : param.param)
                             name += std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
                           return name;
                         });

TEST(MpiAutoCalibration, KernelsTimedOncePerHostAndScaledByTheCoreShare) {
  // The test's ranks share one host: they must all see it, each with its own place, and the
  // calibration's rates are one core's divided by min(1, cores / ranks).
  detail::MpiTransport t(MPI_COMM_WORLD, 60.0);
  const detail::model::HostPeers host = detail::model::host_peers(t);
  EXPECT_EQ(host.ranks, t.size());
  std::vector<int> index(static_cast<std::size_t>(t.size()));
  MPI_Allgather(&host.index, 1, MPI_INT, index.data(), 1, MPI_INT, MPI_COMM_WORLD);
  std::sort(index.begin(), index.end());
  for (int r = 0; r < t.size(); ++r) EXPECT_EQ(index[static_cast<std::size_t>(r)], r);

  const std::vector<Layer> layers = {{"w", {256, 256}}};
  const detail::model::Calibration cal =
      detail::model::calibrate(t, layers, Config::parse("auto:onebit"));
  const double cores = std::max(1u, std::thread::hardware_concurrency());
  EXPECT_DOUBLE_EQ(cal.cpu_share, std::min(1.0, cores / t.size()));
  EXPECT_GT(cal.rates.onebit_encode, 0.0);
  EXPECT_GT(cal.rates.copy, 0.0);
  // Every rank holds the same numbers (the measuring rank's, gathered).
  double mine[2] = {cal.rates.onebit_encode, cal.rates.copy}, most[2], least[2];
  MPI_Allreduce(mine, most, 2, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
  MPI_Allreduce(mine, least, 2, MPI_DOUBLE, MPI_MIN, MPI_COMM_WORLD);
  EXPECT_EQ(most[0], least[0]);
  EXPECT_EQ(most[1], least[1]);
}

// Sleeps in the collectives a test names: a link that was fast while the probe ran and is
// slow in the steps, as peers descheduled on shared cores made it.
class DelayingTransport final : public ForwardingTransport {
 public:
  explicit DelayingTransport(Communicator inner)
      : ForwardingTransport(std::move(inner), "delaying") {}
  void allreduce(void* d, std::size_t c, ElementType t, ReduceOp o) override {
    pause(allreduce_delay_s);  // dense layers' sums (the control exchange is an allgather)
    ForwardingTransport::allreduce(d, c, t, o);
  }
  void alltoall(const void* s, void* r, std::size_t b) override {
    pause(alltoall_delay_s);  // onebit's first phase
    ForwardingTransport::alltoall(s, r, b);
  }
  double allreduce_delay_s = 0, alltoall_delay_s = 0;

 private:
  static void pause(double s) {
    if (s > 0) std::this_thread::sleep_for(std::chrono::duration<double>(s));
  }
};

// The trial apply_auto starts when the predicted gain is small (model/auto_trial.hpp), of
// onebit against dense, on a link that slows one of the two after the probe: the steps
// follow the schedule, every rank ends each with the same bits, and the Reducer keeps the
// arm that was faster.
TEST(MpiAutoTrial, KeepsWhicheverArmRanFasterOnRealSteps) {
  const std::vector<Layer> layers = {{"w", {128, 128}}, {"b", {128}}};
  const int me = world_rank();
  const std::vector<Config> chosen(layers.size(), Config::parse("onebit,min_numel=0"));
  const std::vector<Config> dense(layers.size(), Config::parse("none"));
  for (const bool compressed_slow : {true, false}) {
    auto transport = std::make_shared<DelayingTransport>(Communicator::from_mpi(MPI_COMM_WORLD));
    detail::ReducerImpl r(Communicator::from_transport(transport), layers,
                          Config::parse("auto:onebit"));
    for (std::size_t i = 0; i < layers.size(); ++i) r.set_layer_config(i, chosen[i]);
    r.auto_trial_.start(chosen, dense);
    (compressed_slow ? transport->alltoall_delay_s : transport->allreduce_delay_s) = 0.05;
    const char* arm_spec[] = {"onebit,min_numel=0", "none", "none",
                              "onebit,min_numel=0", "none", "onebit,min_numel=0"};
    for (int step = 0; step < detail::model::AutoTrial::kSteps + 2; ++step) {
      auto g = gradients(layers, step, me);
      r.allreduce(views(g));
      ASSERT_TRUE(identical_on_all_ranks(g, MPI_COMM_WORLD)) << step;
      const std::string kept = compressed_slow ? "none" : "onebit,min_numel=0";
      const std::string expected =
          step < detail::model::AutoTrial::kSteps - 1 ? arm_spec[step] : kept;
      for (std::size_t i = 0; i < layers.size(); ++i)
        EXPECT_EQ(r.stats_.layers[i].spec, expected)
            << "step " << step << (compressed_slow ? ", onebit slowed" : ", dense slowed");
    }
    EXPECT_FALSE(r.auto_trial_.active());
  }
}

TEST(MpiAutoRecalibrate, DoesNothingForOtherSpecs) {
  const std::vector<Layer> layers = {{"w", {64, 64}}};
  Reducer r(Communicator::from_mpi(MPI_COMM_WORLD), layers, Config::parse("onebit"));
  r.recalibrate();
  EXPECT_EQ(r.layer_spec(0), "onebit");
}

}  // namespace
}  // namespace thinwire::test
