// Multi-rank device steps (mpiexec -n 2, 3 over the CPU emulation; 2 and 4 ranks sharing one
// GPU over the staged MPI transport on a GPU machine): every rank ends every step with the
// same bits, equal to the host backend's (bit for bit where device_matches_bitwise() says so).
#include <gtest/gtest.h>
#include <mpi.h>

#include <cmath>
#include <string>
#include <vector>

#include "device_reducer_support.hpp"
#include "device_test_support.hpp"
#include "test_support.hpp"

namespace thinwire::test {
namespace {

class MpiDeviceReducer : public ::testing::TestWithParam<const char*> {};

TEST_P(MpiDeviceReducer, IdenticalOnAllRanksAndEqualToTheHostBackend) {
  TW_REQUIRE_DEVICE();
  const Config config = Config::parse(GetParam());
  const PairRun run =
      run_host_and_device(device_test_layers(), GetParam(), 3, DType::f32, MPI_COMM_WORLD);
  for (std::size_t s = 0; s < run.device.size(); ++s)
    EXPECT_TRUE(identical_on_all_ranks(run.device[s], MPI_COMM_WORLD)) << "step " << s;
  if (device_matches_bitwise(config)) {
    for (std::size_t s = 0; s < run.device.size(); ++s)
      EXPECT_EQ(run.host[s], run.device[s]) << GetParam() << " step " << s;
  } else {
    EXPECT_LT(max_relative_difference(run), 1e-3) << GetParam();
  }
  EXPECT_EQ(run.host_stats.bytes_sent, run.device_stats.bytes_sent);
}

INSTANTIATE_TEST_SUITE_P(MpiSpecs, MpiDeviceReducer,
                         ::testing::Values("none", "topk:0.05", "topk:0.05,select=sampled",
                                           "topk:0.1,ef=econtrol,eta=0.01,min_numel=0", "onebit",
                                           "onebit,min_numel=0", "qsgd:4", "qsgd:2,ef=none",
                                           "powersgd:2", "powersgd:2,ef=econtrol,eta=0.01",
                                           "topk:0.05,dgc=on,momentum=0.9"));

// One rank's NaN stops every rank (nan=error), naming the layer; nan=skip zeroes every
// rank's step.
TEST(MpiDeviceReducerErrors, NonFiniteOnOneRankIsSeenByAll) {
  TW_REQUIRE_DEVICE();
  const int me = world_rank();
  const std::vector<Layer> layers = {{"w", {64, 33}}};
  Communicator comm = Communicator::from_mpi(MPI_COMM_WORLD);
  std::vector<float> w(64 * 33, 1.0f);
  if (me == world_size() - 1) w[7] = INFINITY;
  DeviceArray<float> dw;
  dw.upload(w);
  const std::vector<TensorView> v = {TensorView::cuda(dw.get(), w.size(), DType::f32, 0)};
  {
    Reducer r(comm, layers, Config::parse("qsgd:4"));
    auto err = error_from([&] { r.allreduce(v); });
    ASSERT_TRUE(err.has_value());
    EXPECT_EQ(err->code(), ErrorCode::invalid_argument);
    EXPECT_NE(std::string(err->what()).find("'w'"), std::string::npos) << err->what();
  }
  {
    Reducer r(comm, layers, Config::parse("powersgd:2,nan=skip"));
    r.allreduce(v);
    EXPECT_TRUE(r.last_step_skipped());
    for (float x : dw.download()) ASSERT_EQ(x, 0.0f);
  }
}

// Host tensors on one rank and device tensors on another: a mismatch on every rank, before
// any payload moves.
TEST(MpiDeviceReducerErrors, HostOnOneRankDeviceOnAnotherIsAMismatch) {
  TW_REQUIRE_DEVICE();
  const int me = world_rank();
  const std::vector<Layer> layers = {{"w", {4096}}};
  Communicator comm = Communicator::from_mpi(MPI_COMM_WORLD);
  Reducer r(comm, layers, Config::parse("topk:0.01"));
  std::vector<float> w(4096, 1.0f);
  DeviceArray<float> dw;
  dw.upload(w);
  const TensorView view = me == 0 ? TensorView::host(w.data(), w.size())
                                  : TensorView::cuda(dw.get(), w.size(), DType::f32, 0);
  auto err = error_from([&] { r.allreduce({view}); });
  ASSERT_TRUE(err.has_value());
  EXPECT_EQ(err->code(), ErrorCode::mismatch) << err->what();
}

}  // namespace
}  // namespace thinwire::test
