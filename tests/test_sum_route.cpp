// SumRouteChooser (which algorithm carries a large f32 sum) without MPI: the exploration
// schedule, the decision rule, the forced modes and the fallback after unequal bits.
#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <utility>

#include "test_support.hpp"
#include "transport/sum_route.hpp"

namespace thinwire::test {
namespace {

using detail::SumRoute;
using detail::SumRouteChooser;
using Mode = SumRouteChooser::Mode;

// Runs the exploration of one size class with the given per-call seconds for each route;
// returns the number of calls until record() asked for a decision.
int explore(SumRouteChooser& c, std::size_t bytes, double ring_s, double mpi_s) {
  for (int call = 1; call <= 2 * SumRouteChooser::kExplorationCalls; ++call) {
    const SumRouteChooser::Plan plan = c.next(bytes);
    EXPECT_EQ(plan.route, call % 2 == 1 ? SumRoute::ring : SumRoute::mpi) << call;
    EXPECT_EQ(plan.verify, plan.route == SumRoute::mpi) << call;
    // The warm-up calls are slow: they must not count.
    const double warm = call <= 2 ? 10.0 : 1.0;
    if (c.record(bytes, plan, warm * (plan.route == SumRoute::ring ? ring_s : mpi_s))) return call;
  }
  return -1;
}

TEST(SumRoute, AutoAlternatesThenKeepsTheFasterRoute) {
  SumRouteChooser c(Mode::automatic);
  const std::size_t big = std::size_t{64} << 20, small = std::size_t{1} << 20;
  SumRoute r;
  EXPECT_FALSE(c.settled(big, &r));
  ASSERT_EQ(explore(c, big, 2.0, 1.0), SumRouteChooser::kExplorationCalls);
  const SumRouteChooser::Timings t = c.timings(big);
  EXPECT_EQ(t.ring_s, 2.0);  // best timed call, warm-ups excluded
  EXPECT_EQ(t.mpi_s, 1.0);
  EXPECT_EQ(c.decide(big, t), SumRoute::mpi);
  ASSERT_TRUE(c.settled(big, &r));
  EXPECT_EQ(r, SumRoute::mpi);
  // Settled on MPI: the exploration's MPI calls were the kVerifiedCalls checked ones, so
  // later calls are not checked.
  static_assert(SumRouteChooser::kVerifiedCalls == 1 + SumRouteChooser::kTimedRounds);
  int verified_after = 0;
  for (int i = 0; i < 5; ++i) {
    const auto plan = c.next(big);
    EXPECT_EQ(plan.route, SumRoute::mpi);
    verified_after += plan.verify;
    EXPECT_FALSE(c.record(big, plan, 1.0));
  }
  EXPECT_EQ(verified_after, 0);
  // Another size class explores on its own; a near tie keeps the ring.
  EXPECT_FALSE(c.settled(small, &r));
  ASSERT_EQ(explore(c, small, 1.0, 0.99), SumRouteChooser::kExplorationCalls);
  EXPECT_EQ(c.decide(small, c.timings(small)), SumRoute::ring);
  EXPECT_FALSE(c.next(small).verify);
  // Sizes in the same power of two share the decision.
  EXPECT_EQ(SumRouteChooser::size_class(big), SumRouteChooser::size_class(big + big / 2));
  EXPECT_EQ(c.next(big + 12345).route, SumRoute::mpi);
}

TEST(SumRoute, TheSlowestRanksTimingsDecide) {
  SumRouteChooser c(Mode::automatic);
  const std::size_t bytes = 1 << 20;
  explore(c, bytes, 2.0, 1.0);
  // This rank saw MPI faster, but another rank was slower on it.
  EXPECT_EQ(c.decide(bytes, {2.0, 2.5}), SumRoute::ring);
}

TEST(SumRoute, ForcedModesNeverExplore) {
  SumRouteChooser ring(Mode::ring), mpi(Mode::mpi);
  const std::size_t bytes = 1 << 20;
  int verified = 0;
  for (int i = 0; i < 10; ++i) {
    const auto a = ring.next(bytes), b = mpi.next(bytes);
    EXPECT_EQ(a.route, SumRoute::ring);
    EXPECT_FALSE(a.verify);
    EXPECT_EQ(b.route, SumRoute::mpi);
    verified += b.verify;
    EXPECT_FALSE(ring.record(bytes, a, 1.0));
    EXPECT_FALSE(mpi.record(bytes, b, 1.0));
  }
  EXPECT_EQ(verified, SumRouteChooser::kVerifiedCalls);
}

TEST(SumRoute, UnequalBitsFromMpiMeanTheRingForever) {
  for (Mode m : {Mode::automatic, Mode::mpi}) {
    SumRouteChooser c(m);
    const std::size_t bytes = 1 << 20;
    if (m == Mode::automatic) {
      explore(c, bytes, 2.0, 1.0);
      c.decide(bytes, c.timings(bytes));
    }
    EXPECT_EQ(c.next(bytes).route, SumRoute::mpi);
    c.reject_mpi();
    for (std::size_t b : {bytes, bytes * 8}) {
      const auto plan = c.next(b);
      EXPECT_EQ(plan.route, SumRoute::ring);
      EXPECT_FALSE(plan.verify);
      EXPECT_FALSE(c.record(b, plan, 1.0));
      SumRoute r;
      ASSERT_TRUE(c.settled(b, &r));
      EXPECT_EQ(r, SumRoute::ring);
    }
  }
}

TEST(SumRoute, ModeFromTheEnvironment) {
  std::optional<Error> err;
  {
    ScopedEnv unset("THINWIRE_MPI_ALLREDUCE", nullptr);
    EXPECT_EQ(SumRouteChooser::mode_from_env(), Mode::ring);
  }
  for (const auto& [value, mode] :
       {std::pair{"auto", Mode::automatic}, {"ring", Mode::ring}, {"mpi", Mode::mpi}}) {
    ScopedEnv env("THINWIRE_MPI_ALLREDUCE", value);
    EXPECT_EQ(SumRouteChooser::mode_from_env(), mode) << value;
  }
  {
    ScopedEnv env("THINWIRE_MPI_ALLREDUCE", "nccl");
    err = error_from([] { SumRouteChooser::mode_from_env(); });
  }
  ASSERT_TRUE(err.has_value());
  EXPECT_EQ(err->code(), ErrorCode::invalid_argument);
  EXPECT_NE(std::string(err->what()).find("THINWIRE_MPI_ALLREDUCE"), std::string::npos);
}

}  // namespace
}  // namespace thinwire::test
