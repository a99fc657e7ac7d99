// Failure behaviour under mpiexec: spec changes between steps (adaptive decisions) that
// ranks do not agree on, a corrupt chunk that only its server sees, and a transport timeout
// whose late messages must not land in memory the program has moved on to.
#include <gtest/gtest.h>
#include <mpi.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <optional>
#include <string>

#include "common/hash.hpp"
#include "reducer/reducer_impl.hpp"
#include "test_support.hpp"
#include "transport/mpi_transport.hpp"

namespace thinwire::test {
namespace {

// The message without its "thinwire <component> error [rank R]: " prefix, which names the
// raising rank and so differs between ranks.
std::string without_prefix(const std::string& what) {
  const std::size_t at = what.find("]: ");
  return at == std::string::npos ? what : what.substr(at + 3);
}

// True on every rank iff every rank passes the same text.
bool same_text_on_all_ranks(const std::string& text) {
  const std::uint64_t h = detail::Hasher().str(text).value();
  return identical_on_all_ranks(&h, sizeof h, MPI_COMM_WORLD);
}

const std::vector<Layer>& layers() {
  static const std::vector<Layer> l = {{"a", {64, 64}}, {"b", {4096}}, {"c", {32}}};
  return l;
}

std::vector<std::vector<float>> gradients(int rank, std::uint64_t step) {
  std::vector<std::vector<float>> g;
  for (std::size_t l = 0; l < layers().size(); ++l)
    g.push_back(seeded_normal(31, rank, l, step, layers()[l].numel()));
  return g;
}

// ReducerImpl::set_layer_config is the hook adaptive policies use between steps. A change
// made on one rank only must fail every rank before any payload moves, naming the layer and
// both specs; the same change on every rank must just work.
TEST(MpiFailure, LayerSpecChangeOnOneRankFailsEveryRankNamingTheLayer) {
  const int me = world_rank(), p = world_size();
  detail::ReducerImpl reducer(Communicator::from_mpi(MPI_COMM_WORLD), layers(),
                              Config::parse("topk:0.1"));
  auto g = gradients(me, 0);
  reducer.allreduce(views(g));

  if (me == p - 1) reducer.set_layer_config(1, Config::parse("qsgd:4"));
  g = gradients(me, 1);
  auto err = error_from([&] { reducer.allreduce(views(g)); });
  ASSERT_TRUE(err.has_value());
  EXPECT_EQ(err->code(), ErrorCode::mismatch);
  const std::string what = err->what();
  EXPECT_NE(what.find("on layer 1"), std::string::npos) << what;
  EXPECT_NE(what.find("'b[4096]' spec 'qsgd:4'"), std::string::npos) << what;
  EXPECT_NE(what.find("'b[4096]' spec 'topk:0.1'"), std::string::npos) << what;
  EXPECT_TRUE(same_text_on_all_ranks(without_prefix(what)));
  EXPECT_EQ(reducer.step_, 1u);  // the failed step did not count

  // The same change everywhere (rank p-1 repeats it): steps run again, in step.
  reducer.set_layer_config(1, Config::parse("qsgd:4"));
  for (std::uint64_t s = 1; s < 3; ++s) {
    g = gradients(me, s);
    reducer.allreduce(views(g));
    ASSERT_TRUE(identical_on_all_ranks(g, MPI_COMM_WORLD));
  }
  EXPECT_EQ(reducer.stats_.layers[1].spec, "qsgd:4");
  EXPECT_EQ(reducer.stats_.layers[1].route, "qsgd");
  EXPECT_EQ(reducer.stats_.layers[0].route, "topk");
}

// Changes that agree on the spec but not on when they apply: one rank changes before
// step 1, the others before step 2.
TEST(MpiFailure, LayerSpecChangeAtDifferentStepsFailsEveryRank) {
  const int me = world_rank();
  detail::ReducerImpl reducer(Communicator::from_mpi(MPI_COMM_WORLD), layers(),
                              Config::parse("onebit"));
  auto g = gradients(me, 0);
  reducer.allreduce(views(g));
  if (me == 0) reducer.set_layer_config(0, Config::parse("powersgd:2"));
  g = gradients(me, 1);
  auto err = error_from([&] { reducer.allreduce(views(g)); });
  ASSERT_TRUE(err.has_value());
  EXPECT_EQ(err->code(), ErrorCode::mismatch);
  EXPECT_NE(std::string(err->what()).find("'a[64,64]' spec 'powersgd:2'"), std::string::npos)
      << err->what();
}

// Wraps the MPI transport and corrupts what rank `bad` sends to rank `victim` in the next
// alltoall, as a faulty rank or NIC would.
class CorruptingTransport final : public ForwardingTransport {
 public:
  CorruptingTransport(Communicator inner, int bad, int victim)
      : ForwardingTransport(std::move(inner), "corrupting"), bad_(bad), victim_(victim) {}
  void alltoall(const void* s, void* r, std::size_t b) override {
    if (armed && rank() == bad_) {
      std::vector<std::uint8_t> copy(static_cast<const std::uint8_t*>(s),
                                     static_cast<const std::uint8_t*>(s) + b * size());
      copy[b * static_cast<std::size_t>(victim_) + 8] ^= 0x01;  // the header's n
      armed = false;
      ForwardingTransport::alltoall(copy.data(), r, b);
      return;
    }
    ForwardingTransport::alltoall(s, r, b);
  }
  bool armed = false;

