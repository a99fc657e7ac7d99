// MpiTransport collectives under mpiexec: values, identical bits, sizes around the ring
// threshold and not divisible by the number of ranks.
#include <gtest/gtest.h>
#include <mpi.h>

#include <cmath>
#include <cstring>
#include <numeric>
#include <string>

#include "test_support.hpp"
#include "transport/communicator_state.hpp"
#include "transport/mpi_transport.hpp"

namespace thinwire::test {
namespace {

int rank_of(const Communicator& c) {
  return c.rank();
}

TEST(MpiTransport, SumOfFloatsIsCorrectAndIdenticalForManySizes) {
  Communicator comm = Communicator::from_mpi(MPI_COMM_WORLD);
  Transport& t = comm.host_transport();
  const int p = comm.size(), me = rank_of(comm);
  // Around the 64 KiB ring threshold, and not divisible by 2, 3, 4.
  for (std::size_t n :
       {std::size_t{0}, std::size_t{1}, std::size_t{7}, std::size_t{16383}, std::size_t{16384},
        std::size_t{16385}, std::size_t{100003}, std::size_t{1} << 20}) {
    std::vector<float> x = seeded_normal(11, me, n, 0, n);
    std::vector<double> exact(n, 0.0);
    for (int r = 0; r < p; ++r) {
      const auto xr = seeded_normal(11, r, n, 0, n);
      for (std::size_t i = 0; i < n; ++i) exact[i] += xr[i];
    }
    t.allreduce(x.data(), n, ElementType::f32, ReduceOp::sum);
    ASSERT_TRUE(identical_on_all_ranks(x.data(), n * 4, MPI_COMM_WORLD)) << n;
    for (std::size_t i = 0; i < n; ++i)
      ASSERT_NEAR(x[i], exact[i], 1e-5 * (1 + std::fabs(exact[i]))) << n << " " << i;
  }
}

// THINWIRE_MPI_SEGMENT_BYTES cuts large transfers into messages: ranks asking for different
// sizes agree on the smallest, and every collective gives the same bits as whole messages.
TEST(MpiTransport, SegmentedMessagesGiveTheSameResults) {
  const int me = world_rank();
  const char* old = std::getenv("THINWIRE_MPI_SEGMENT_BYTES");
  const std::string saved = old ? old : "";
  setenv("THINWIRE_MPI_SEGMENT_BYTES", std::to_string(1000 + 24 * me).c_str(), 1);
  Communicator segmented = Communicator::from_mpi(MPI_COMM_WORLD);
  setenv("THINWIRE_MPI_SEGMENT_BYTES", "0", 1);
  Communicator whole = Communicator::from_mpi(MPI_COMM_WORLD);
  if (old)
    setenv("THINWIRE_MPI_SEGMENT_BYTES", saved.c_str(), 1);
  else
    unsetenv("THINWIRE_MPI_SEGMENT_BYTES");
  auto& seg = dynamic_cast<detail::MpiTransport&>(segmented.state()->host.inner());
  auto& one = dynamic_cast<detail::MpiTransport&>(whole.state()->host.inner());
  EXPECT_EQ(seg.segment_bytes(), 1000u);  // rank 0's, the smallest
  EXPECT_EQ(one.segment_bytes(), 0u);
  const int p = world_size();
  for (std::size_t n : {std::size_t{0}, std::size_t{3}, std::size_t{16385}, std::size_t{100003}}) {
    std::vector<float> a = seeded_normal(12, me, n, 0, n), b = a;
    seg.allreduce(a.data(), n, ElementType::f32, ReduceOp::sum);
    one.allreduce(b.data(), n, ElementType::f32, ReduceOp::sum);
    ASSERT_EQ(a, b) << n;
    std::vector<float> block = seeded_normal(13, me, n, 0, n * static_cast<std::size_t>(p));
    std::vector<float> ra(block.size()), rb(block.size());
    seg.alltoall(block.data(), ra.data(), n * 4);
    one.alltoall(block.data(), rb.data(), n * 4);
    ASSERT_EQ(ra, rb) << n;
    seg.allgather(block.data(), ra.data(), n * 4);
    one.allgather(block.data(), rb.data(), n * 4);
    ASSERT_EQ(ra, rb) << n;
  }
}

TEST(MpiTransport, OtherTypesAndOps) {
  Communicator comm = Communicator::from_mpi(MPI_COMM_WORLD);
  Transport& t = comm.host_transport();
  const int p = comm.size(), me = comm.rank();
  std::vector<double> d = {1.5 * me, -2.0};
  t.allreduce(d.data(), 2, ElementType::f64, ReduceOp::sum);
  EXPECT_DOUBLE_EQ(d[0], 1.5 * p * (p - 1) / 2);
  EXPECT_DOUBLE_EQ(d[1], -2.0 * p);
  std::vector<std::int64_t> i = {-me, me};
  t.allreduce(i.data(), 2, ElementType::i64, ReduceOp::min);
  EXPECT_EQ(i[0], -(p - 1));
  EXPECT_EQ(i[1], 0);
  std::vector<std::uint64_t> u = {static_cast<std::uint64_t>(me) << 40};
  t.allreduce(u.data(), 1, ElementType::u64, ReduceOp::max);
  EXPECT_EQ(u[0], static_cast<std::uint64_t>(p - 1) << 40);
}

TEST(MpiTransport, AllgatherAlltoallBroadcastBarrier) {
  Communicator comm = Communicator::from_mpi(MPI_COMM_WORLD);
  Transport& t = comm.host_transport();
  const int p = comm.size(), me = comm.rank();
  for (std::size_t bytes : {std::size_t{1}, std::size_t{13}, std::size_t{70000}}) {
    std::vector<unsigned char> send(bytes), recv(bytes * p);
    for (std::size_t i = 0; i < bytes; ++i) send[i] = static_cast<unsigned char>(me * 31 + i);
    t.allgather(send.data(), recv.data(), bytes);
    for (int r = 0; r < p; ++r)
      for (std::size_t i = 0; i < bytes; ++i)
        ASSERT_EQ(recv[r * bytes + i], static_cast<unsigned char>(r * 31 + i));

    std::vector<unsigned char> a2a(bytes * p), out(bytes * p);
    for (int j = 0; j < p; ++j)
      for (std::size_t i = 0; i < bytes; ++i)
        a2a[j * bytes + i] = static_cast<unsigned char>(me * 7 + j * 3 + i);
    t.alltoall(a2a.data(), out.data(), bytes);
    for (int r = 0; r < p; ++r)
      for (std::size_t i = 0; i < bytes; ++i)
        ASSERT_EQ(out[r * bytes + i], static_cast<unsigned char>(r * 7 + me * 3 + i));

    std::vector<unsigned char> b(bytes, static_cast<unsigned char>(me));
    t.broadcast(b.data(), bytes, p - 1);
    for (unsigned char c : b) ASSERT_EQ(c, static_cast<unsigned char>(p - 1));
  }
  t.barrier();
  auto err = error_from([&] {
    unsigned char c = 0;
    t.broadcast(&c, 1, p);
  });
  ASSERT_TRUE(err.has_value());
  EXPECT_EQ(err->code(), ErrorCode::invalid_argument);
}

}  // namespace
}  // namespace thinwire::test
