// The device transports on device buffers (host memory in the CPU emulation): the staged
// transport over MPI_COMM_WORLD against the host MpiTransport, the choice of transport, and
// the communicator's lazily created, guarded device transport. Suites Mpi* are collective
// (mpiexec, any number of ranks); DeviceTransportChoice runs in one process.
#include <gtest/gtest.h>
#include <mpi.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "device_test_support.hpp"
#include "test_support.hpp"
#include "transport/communicator_state.hpp"
#include "transport/device_transport.hpp"
#include "transport/mpi_transport.hpp"
#include "transport/staged_transport.hpp"

namespace thinwire::test {
namespace {

using detail::DeviceTransport;
using detail::DeviceTransportKind;

constexpr double kTimeout = 120;

std::unique_ptr<DeviceTransport> staged_over(Transport& host) {
  return detail::make_device_transport(DeviceTransportKind::staged, host, 0, kTimeout);
}

// Rank r's input of n elements: any rank can regenerate any other's.
template <typename T>
std::vector<T> input(std::uint64_t seed, int rank, std::size_t n) {
  const std::vector<float> x = seeded_normal(seed, rank, 0, 0, n);
  std::vector<T> v(n);
  for (std::size_t i = 0; i < n; ++i) {
    if constexpr (std::is_same_v<T, float>)
      v[i] = x[i];
    else if constexpr (std::is_same_v<T, double>)
      v[i] = static_cast<double>(x[i]) * 1.000000119 + 1e-9 * static_cast<double>(rank);
    else
      v[i] = static_cast<T>(static_cast<std::int64_t>(x[i] * 1e6)) - static_cast<T>(3 * rank);
  }
  return v;
}

// The reduction computed here from every rank's regenerated input, when it is exact: min
// and max of anything, sums of integers.
template <typename T>
std::optional<std::vector<T>> exact_reduction(std::uint64_t seed, std::size_t n, ReduceOp op) {
  if (op == ReduceOp::sum && !std::is_integral_v<T>) return std::nullopt;
  std::vector<T> r = input<T>(seed, 0, n);
  for (int p = 1; p < world_size(); ++p) {
    const std::vector<T> x = input<T>(seed, p, n);
    for (std::size_t i = 0; i < n; ++i) {
      if (op == ReduceOp::sum) r[i] += x[i];
      if (op == ReduceOp::min) r[i] = std::min(r[i], x[i]);
      if (op == ReduceOp::max) r[i] = std::max(r[i], x[i]);
    }
  }
  return r;
}

const char* op_name(ReduceOp op) {
  return op == ReduceOp::sum ? "sum" : op == ReduceOp::min ? "min" : "max";
}

template <typename T>
bool same_bytes(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

// Every check is an EXPECT: a rank must not leave a collective test early, or the others
// would wait for it.
template <typename T>
void check_allreduce(detail::MpiTransport& host, DeviceTransport& device, ElementType type,
                     ReduceOp op, std::size_t n, std::uint64_t seed) {
  SCOPED_TRACE(::testing::Message() << "element size " << sizeof(T) << ", " << op_name(op)
                                    << ", n = " << n << ", " << backend_name());
  const std::vector<T> mine = input<T>(seed, world_rank(), n);
  std::vector<T> expected = mine;
  host.allreduce(expected.data(), n, type, op);
  DeviceArray<T> d(n);
  d.upload(mine);
  device.allreduce(d.get(), n, type, op);
  device.synchronize("allreduce test");
  const std::vector<T> got = d.download();
  EXPECT_TRUE(same_bytes(got, expected)) << "the staged allreduce differs from MpiTransport's";
  if (const auto exact = exact_reduction<T>(seed, n, op)) {
    EXPECT_EQ(got, *exact);
  }
  EXPECT_TRUE(identical_on_all_ranks(got.data(), got.size() * sizeof(T), MPI_COMM_WORLD));
}

TEST(MpiStagedTransport, AllreduceMatchesTheHostTransport) {
  TW_REQUIRE_DEVICE();
  detail::MpiTransport host(MPI_COMM_WORLD, kTimeout);
  auto device = staged_over(host);
  EXPECT_EQ(device->rank(), world_rank());
  EXPECT_EQ(device->size(), world_size());
  EXPECT_EQ(device->device(), 0);
  EXPECT_EQ(std::string(device->name()), "staged(mpi)");
  // 20000 f32 = 80 KB goes round MpiTransport's ring; the others use MPI's collectives.
  for (std::size_t n : {std::size_t{1}, std::size_t{1000}, std::size_t{20000}}) {
    for (ReduceOp op : {ReduceOp::sum, ReduceOp::min, ReduceOp::max}) {
      check_allreduce<float>(host, *device, ElementType::f32, op, n, 11);
      check_allreduce<double>(host, *device, ElementType::f64, op, n, 12);
      check_allreduce<std::int64_t>(host, *device, ElementType::i64, op, n, 13);
    }
  }
  check_allreduce<std::uint64_t>(host, *device, ElementType::u64, ReduceOp::max, 100, 14);
}

std::vector<unsigned char> pattern(int rank, int block, std::size_t bytes) {
  std::vector<unsigned char> v(bytes);
  for (std::size_t i = 0; i < bytes; ++i)
    v[i] = static_cast<unsigned char>(rank * 37 + block * 11 + static_cast<int>(i) * 3 + 1);
  return v;
}

TEST(MpiStagedTransport, AllgatherMatchesTheHostTransport) {
  TW_REQUIRE_DEVICE();
  detail::MpiTransport host(MPI_COMM_WORLD, kTimeout);
  auto device = staged_over(host);
  const int p = world_size(), me = world_rank();
  const std::size_t bytes = 13;
  const std::vector<unsigned char> mine = pattern(me, 0, bytes);
  std::vector<unsigned char> expected(bytes * p), from_host(bytes * p);
  for (int r = 0; r < p; ++r) {
    const auto b = pattern(r, 0, bytes);
    std::memcpy(expected.data() + r * bytes, b.data(), bytes);
  }
  host.allgather(mine.data(), from_host.data(), bytes);
  EXPECT_EQ(from_host, expected);

  DeviceArray<unsigned char> send(bytes), recv(bytes * p);
  send.upload(mine);
  device->allgather(send.get(), recv.get(), bytes);
  EXPECT_EQ(recv.download(), expected);

  // In place: this rank's block already in the receive buffer.
  DeviceArray<unsigned char> in_place(bytes * p);
  std::vector<unsigned char> start(bytes * p, 0);
  std::memcpy(start.data() + me * bytes, mine.data(), bytes);
  in_place.upload(start);
  device->allgather(in_place.get() + me * bytes, in_place.get(), bytes);
  const auto got = in_place.download();
  EXPECT_EQ(got, expected);
  EXPECT_TRUE(identical_on_all_ranks(got.data(), got.size(), MPI_COMM_WORLD));
}

TEST(MpiStagedTransport, AlltoallMatchesTheHostTransport) {
  TW_REQUIRE_DEVICE();
  detail::MpiTransport host(MPI_COMM_WORLD, kTimeout);
  auto device = staged_over(host);
  const int p = world_size(), me = world_rank();
  const std::size_t bytes = 9;
  std::vector<unsigned char> send(bytes * p), expected(bytes * p), from_host(bytes * p);
  for (int j = 0; j < p; ++j) {
    const auto out = pattern(me, j, bytes), in = pattern(j, me, bytes);
    std::memcpy(send.data() + j * bytes, out.data(), bytes);
    std::memcpy(expected.data() + j * bytes, in.data(), bytes);
  }
  host.alltoall(send.data(), from_host.data(), bytes);
  EXPECT_EQ(from_host, expected);

  DeviceArray<unsigned char> d_send(bytes * p), d_recv(bytes * p);
  d_send.upload(send);
  device->alltoall(d_send.get(), d_recv.get(), bytes);
  EXPECT_EQ(d_recv.download(), expected);
  EXPECT_EQ(d_send.download(), send);  // the input is left alone
}

TEST(MpiStagedTransport, BroadcastFromEveryRoot) {
  TW_REQUIRE_DEVICE();
  detail::MpiTransport host(MPI_COMM_WORLD, kTimeout);
  auto device = staged_over(host);
  const std::size_t bytes = 1000;
  for (int root = 0; root < world_size(); ++root) {
    DeviceArray<unsigned char> d(bytes);
    d.upload(pattern(world_rank(), root, bytes));
    device->broadcast(d.get(), bytes, root);
    const auto got = d.download();
    EXPECT_EQ(got, pattern(root, root, bytes)) << "root " << root;
    EXPECT_TRUE(identical_on_all_ranks(got.data(), got.size(), MPI_COMM_WORLD));
  }
  // A root outside the group is refused on every rank, before any communication.
  DeviceArray<unsigned char> d(8);
  auto err = error_from([&] { device->broadcast(d.get(), 8, world_size()); });
  ASSERT_TRUE(err.has_value());
  EXPECT_EQ(err->code(), ErrorCode::invalid_argument);
}

TEST(MpiStagedTransport, BarrierSynchronizeStreamsAndEmptyCollectives) {
  TW_REQUIRE_DEVICE();
  detail::MpiTransport host(MPI_COMM_WORLD, kTimeout);
  auto device = staged_over(host);
  EXPECT_EQ(device->stream(), nullptr);
  void* stream = nullptr;
  TW_ASSERT_OK(kernels::stream_create(&stream));
  device->set_stream(stream);
  EXPECT_EQ(device->stream(), stream);

  DeviceArray<double> d(3);
  d.upload({1.0 + world_rank(), 2.0, -1.0 * world_rank()});
  device->allreduce(d.get(), 3, ElementType::f64, ReduceOp::sum);
  device->barrier();
  device->synchronize("test");
  const double p = world_size();
  EXPECT_EQ(d.download(), (std::vector<double>{p * (p + 1) / 2, 2 * p, -p * (p - 1) / 2}));

  // Empty collectives do nothing and leave the ranks in step.
  device->allreduce(d.get(), 0, ElementType::f32, ReduceOp::sum);
  device->allgather(d.get(), d.get(), 0);
  device->alltoall(d.get(), d.get(), 0);
  device->broadcast(d.get(), 0, 0);
  device->barrier();
  EXPECT_EQ(d.download(), (std::vector<double>{p * (p + 1) / 2, 2 * p, -p * (p - 1) / 2}));

  device->set_stream(nullptr);
  TW_ASSERT_OK(kernels::stream_destroy(stream));
}

TEST(MpiStagedTransport, PinnedStagingGrowsAndIsReused) {
  TW_REQUIRE_DEVICE();
  detail::MpiTransport host(MPI_COMM_WORLD, kTimeout);
  detail::StagedTransport device(host, 0);
  EXPECT_EQ(device.staging_bytes(), 0u);
  DeviceArray<float> big(5000), small(10);
  big.upload(std::vector<float>(5000, 1.0f));
  small.upload(std::vector<float>(10, 2.0f));
  device.allreduce(big.get(), 5000, ElementType::f32, ReduceOp::sum);
  const std::size_t grown = device.staging_bytes();
  EXPECT_GE(grown, 5000 * sizeof(float));
  device.allreduce(small.get(), 10, ElementType::f32, ReduceOp::sum);
  EXPECT_EQ(device.staging_bytes(), grown) << "a smaller collective must reuse the buffer";
  // alltoall stages send and receive: 2 P blocks.
  const std::size_t block = 4000;
  DeviceArray<unsigned char> a(block * world_size()), b(block * world_size());
  device.alltoall(a.get(), b.get(), block);
  EXPECT_GE(device.staging_bytes(), 2 * block * world_size());
  EXPECT_EQ(big.download(), std::vector<float>(5000, static_cast<float>(world_size())));
  EXPECT_EQ(small.download(), std::vector<float>(10, 2.0f * world_size()));
}

TEST(MpiStagedTransport, AbortRefusesLaterCalls) {
  TW_REQUIRE_DEVICE();
  detail::MpiTransport host(MPI_COMM_WORLD, kTimeout);
  auto device = staged_over(host);
  device->abort("told to by the test");
  DeviceArray<float> d(4);
  for (auto* call :
       {+[](DeviceTransport&t, float*p) { t.allreduce(p, 4, ElementType::f32, ReduceOp::sum); },
        +[](DeviceTransport&t, float*p) { t.broadcast(p, 16, 0); },
        +[](DeviceTransport&t, float*) { t.barrier(); },
        +[](DeviceTransport&t, float*) { t.synchronize("test step"); }}) {
    auto err = error_from([&] { call(*device, d.get()); });
    ASSERT_TRUE(err.has_value());
    EXPECT_EQ(err->code(), ErrorCode::transport_error);
    EXPECT_NE(std::string(err->what()).find("told to by the test"), std::string::npos)
        << err->what();
  }
}

// ---- the communicator's device transport ------------------------------------------------

TEST(MpiDeviceCommunicator, DeviceTransportIsCreatedLazilyOnce) {
  TW_REQUIRE_DEVICE();
  ScopedEnv env("THINWIRE_TRANSPORT", "mpi");
  Communicator comm = Communicator::from_mpi(MPI_COMM_WORLD);
  auto state = comm.state();
  EXPECT_TRUE(state->from_mpi);
  EXPECT_EQ(state->transport_setting, "mpi");
  EXPECT_EQ(state->existing_device_transport(), nullptr) << "created before it was asked for";
  DeviceTransport& t = state->device_transport(0);
  EXPECT_EQ(state->existing_device_transport(), &t);
  EXPECT_EQ(&state->device_transport(0), &t) << "a second call must return the same transport";
  EXPECT_EQ(std::string(t.name()), "staged(mpi)");
  EXPECT_EQ(t.device(), 0);
  EXPECT_EQ(t.rank(), world_rank());
  EXPECT_EQ(t.size(), world_size());

  DeviceArray<std::int64_t> d(1);
  d.upload({world_rank() + 1});
  t.allreduce(d.get(), 1, ElementType::i64, ReduceOp::sum);
  t.synchronize("test");
  EXPECT_EQ(d.download()[0], std::int64_t{world_size()} * (world_size() + 1) / 2);

  // One device per communicator: another one is refused, without breaking it.
  auto err = error_from([&] { state->device_transport(1); });
  ASSERT_TRUE(err.has_value());
  EXPECT_EQ(err->code(), ErrorCode::invalid_argument);
  EXPECT_NE(std::string(err->what()).find("device 0"), std::string::npos) << err->what();
  EXPECT_FALSE(comm.broken());
  t.barrier();
}

TEST(MpiDeviceCommunicator, AutoStagesInTheEmulation) {
  TW_REQUIRE_DEVICE();
  if (!kernels::emulated()) GTEST_SKIP() << "auto takes NCCL on a real device (see Nccl*)";
  ScopedEnv env("THINWIRE_TRANSPORT", "auto");
  Communicator comm = Communicator::from_mpi(MPI_COMM_WORLD);
  EXPECT_EQ(std::string(comm.state()->device_transport(0).name()), "staged(mpi)");
}

TEST(MpiDeviceCommunicator, BrokenCommunicatorRefusesDeviceCollectives) {
  TW_REQUIRE_DEVICE();
  ScopedEnv env("THINWIRE_TRANSPORT", "mpi");
  Communicator comm = Communicator::from_mpi(MPI_COMM_WORLD);
  DeviceTransport& t = comm.state()->device_transport(0);
  // A host failure every rank meets alike (no rank is left waiting): a bad root.
  std::vector<unsigned char> buf(8);
  auto err = error_from([&] { comm.host_transport().broadcast(buf.data(), 8, -1); });
  ASSERT_TRUE(err.has_value());
  ASSERT_TRUE(comm.broken());

  DeviceArray<float> d(4);
  err = error_from([&] { t.allreduce(d.get(), 4, ElementType::f32, ReduceOp::sum); });
  ASSERT_TRUE(err.has_value());
  EXPECT_EQ(err->code(), ErrorCode::transport_error);
  EXPECT_NE(std::string(err->what()).find("broken"), std::string::npos) << err->what();
  EXPECT_NE(std::string(err->what()).find("device allreduce"), std::string::npos) << err->what();
  for (auto* call : {+[](DeviceTransport&x, float*p) { x.allgather(p, p, 4); },
                     +[](DeviceTransport&x, float*p) { x.alltoall(p, p + 2, 4); },
                     +[](DeviceTransport&x, float*p) { x.broadcast(p, 4, 0); },
                     +[](DeviceTransport&x, float*) { x.barrier(); },
                     +[](DeviceTransport&x, float*) { x.synchronize("step 7"); }}) {
    err = error_from([&] { call(t, d.get()); });
    ASSERT_TRUE(err.has_value());
    EXPECT_EQ(err->code(), ErrorCode::transport_error);
  }

  // Broken before its device transport exists: creating one is refused too.
  Communicator other = Communicator::from_mpi(MPI_COMM_WORLD);
  err = error_from([&] { other.host_transport().broadcast(buf.data(), 8, world_size()); });
  ASSERT_TRUE(err.has_value());
  err = error_from([&] { other.state()->device_transport(0); });
  ASSERT_TRUE(err.has_value());
  EXPECT_EQ(err->code(), ErrorCode::transport_error);
  EXPECT_EQ(other.state()->existing_device_transport(), nullptr);
}

TEST(MpiDeviceCommunicator, DeviceFailureBreaksTheCommunicator) {
  TW_REQUIRE_DEVICE();
  ScopedEnv env("THINWIRE_TRANSPORT", "mpi");
  Communicator comm = Communicator::from_mpi(MPI_COMM_WORLD);
  DeviceTransport& t = comm.state()->device_transport(0);
  DeviceArray<float> d(4);
  // Refused by the device transport itself, alike on every rank.
  auto err = error_from([&] { t.broadcast(d.get(), 16, world_size() + 3); });
  ASSERT_TRUE(err.has_value());
  EXPECT_EQ(err->code(), ErrorCode::invalid_argument);
  EXPECT_TRUE(comm.broken());
  err = error_from([&] { comm.host_transport().barrier(); });
  ASSERT_TRUE(err.has_value());
  EXPECT_EQ(err->code(), ErrorCode::transport_error);
  EXPECT_NE(std::string(err->what()).find("broadcast root"), std::string::npos)
      << "the refusal should cite the first failure: " << err->what();

  // An explicit abort of the device transport breaks the communicator as well.
  Communicator other = Communicator::from_mpi(MPI_COMM_WORLD);
  other.state()->device_transport(0).abort("test abort");
  EXPECT_TRUE(other.broken());
}

TEST(MpiDeviceCommunicator, FrameworkTransportStagesAndRefusesNccl) {
  TW_REQUIRE_DEVICE();
  {
    ScopedEnv env("THINWIRE_TRANSPORT", "nccl");
    Communicator comm = Communicator::from_transport(
        std::make_shared<detail::MpiTransport>(MPI_COMM_WORLD, kTimeout));
    EXPECT_FALSE(comm.state()->from_mpi);
    auto err = error_from([&] { comm.state()->device_transport(0); });
    ASSERT_TRUE(err.has_value());
    EXPECT_EQ(err->code(), ErrorCode::unsupported);
    EXPECT_NE(std::string(err->what()).find("from_transport"), std::string::npos) << err->what();
    EXPECT_FALSE(comm.broken()) << "a refusal every rank meets alike must not break it";
  }
  ScopedEnv env("THINWIRE_TRANSPORT", "auto");
  Communicator comm = Communicator::from_transport(
      std::make_shared<detail::MpiTransport>(MPI_COMM_WORLD, kTimeout));
  DeviceTransport& t = comm.state()->device_transport(0);
  EXPECT_EQ(std::string(t.name()), "staged(mpi)");
  DeviceArray<float> d(2);
  d.upload({1.0f, static_cast<float>(world_rank())});
  t.allreduce(d.get(), 2, ElementType::f32, ReduceOp::max);
  EXPECT_EQ(d.download(), (std::vector<float>{1.0f, static_cast<float>(world_size() - 1)}));
}

TEST(MpiDeviceCommunicator, NcclSettingWithoutNccl) {
  TW_REQUIRE_DEVICE();
  if (detail::have_nccl() && !kernels::emulated())
    GTEST_SKIP() << "this build and backend have NCCL (see Nccl*)";
  ScopedEnv env("THINWIRE_TRANSPORT", "nccl");
  if (!detail::have_nccl()) {
    auto err = error_from([] { Communicator::from_mpi(MPI_COMM_WORLD); });
    ASSERT_TRUE(err.has_value());
    EXPECT_EQ(err->code(), ErrorCode::unsupported);
    return;
  }
  // NCCL in the build, but the emulated kernels cannot feed it.
  Communicator comm = Communicator::from_mpi(MPI_COMM_WORLD);
  auto err = error_from([&] { comm.state()->device_transport(0); });
  ASSERT_TRUE(err.has_value());
  EXPECT_EQ(err->code(), ErrorCode::unsupported);
  EXPECT_NE(std::string(err->what()).find("emulation"), std::string::npos) << err->what();
  EXPECT_FALSE(comm.broken());
}

// ---- choose_device_transport (one process) -----------------------------------------------

TEST(DeviceTransportChoice, FollowsTheSettingAndTheBuild) {
  TW_REQUIRE_DEVICE();
  using detail::choose_device_transport;
  const bool nccl_here = detail::have_nccl() && !kernels::emulated();
  EXPECT_EQ(choose_device_transport("mpi", true, 0), DeviceTransportKind::staged);
  EXPECT_EQ(choose_device_transport("mpi", false, 0), DeviceTransportKind::staged);
  EXPECT_EQ(choose_device_transport("auto", false, 0), DeviceTransportKind::staged);
  EXPECT_EQ(choose_device_transport("auto", true, 0),
            nccl_here ? DeviceTransportKind::nccl : DeviceTransportKind::staged);

  auto err = error_from([] { choose_device_transport("nccl", false, 0); });
  ASSERT_TRUE(err.has_value());
  EXPECT_EQ(err->code(), ErrorCode::unsupported);
  err = error_from([] { choose_device_transport("nccl", true, 0); });
  if (nccl_here) {
    EXPECT_FALSE(err.has_value());
    EXPECT_EQ(choose_device_transport("nccl", true, 0), DeviceTransportKind::nccl);
  } else {
    ASSERT_TRUE(err.has_value());
    EXPECT_EQ(err->code(), ErrorCode::unsupported);
  }
  err = error_from([] { choose_device_transport("tcp", true, 0); });
  ASSERT_TRUE(err.has_value());
  EXPECT_EQ(err->code(), ErrorCode::invalid_argument);
  EXPECT_NE(std::string(err->what()).find("auto, mpi, nccl"), std::string::npos) << err->what();
}

TEST(DeviceTransportChoice, NcclIsRefusedWhereItCannotRun) {
  TW_REQUIRE_DEVICE();
  if (detail::have_nccl() && !kernels::emulated()) GTEST_SKIP() << "NCCL can run here (see Nccl*)";
  detail::MpiTransport self(MPI_COMM_SELF, kTimeout);
  auto err = error_from(
      [&] { detail::make_device_transport(DeviceTransportKind::nccl, self, 0, kTimeout); });
  ASSERT_TRUE(err.has_value());
  EXPECT_EQ(err->code(), ErrorCode::unsupported);
}

}  // namespace
}  // namespace thinwire::test