 private:
  int bad_, victim_;
};

// Only the victim (the server of the corrupt chunk) can see the damage. Every rank must
// raise the same error at once, not wait for the victim until THINWIRE_TIMEOUT_S.
TEST(MpiFailure, CorruptChunkSeenByOneServerFailsEveryRankAtOnce) {
  const int me = world_rank(), p = world_size();
  for (const char* spec : {"onebit", "qsgd:3,ef=none"}) {
    auto transport =
        std::make_shared<CorruptingTransport>(Communicator::from_mpi(MPI_COMM_WORLD), p - 1, 0);
    Communicator comm = Communicator::from_transport(transport);
    Reducer reducer(comm, layers(), Config::parse(spec));
    auto g = gradients(me, 0);
    reducer.allreduce(views(g));
    transport->armed = true;
    g = gradients(me, 1);
    const auto start = std::chrono::steady_clock::now();
    auto err = error_from([&] { reducer.allreduce(views(g)); });
    const double took =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    ASSERT_TRUE(err.has_value()) << spec;
    EXPECT_EQ(err->code(), ErrorCode::invalid_argument) << err->what();
    EXPECT_LT(took, 10.0) << "waited for the server: " << err->what();
    const std::string what = without_prefix(err->what());
    EXPECT_NE(what.find("rank 0 rejected a chunk it serves"), std::string::npos) << what;
    EXPECT_NE(what.find("payload from rank " + std::to_string(p - 1) + " for layer 'a'"),
              std::string::npos)
        << what;
    EXPECT_TRUE(same_text_on_all_ranks(what)) << what;
    EXPECT_FALSE(comm.broken());
    // The step failed on every rank alike: the next one runs.
    g = gradients(me, 2);
    reducer.allreduce(views(g));
    EXPECT_TRUE(identical_on_all_ranks(g, MPI_COMM_WORLD));
  }
}

// A timed-out receive is cancelled: a message that arrives after the deadline must not land
// in a buffer the program has moved on to (freed, or reused for other data).
TEST(MpiFailure, MessageArrivingAfterATimeoutDoesNotLandInTheBuffer) {
  const int me = world_rank(), p = world_size(), late = p - 1;
  // The rank a timed-out allgather names. Directly: the late one. In rounds (small blocks on
  // many ranks: mpi_np8_rounds and mpi_np11_rounds set THINWIRE_MPI_LOG_ALLGATHER_MIN_RANKS=2) rank
  // r completes the round of distance d once ranks r .. r+2d-1 have all joined, so it waits in
  // the first round whose range reaches the late rank, for rank r+d, which forwards it.
  auto awaited = [&](const detail::MpiTransport& t, int rank, std::size_t bytes) {
    if (!detail::MpiTransport::allgather_in_log_rounds(bytes, p, t.log_allgather_min_ranks()))
      return late;
    const int ahead = (late - rank + p) % p;
    int d = 1;
    while (2 * d <= ahead) d *= 2;
    return (rank + d) % p;
  };
  for (std::size_t bytes : {std::size_t{64}, std::size_t{256 * 1024}}) {  // eager, rendezvous
    detail::MpiTransport transport(MPI_COMM_WORLD, 0.3);
    std::vector<unsigned char> send(bytes, static_cast<unsigned char>(me + 1));
    std::vector<unsigned char> recv(bytes * static_cast<std::size_t>(p), 0);
    if (me == late) usleep(1000 * 1000);
    auto err = error_from([&] { transport.allgather(send.data(), recv.data(), bytes); });
    if (me != late) {
      ASSERT_TRUE(err.has_value()) << bytes;
      EXPECT_EQ(err->code(), ErrorCode::timeout);
      EXPECT_NE(std::string(err->what())
                    .find("nothing arrived from rank(s) " +
                          std::to_string(awaited(transport, me, bytes))),
                std::string::npos)
          << err->what();
      // The program moves on: the buffer holds other data now. Let MPI make progress while
      // the late rank sends.
      std::fill(recv.begin(), recv.end(), 0xab);
      for (int i = 0; i < 1500; ++i) {
        int flag = 0;
        MPI_Iprobe(MPI_ANY_SOURCE, MPI_ANY_TAG, MPI_COMM_WORLD, &flag, MPI_STATUS_IGNORE);
        usleep(1000);
      }
      EXPECT_EQ(std::count(recv.begin(), recv.end(), 0xab), static_cast<long>(recv.size()))
          << "a late message was written into the buffer (" << bytes << " bytes)";
    }
    MPI_Barrier(MPI_COMM_WORLD);
  }
}

// MPI's own allreduce (THINWIRE_MPI_ALLREDUCE=mpi) cannot be cancelled: after a timeout it
// may still complete and write its receive buffer, which must be thinwire's abandoned copy,
// never the caller's memory.
TEST(MpiFailure, MpiRouteTimeoutLeavesTheCallersBufferAlone) {
  const int me = world_rank(), p = world_size(), late = p - 1;
  if (p < 2) GTEST_SKIP() << "needs 2 ranks";
  std::optional<detail::MpiTransport> built;
  {
    ScopedEnv env("THINWIRE_MPI_ALLREDUCE", "mpi");
    built.emplace(MPI_COMM_WORLD, 0.3);
  }
  detail::MpiTransport& transport = *built;
  ASSERT_EQ(transport.sum_routes().mode(), detail::SumRouteChooser::Mode::mpi);
  const std::size_t n = 64 * 1024;  // 256 KiB: above the ring threshold, so the route decides
  std::vector<float> data(n, static_cast<float>(me + 1));
  if (me == late) usleep(1000 * 1000);
  auto err =
      error_from([&] { transport.allreduce(data.data(), n, ElementType::f32, ReduceOp::sum); });
  if (me != late) {
    ASSERT_TRUE(err.has_value());
    EXPECT_EQ(err->code(), ErrorCode::timeout);
    EXPECT_NE(std::string(err->what()).find("allreduce"), std::string::npos) << err->what();
    // The program moves on; MPI progresses the abandoned collective once the late rank joins.
    std::fill(data.begin(), data.end(), -7.0f);
    for (int i = 0; i < 1500; ++i) {
      int flag = 0;
      MPI_Iprobe(MPI_ANY_SOURCE, MPI_ANY_TAG, MPI_COMM_WORLD, &flag, MPI_STATUS_IGNORE);
      usleep(1000);
    }
    EXPECT_EQ(std::count(data.begin(), data.end(), -7.0f), static_cast<long>(n))
        << "the late collective wrote into the caller's buffer";
  }
  MPI_Barrier(MPI_COMM_WORLD);
}

}  // namespace
}  // namespace thinwire::test
