// The Reducer on device tensors (the device pipeline) against the Reducer on host tensors,
// in one process: every method, error feedback variant and dtype gives the host backend's
// results (bit for bit where device_matches_bitwise() says so, else within a few ulp of
// accumulated rounding), the same byte counts, and state that checkpoints across backends.
#include <gtest/gtest.h>
#include <mpi.h>

#include <cmath>
#include <cstring>
#include <sstream>
#include <string>
#include <vector>

#include "device_reducer_support.hpp"
#include "device_test_support.hpp"
#include "test_support.hpp"

namespace thinwire::test {
namespace {

// Specs that run natively on the device, and (last three) specs whose features run on the
// host, for which device tensors are staged through host memory.
const char* const kDeviceSpecs[] = {
    "none",
    "topk:0.05",
    "topk:0.05,select=sampled",
    "topk:0.05,ef=none",
    "topk:0.05,ef=econtrol,eta=0.01",
    "topk:0.1,min_numel=0",
    "onebit",
    "onebit,ef=none",
    "onebit,ef=econtrol,eta=0.01",
    "onebit,min_numel=0,warmup=1",
    "qsgd:4",
    "qsgd:2,bucket=100",
    "qsgd:8,ef=none",
    "qsgd:3,ef=econtrol,eta=0.01,min_numel=0",
    "powersgd:2",
    "powersgd:1,ef=none",
    "powersgd:3,ef=econtrol,eta=0.01",
    "topk:0.05,dgc=on,momentum=0.9",
    "onebit,clip=1",
    "adaptive:topk,period=2",
    "auto",
    "topk:0.05,auto=on",
};

void expect_match(const PairRun& run, const Config& config, const std::string& what) {
  expect_device_matches_host(run, config, what);
  EXPECT_EQ(run.host_stats.bytes_sent, run.device_stats.bytes_sent) << what;
  EXPECT_EQ(run.host_stats.bytes_dense, run.device_stats.bytes_dense) << what;
  ASSERT_EQ(run.host_stats.layers.size(), run.device_stats.layers.size());
  for (std::size_t l = 0; l < run.host_stats.layers.size(); ++l) {
    const LayerStats& h = run.host_stats.layers[l];
    const LayerStats& d = run.device_stats.layers[l];
    EXPECT_EQ(h.route, d.route) << what << " layer " << l;
    // The error statistics are sums in another order on a GPU.
    EXPECT_NEAR(h.sq_error, d.sq_error, 1e-6 * (1.0 + h.sq_norm)) << what << " layer " << l;
    EXPECT_NEAR(h.sq_norm, d.sq_norm, 1e-6 * (1.0 + h.sq_norm)) << what << " layer " << l;
  }
}

class DeviceReducer : public ::testing::TestWithParam<const char*> {};

TEST_P(DeviceReducer, MatchesTheHostBackend) {
  TW_REQUIRE_DEVICE();
  const Config config = Config::parse(GetParam());
  const PairRun run =
      run_host_and_device(device_test_layers(), GetParam(), 4, DType::f32, MPI_COMM_SELF);
  expect_match(run, config, GetParam());
}

INSTANTIATE_TEST_SUITE_P(Specs, DeviceReducer, ::testing::ValuesIn(kDeviceSpecs));

TEST(DeviceReducerDtypes, HalfAndBfloat16MatchTheHostBackend) {
  TW_REQUIRE_DEVICE();
  for (DType dtype : {DType::f16, DType::bf16})
    for (const char* spec : {"none", "topk:0.05", "onebit", "qsgd:4", "powersgd:2,ef=econtrol"}) {
      const PairRun run = run_host_and_device(device_test_layers(), spec, 3, dtype, MPI_COMM_SELF);
      expect_match(run, Config::parse(spec), std::string(spec) + " " + to_string(dtype));
    }
}

// auto on device tensors: re-calibration moves the state to the host and back.
TEST(DeviceReducerState, RecalibrationKeepsTheDeviceState) {
  TW_REQUIRE_DEVICE();
  const std::vector<Layer> layers = device_test_layers();
  Communicator comm = Communicator::from_mpi(MPI_COMM_SELF);
  Reducer host(comm, layers, Config::parse("onebit,auto=on"));
  Reducer device(comm, layers, Config::parse("onebit,auto=on"));
  std::vector<DeviceArray<float>> d(layers.size());
  std::vector<bool> same(layers.size(), true);  // the same spec on both in every step so far
  for (int step = 0; step < 4; ++step) {
    if (step == 2) {
      host.recalibrate();
      device.recalibrate();
    }
    std::vector<std::vector<float>> g;
    std::vector<TensorView> dv;
    for (std::size_t l = 0; l < layers.size(); ++l) {
      g.push_back(seeded_normal(9, 0, l, static_cast<std::uint64_t>(step), layers[l].numel()));
      d[l].upload(g.back());
      dv.push_back(TensorView::cuda(d[l].get(), layers[l].numel(), DType::f32, 0));
    }
    std::vector<TensorView> hv = views(g);
    host.allreduce(hv);
    device.allreduce(dv);
    for (std::size_t l = 0; l < layers.size(); ++l) {
      // auto's choice depends on timings: compare only layers both ran the same way.
      same[l] = same[l] && host.layer_spec(l) == device.layer_spec(l);
      if (!same[l]) continue;
      const std::vector<float> out = d[l].download();
      if (device_matches_bitwise(Config::parse(host.layer_spec(l))))
        EXPECT_EQ(out, g[l]) << "step " << step << " layer " << l;
      else
        EXPECT_LT(relative_error(out, g[l]), 1e-3) << "step " << step << " layer " << l;
    }
  }
}

// Device steps, a checkpoint, then host steps from it: the same results as staying on the
// device (state moves between the device and LayerState without loss).
TEST(DeviceReducerState, CheckpointMovesBetweenDeviceAndHost) {
  TW_REQUIRE_DEVICE();
  const std::vector<Layer> layers = device_test_layers();
  for (const char* spec :
       {"topk:0.05", "onebit", "qsgd:4", "powersgd:2", "topk:0.05,ef=econtrol"}) {
    SCOPED_TRACE(spec);
    Communicator comm = Communicator::from_mpi(MPI_COMM_SELF);
    const Config config = Config::parse(spec);
    Reducer on_device(comm, layers, config);
    std::vector<DeviceArray<float>> d(layers.size());
    auto device_step = [&](Reducer& r, int step) {
      std::vector<TensorView> v;
      for (std::size_t l = 0; l < layers.size(); ++l) {
        d[l].upload(seeded_normal(5, 0, l, static_cast<std::uint64_t>(step), layers[l].numel()));
        v.push_back(TensorView::cuda(d[l].get(), layers[l].numel(), DType::f32, 0));
      }
      r.allreduce(v);
      std::vector<std::vector<float>> out;
      for (auto& a : d) out.push_back(a.download());
      return out;
    };
    for (int step = 0; step < 3; ++step) device_step(on_device, step);
    std::stringstream checkpoint;
    on_device.save_state(checkpoint);

    Reducer on_host(comm, layers, config);
    on_host.load_state(checkpoint);
    for (int step = 3; step < 5; ++step) {
      const auto expected = device_step(on_device, step);
      std::vector<std::vector<float>> g;
      for (std::size_t l = 0; l < layers.size(); ++l)
        g.push_back(seeded_normal(5, 0, l, static_cast<std::uint64_t>(step), layers[l].numel()));
      std::vector<TensorView> v = views(g);
      on_host.allreduce(v);
      if (device_matches_bitwise(config)) {
        EXPECT_EQ(g, expected) << "step " << step;
      } else {
        EXPECT_LT(relative_error(g, expected), 1e-3) << "step " << step;
      }
    }
  }
}

TEST(DeviceReducerErrors, NonFiniteGradientsFollowThePolicy) {
  TW_REQUIRE_DEVICE();
  const std::vector<Layer> layers = {{"w", {64, 33}}, {"b", {64}}};
  Communicator comm = Communicator::from_mpi(MPI_COMM_SELF);
  std::vector<float> w(64 * 33, 1.0f), b(64, 2.0f);
  w[1000] = std::nanf("");
  DeviceArray<float> dw, db;
  dw.upload(w);
  db.upload(b);
  const std::vector<TensorView> v = {TensorView::cuda(dw.get(), w.size(), DType::f32, 0),
                                     TensorView::cuda(db.get(), b.size(), DType::f32, 0)};
  {
    Reducer r(comm, layers, Config::parse("topk:0.1"));
    auto err = error_from([&] { r.allreduce(v); });
    ASSERT_TRUE(err.has_value());
    EXPECT_EQ(err->code(), ErrorCode::invalid_argument);
    EXPECT_NE(std::string(err->what()).find("'w'"), std::string::npos) << err->what();
    EXPECT_NE(std::string(err->what()).find("element 1000"), std::string::npos) << err->what();
  }
  for (const char* spec : {"onebit,nan=skip", "topk:0.1,dgc=on,momentum=0.9,nan=skip"}) {
    SCOPED_TRACE(spec);  // the second stages through host memory (DGC runs on the host)
    dw.upload(w);
    db.upload(b);
    Reducer r(comm, layers, Config::parse(spec));
    r.allreduce(v);
    EXPECT_TRUE(r.last_step_skipped());
    EXPECT_EQ(r.stats().skipped_steps, 1u);
    for (float x : dw.download()) ASSERT_EQ(x, 0.0f);
    for (float x : db.download()) ASSERT_EQ(x, 0.0f);
  }
}

}  // namespace
}  // namespace thinwire::test
