// MpiTransport collectives under mpiexec: values, identical bits, sizes around the ring
// threshold and not divisible by the number of ranks.
#include <gtest/gtest.h>
#include <mpi.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <optional>
#include <string>

#include "test_support.hpp"
#include "transport/average.hpp"
#include "transport/communicator_state.hpp"
#include "transport/mpi_transport.hpp"

namespace thinwire::test {
namespace {

int rank_of(const Communicator& c) {
  return c.rank();
}

TEST(MpiCommunicator, BadSettingOnOneRankFailsEveryRankAtOnce) {
  int me = 0, p = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &me);
  MPI_Comm_size(MPI_COMM_WORLD, &p);
  // A typo in one node's environment: the last rank's THINWIRE_TIMEOUT_S is not a number.
  if (me == p - 1) setenv("THINWIRE_TIMEOUT_S", "soon", 1);
  const double start = MPI_Wtime();
  const auto err = error_from([] { Communicator::from_mpi(MPI_COMM_WORLD); });
  if (me == p - 1) unsetenv("THINWIRE_TIMEOUT_S");
  ASSERT_TRUE(err.has_value());
  EXPECT_EQ(err->code(), ErrorCode::invalid_argument);
  const std::string what = err->what();
  EXPECT_NE(what.find("rank " + std::to_string(p - 1) + "'s environment"), std::string::npos)
      << what;
  EXPECT_NE(what.find("THINWIRE_TIMEOUT_S='soon'"), std::string::npos) << what;
  // Every rank at once, not at the others' deadline (120 s in the tests).
  EXPECT_LT(MPI_Wtime() - start, 60.0);
  // The ranks are still in step: the next communicator builds.
  const Communicator comm = Communicator::from_mpi(MPI_COMM_WORLD);
  EXPECT_EQ(comm.size(), p);
  // Unknown THINWIRE_TRANSPORT on rank 0 alone: the same, with rank 0 named.
  if (me == 0) setenv("THINWIRE_TRANSPORT", "tcp", 1);
  const auto bad_transport = error_from([] { Communicator::from_mpi(MPI_COMM_WORLD); });
  if (me == 0) unsetenv("THINWIRE_TRANSPORT");
  ASSERT_TRUE(bad_transport.has_value());
  EXPECT_NE(std::string(bad_transport->what()).find("rank 0's environment"), std::string::npos)
      << bad_transport->what();
  // The MPI transport's own settings too (read while it is built).
  if (me == p - 1) setenv("THINWIRE_MPI_ALLREDUCE", "fastest", 1);
  const auto bad_route = error_from([] { Communicator::from_mpi(MPI_COMM_WORLD); });
  if (me == p - 1) unsetenv("THINWIRE_MPI_ALLREDUCE");
  ASSERT_TRUE(bad_route.has_value());
  EXPECT_EQ(bad_route->code(), ErrorCode::invalid_argument);
  EXPECT_NE(std::string(bad_route->what()).find("THINWIRE_MPI_ALLREDUCE='fastest'"),
            std::string::npos)
      << bad_route->what();
  for (const char* bad : {"many", "-4", "2.5"}) {
    if (me == p - 1) setenv("THINWIRE_MPI_LOG_ALLGATHER_MIN_RANKS", bad, 1);
    const auto bad_rounds = error_from([] { Communicator::from_mpi(MPI_COMM_WORLD); });
    if (me == p - 1) unsetenv("THINWIRE_MPI_LOG_ALLGATHER_MIN_RANKS");
    ASSERT_TRUE(bad_rounds.has_value()) << bad;
    EXPECT_EQ(bad_rounds->code(), ErrorCode::invalid_argument);
    EXPECT_NE(std::string(bad_rounds->what()).find("THINWIRE_MPI_LOG_ALLGATHER_MIN_RANKS"),
              std::string::npos)
        << bad_rounds->what();
  }
  EXPECT_EQ(Communicator::from_mpi(MPI_COMM_WORLD).size(), p);
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
  std::optional<Communicator> segmented, whole;
  {
    const std::string asked = std::to_string(1000 + 24 * me);
    ScopedEnv env("THINWIRE_MPI_SEGMENT_BYTES", asked.c_str());
    segmented.emplace(Communicator::from_mpi(MPI_COMM_WORLD));
  }
  {
    ScopedEnv env("THINWIRE_MPI_SEGMENT_BYTES", "0");
    whole.emplace(Communicator::from_mpi(MPI_COMM_WORLD));
  }
  auto& seg = dynamic_cast<detail::MpiTransport&>(segmented->state()->host.inner());
  auto& one = dynamic_cast<detail::MpiTransport&>(whole->state()->host.inner());
  EXPECT_EQ(seg.segment_bytes(), 1000u);  // rank 0's, the smallest
  EXPECT_EQ(one.segment_bytes(), 0u);
  const int p = world_size();
  // 1001 floats: a block below MpiTransport::kLogAllgatherMaxBlockBytes in segments, whose
  // allgather goes in rounds under mpi_np8_rounds and mpi_np11_rounds (rounds from 2 ranks).
  for (std::size_t n : {std::size_t{0}, std::size_t{3}, std::size_t{1001}, std::size_t{16385},
                        std::size_t{100003}}) {
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

// THINWIRE_MPI_LOG_ALLGATHER_MIN_RANKS: ranks asking for different values agree on the
// smallest (0, never, counting as the largest), and small allgathers in rounds give the same
// bytes as directly, whole or in segments.
TEST(MpiTransport, AllgatherInRoundsGivesTheSameBytesAsDirectly) {
  const int me = world_rank(), p = world_size();
  auto built = [](const char* rounds, const char* segment) {
    ScopedEnv env("THINWIRE_MPI_LOG_ALLGATHER_MIN_RANKS", rounds);
    ScopedEnv seg("THINWIRE_MPI_SEGMENT_BYTES", segment);
    return Communicator::from_mpi(MPI_COMM_WORLD);
  };
  const std::string mine = std::to_string(2 + me), never_on_0 = me == 0 ? "0" : "5";
  Communicator direct = built("0", "0"), rounds = built(mine.c_str(), "0"),
               segmented = built("2", "1000"), mixed = built(never_on_0.c_str(), "0");
  auto& d = dynamic_cast<detail::MpiTransport&>(direct.state()->host.inner());
  auto& r = dynamic_cast<detail::MpiTransport&>(rounds.state()->host.inner());
  auto& s = dynamic_cast<detail::MpiTransport&>(segmented.state()->host.inner());
  EXPECT_EQ(d.log_allgather_min_ranks(), 0);
  EXPECT_EQ(r.log_allgather_min_ranks(), 2);  // rank 0's, the smallest
  EXPECT_EQ(
      dynamic_cast<detail::MpiTransport&>(mixed.state()->host.inner()).log_allgather_min_ranks(),
      p > 1 ? 5 : 0);
  EXPECT_EQ(Communicator::from_mpi(MPI_COMM_WORLD).host_transport().size(), p);
  for (std::size_t bytes : {std::size_t{1}, std::size_t{256}, std::size_t{4099},
                            detail::MpiTransport::kLogAllgatherMaxBlockBytes - 1,
                            detail::MpiTransport::kLogAllgatherMaxBlockBytes}) {
    std::vector<unsigned char> send(bytes);
    for (std::size_t i = 0; i < bytes; ++i) send[i] = static_cast<unsigned char>(me * 131 + i * 7);
    std::vector<unsigned char> a(bytes * p), b(bytes * p), c(bytes * p, 0xee);
    d.allgather(send.data(), a.data(), bytes);
    r.allgather(send.data(), b.data(), bytes);
    // In place: this rank's block already where it belongs.
    std::copy(send.begin(), send.end(), c.begin() + static_cast<std::ptrdiff_t>(me * bytes));
    s.allgather(c.data() + me * bytes, c.data(), bytes);
    for (int q = 0; q < p; ++q)
      for (std::size_t i = 0; i < bytes; ++i)
        ASSERT_EQ(a[q * bytes + i], static_cast<unsigned char>(q * 131 + i * 7)) << bytes;
    ASSERT_EQ(a, b) << bytes;
    ASSERT_EQ(a, c) << bytes;
  }
}

// A communicator built with THINWIRE_MPI_ALLREDUCE=`mode` on this rank.
Communicator with_sum_route(const std::string& mode) {
  ScopedEnv env("THINWIRE_MPI_ALLREDUCE", mode.c_str());
  return Communicator::from_mpi(MPI_COMM_WORLD);
}

detail::MpiTransport& mpi_of(Communicator& c) {
  return dynamic_cast<detail::MpiTransport&>(c.state()->host.inner());
}

// Every route (thinwire's ring, MPI's allreduce, and auto through its exploration and after
// it) gives every rank the same bits, the right sum, and an average whose bits are the sum's
// divided by P; auto settles every size class on the same route on every rank.
TEST(MpiTransport, EverySumRouteGivesIdenticalCorrectBits) {
  if (world_size() < 2) GTEST_SKIP() << "one rank sums nothing: no route is taken";
  const int me = world_rank(), p = world_size();
  using detail::SumRoute;
  for (const std::string mode : {"ring", "mpi", "auto"}) {
    Communicator comm = with_sum_route(mode);
    detail::MpiTransport& t = mpi_of(comm);
    EXPECT_STREQ(detail::SumRouteChooser::name(t.sum_routes().mode()), mode.c_str());
    for (std::size_t n : {std::size_t{16384}, std::size_t{100003}, std::size_t{1} << 18}) {
      std::vector<double> exact(n, 0.0);
      for (int r = 0; r < p; ++r) {
        const auto xr = seeded_normal(21, r, n, 0, n);
        for (std::size_t i = 0; i < n; ++i) exact[i] += xr[i];
      }
      for (int call = 0; call < detail::SumRouteChooser::kExplorationCalls + 2; ++call) {
        const std::vector<float> x = seeded_normal(21, me, n, 0, n);
        std::vector<float> sum = x, avg = x;
        SumRoute r;
        const bool settled = t.sum_routes().settled(n * 4, &r);
        t.allreduce(sum.data(), n, ElementType::f32, ReduceOp::sum);
        ASSERT_TRUE(identical_on_all_ranks(sum.data(), n * 4, MPI_COMM_WORLD)) << mode << n;
        for (std::size_t i = 0; i < n; ++i)
          ASSERT_NEAR(sum[i], exact[i], 1e-5 * (1 + std::fabs(exact[i]))) << mode << n << i;
        t.average_f32(avg.data(), n);
        ASSERT_TRUE(identical_on_all_ranks(avg.data(), n * 4, MPI_COMM_WORLD)) << mode << n;
        // Settled before the sum, the average took the same route: the bits of sum / P.
        if (settled) {
          for (std::size_t i = 0; i < n; ++i)
            ASSERT_EQ(avg[i], sum[i] / static_cast<float>(p)) << mode << n << " " << i;
        }
      }
      SumRoute r;
      ASSERT_TRUE(t.sum_routes().settled(n * 4, &r)) << mode << n;
      if (mode != "auto") {
        EXPECT_EQ(r == SumRoute::mpi, mode == "mpi");
      }
      const int route = static_cast<int>(r);
      ASSERT_TRUE(identical_on_all_ranks(&route, sizeof route, MPI_COMM_WORLD)) << mode << n;
      EXPECT_FALSE(t.sum_routes().mpi_rejected());  // Open MPI gives every rank the same bits
    }
  }
}

// make_identical() sees unequal bits on every rank at once and repairs them from rank 0.
TEST(MpiTransport, UnequalResultsAreFoundAndRepairedFromRankZero) {
  Communicator comm = Communicator::from_mpi(MPI_COMM_WORLD);
  detail::MpiTransport& t = mpi_of(comm);
  const int me = world_rank();
  const std::size_t n = 50001;
  std::vector<float> same = seeded_normal(22, 0, n, 0, n);
  EXPECT_TRUE(t.make_identical(same.data(), n * 4));
  std::vector<float> differ = same;
  if (world_size() > 1) differ[n - 1 - static_cast<std::size_t>(me)] += 1.0f;  // one element
  EXPECT_EQ(t.make_identical(differ.data(), n * 4), world_size() == 1);
  ASSERT_TRUE(identical_on_all_ranks(differ.data(), n * 4, MPI_COMM_WORLD));
  std::vector<float> rank0 = same;
  if (world_size() > 1) rank0[n - 1] += 1.0f;
  EXPECT_EQ(differ, rank0);
}

// Ranks asking for different routes would post different collectives: all take the ring.
TEST(MpiTransport, RanksAskingForDifferentSumRoutesAllTakeTheRing) {
  if (world_size() < 2) GTEST_SKIP() << "needs 2 ranks";
  Communicator comm = with_sum_route(world_rank() == 0 ? "mpi" : "auto");
  detail::MpiTransport& t = mpi_of(comm);
  EXPECT_EQ(t.sum_routes().mode(), detail::SumRouteChooser::Mode::ring);
  std::vector<float> x(1 << 16, 1.0f);
  t.allreduce(x.data(), x.size(), ElementType::f32, ReduceOp::sum);
  EXPECT_EQ(x[12345], static_cast<float>(world_size()));
}

// Spans of a concatenation, averaged where they are or packed (a small sum; one rank's
// transport; a transport that cannot take spans): the bits of averaging the packed buffer,
// and a non-finite element found at its index in the concatenation.
TEST(MpiTransport, SpansAverageLikeTheirConcatenation) {
  Communicator world = Communicator::from_mpi(MPI_COMM_WORLD);
  Communicator self = Communicator::from_mpi(MPI_COMM_SELF);
  const int me = rank_of(world);
  for (Communicator* comm : {&world, &self}) {
    Transport& t = comm->host_transport();
    for (std::size_t big : {std::size_t{5000}, std::size_t{40000}}) {  // below / above 64 KiB
      const std::size_t sizes[] = {big, 3, 0, big + 1};
      std::vector<std::vector<float>> parts;
      std::vector<float> concat;
      for (std::size_t k = 0; k < 4; ++k) {
        parts.push_back(seeded_normal(17, me, k, big, sizes[k]));
        concat.insert(concat.end(), parts.back().begin(), parts.back().end());
      }
      parts[3][7] = std::numeric_limits<float>::infinity();
      concat[big + 3 + 7] = std::numeric_limits<float>::infinity();
      std::vector<detail::F32Span> spans;
      for (auto& part : parts) spans.push_back({part.data(), part.size()});
      std::vector<float> scratch;
      const detail::NonFiniteSum found =
          detail::allreduce_average_f32_spans(t, spans, true, scratch);
      const detail::NonFiniteSum whole =
          detail::allreduce_average_f32_checked(t, concat.data(), concat.size());
      std::size_t off = 0;
      for (const auto& part : parts) {
        if (!part.empty()) {
          ASSERT_EQ(0, std::memcmp(part.data(), concat.data() + off, part.size() * 4)) << big;
        }
        off += part.size();
      }
      EXPECT_EQ(found.index, big + 3 + 7) << big;
      EXPECT_EQ(found.index, whole.index) << big;
      EXPECT_EQ(found.rank, whole.rank) << big;
    }
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
