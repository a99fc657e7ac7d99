// The NCCL device transport with one rank on a real device (suite Nccl*: excluded from the
// emulated runs, run with one process on GPU machines). Skips loudly where this build has no
// NCCL or the kernels are the CPU emulation.
#include <gtest/gtest.h>
#include <mpi.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#if __has_include(<cuda_runtime.h>) && __has_include(<nccl.h>)
#include <cuda_runtime.h>
#define TW_TEST_HAVE_CUDA_RUNTIME 1
#endif

#include "device_test_support.hpp"
#include "test_support.hpp"
#include "transport/communicator_state.hpp"
#include "transport/device_transport.hpp"
#include "transport/mpi_transport.hpp"

namespace thinwire::test {
namespace {

using detail::DeviceTransport;
using detail::DeviceTransportKind;

// Skips, loudly, unless the NCCL transport can run here.
#define TW_REQUIRE_NCCL()                                                                    \
  do {                                                                                       \
    TW_REQUIRE_DEVICE();                                                                     \
    const char* tw_skip_ = !detail::have_nccl()  ? "THIS BUILD HAS NO NCCL"                  \
                           : kernels::emulated() ? "CPU EMULATION: NCCL NEEDS A REAL DEVICE" \
                                                 : nullptr;                                  \
    if (tw_skip_) {                                                                          \
      std::fprintf(stderr, "\n*** thinwire NCCL tests: %s, SKIPPING ***\n\n", tw_skip_);     \
      GTEST_SKIP() << tw_skip_ << ": the NCCL transport was not tested";                     \
    }                                                                                        \
  } while (0)

std::unique_ptr<DeviceTransport> nccl_over(Transport& host, double timeout_s) {
  return detail::make_device_transport(DeviceTransportKind::nccl, host, 0, timeout_s);
}

template <typename T>
std::vector<T> ramp(std::size_t n, T first, T step) {
  std::vector<T> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = first + static_cast<T>(i) * step;
  return v;
}

template <typename T>
void check_allreduce(DeviceTransport& t, ElementType type, std::vector<T> values) {
  for (ReduceOp op : {ReduceOp::sum, ReduceOp::min, ReduceOp::max}) {
    DeviceArray<T> d(values.size());
    d.upload(values);
    t.allreduce(d.get(), values.size(), type, op);
    t.synchronize("allreduce test");
    // One rank: every reduction is the identity.
    EXPECT_EQ(d.download(), values)
        << "element size " << sizeof(T) << ", op " << static_cast<int>(op);
  }
}

TEST(NcclTransport, EveryCollectiveWithOneRank) {
  TW_REQUIRE_NCCL();
  detail::MpiTransport host(MPI_COMM_SELF, 120);
  auto t = nccl_over(host, 120);
  EXPECT_EQ(std::string(t->name()), "nccl");
  EXPECT_EQ(t->rank(), 0);
  EXPECT_EQ(t->size(), 1);
  EXPECT_EQ(t->device(), 0);
  void* stream = nullptr;
  TW_ASSERT_OK(kernels::stream_create(&stream));
  t->set_stream(stream);
  EXPECT_EQ(t->stream(), stream);

  check_allreduce<float>(*t, ElementType::f32, ramp<float>(1000, -3.5f, 0.25f));
  check_allreduce<double>(*t, ElementType::f64, ramp<double>(777, 1e300, -1e297));
  check_allreduce<std::int64_t>(*t, ElementType::i64,
                                ramp<std::int64_t>(300, -(std::int64_t{1} << 60), 1 << 20));
  check_allreduce<std::uint64_t>(*t, ElementType::u64,
                                 ramp<std::uint64_t>(300, ~std::uint64_t{0} - 1000, 3));

  // Out of place, so that the data must have moved.
  const std::vector<std::uint8_t> bytes = ramp<std::uint8_t>(4099, 7, 13);
  DeviceArray<std::uint8_t> send(bytes.size()), recv(bytes.size());
  send.upload(bytes);
  t->allgather(send.get(), recv.get(), bytes.size());
  t->synchronize("allgather test");
  EXPECT_EQ(recv.download(), bytes);

  DeviceArray<std::uint8_t> recv2(bytes.size());
  t->alltoall(send.get(), recv2.get(), bytes.size());
  t->synchronize("alltoall test");
  EXPECT_EQ(recv2.download(), bytes);
  auto err = error_from([&] { t->alltoall(send.get(), send.get(), bytes.size()); });
  ASSERT_TRUE(err.has_value()) << "an in-place alltoall must be refused";
  EXPECT_EQ(err->code(), ErrorCode::invalid_argument);
}

TEST(NcclTransport, BroadcastBarrierAndEmptyCalls) {
  TW_REQUIRE_NCCL();
  detail::MpiTransport host(MPI_COMM_SELF, 120);
  auto t = nccl_over(host, 120);
  const std::vector<float> v = ramp<float>(50, 1.0f, 2.0f);
  DeviceArray<float> d(v.size());
  d.upload(v);
  t->broadcast(d.get(), v.size() * sizeof(float), 0);
  t->barrier();
  t->synchronize("broadcast test");
  EXPECT_EQ(d.download(), v);
  t->allreduce(d.get(), 0, ElementType::f32, ReduceOp::sum);
  t->allgather(d.get(), d.get(), 0);
  t->broadcast(d.get(), 0, 0);
  t->synchronize("empty calls");
  auto err = error_from([&] { t->broadcast(d.get(), 4, 1); });
  ASSERT_TRUE(err.has_value());
  EXPECT_EQ(err->code(), ErrorCode::invalid_argument);
}

TEST(NcclTransport, ThroughTheCommunicator) {
  TW_REQUIRE_NCCL();
  for (const char* setting : {"nccl", "auto"}) {
    ScopedEnv env("THINWIRE_TRANSPORT", setting);
    Communicator comm = Communicator::from_mpi(MPI_COMM_SELF);
    DeviceTransport& t = comm.state()->device_transport(0);
    EXPECT_EQ(std::string(t.name()), "nccl") << "THINWIRE_TRANSPORT=" << setting;
    DeviceArray<double> d(3);
    d.upload({1.0, 2.0, 3.0});
    t.allreduce(d.get(), 3, ElementType::f64, ReduceOp::sum);
    t.synchronize("communicator test");
    EXPECT_EQ(d.download(), (std::vector<double>{1.0, 2.0, 3.0}));
  }
  ScopedEnv env("THINWIRE_TRANSPORT", "mpi");
  Communicator comm = Communicator::from_mpi(MPI_COMM_SELF);
  EXPECT_EQ(std::string(comm.state()->device_transport(0).name()), "staged(mpi)");
}

TEST(NcclTransport, AfterAnAbortEveryCallThrowsAtOnce) {
  TW_REQUIRE_NCCL();
  detail::MpiTransport host(MPI_COMM_SELF, 120);
  auto t = nccl_over(host, 120);
  DeviceArray<float> d(4);
  t->allreduce(d.get(), 4, ElementType::f32, ReduceOp::sum);
  t->synchronize("before the abort");
  t->abort("aborted by the test");
  expect_every_call_refused(*t, "aborted by the test");

  // Through a communicator: the abort also breaks it, host collectives included.
  ScopedEnv env("THINWIRE_TRANSPORT", "nccl");
  Communicator comm = Communicator::from_mpi(MPI_COMM_SELF);
  comm.state()->device_transport(0).abort("communicator abort");
  EXPECT_TRUE(comm.broken());
  expect_every_call_refused(comm.state()->device_transport(0), "communicator abort");
  auto err = error_from([&] { comm.host_transport().barrier(); });
  ASSERT_TRUE(err.has_value());
  EXPECT_EQ(err->code(), ErrorCode::transport_error);
}

#if defined(TW_TEST_HAVE_CUDA_RUNTIME)
void CUDART_CB hold_the_stream(void* seconds) {
  std::this_thread::sleep_for(std::chrono::duration<double>(*static_cast<double*>(seconds)));
}
#endif

// One rank cannot leave NCCL waiting for a peer; a stream held by a host function that
// outlasts the deadline stands in for a stuck collective.
TEST(NcclTransport, SynchronizeTimesOutAbortsAndRefusesLaterCalls) {
  TW_REQUIRE_NCCL();
#if !defined(TW_TEST_HAVE_CUDA_RUNTIME)
  GTEST_SKIP() << "NO CUDA RUNTIME HEADER for this test: the NCCL timeout path was not tested";
#else
  constexpr double kDeadline = 4.0;
  static double hold = kDeadline + 2.0;
  detail::MpiTransport host(MPI_COMM_SELF, 120);
  auto t = nccl_over(host, kDeadline);
  void* stream = nullptr;
  TW_ASSERT_OK(kernels::stream_create(&stream));
  t->set_stream(stream);
  DeviceArray<float> d(4);
  t->allreduce(d.get(), 4, ElementType::f32, ReduceOp::sum);
  t->synchronize("warm-up");
  ASSERT_EQ(cudaLaunchHostFunc(static_cast<cudaStream_t>(stream), hold_the_stream, &hold),
            cudaSuccess);
  const auto start = std::chrono::steady_clock::now();
  auto err = error_from([&] { t->synchronize("layer 3 exchange"); });
  const double waited =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ASSERT_TRUE(err.has_value()) << "synchronize returned while the stream was held";
  EXPECT_EQ(err->code(), ErrorCode::timeout);
  const std::string what = err->what();
  for (const char* part : {"layer 3 exchange", "rank 0 of 1", "device 0", "THINWIRE_TIMEOUT_S",
                           "aborted", "does not say which ranks"})
    EXPECT_NE(what.find(part), std::string::npos) << "'" << part << "' missing: " << what;
  EXPECT_GE(waited, kDeadline);
  expect_every_call_refused(*t, "timed out");
  TW_ASSERT_OK(kernels::stream_synchronize(stream));
  t.reset();
  TW_ASSERT_OK(kernels::stream_destroy(stream));
#endif
}

}  // namespace
}  // namespace thinwire::test
