// auto's trial of its choice against dense (model/auto_trial.hpp): the schedule, which steps
// are timed, and the decision from the slowest rank's times.
#include <gtest/gtest.h>

#include <limits>

#include "model/auto_trial.hpp"

namespace thinwire::test {
namespace {

using detail::model::AutoTrial;
using Arm = AutoTrial::Arm;
constexpr double kInf = std::numeric_limits<double>::infinity();

TEST(AutoTrial, RunsEachArmUntimedOnceThenTwiceTimedAlternating) {
  AutoTrial trial;
  EXPECT_FALSE(trial.active());
  const std::vector<Config> chosen = {Config::parse("onebit"), Config::parse("none")};
  const std::vector<Config> dense(2, Config::parse("none"));
  trial.start(chosen, dense);
  const Arm expected[] = {Arm::chosen, Arm::dense, Arm::dense,
                          Arm::chosen, Arm::dense, Arm::chosen};
  for (int k = 0; k < AutoTrial::kSteps; ++k) {
    ASSERT_TRUE(trial.active()) << k;
    EXPECT_EQ(trial.next_arm(), expected[k]) << k;
    EXPECT_EQ(trial.next_specs(), expected[k] == Arm::chosen ? chosen : dense) << k;
    // Step k took 10 + k seconds; the last records the end of the schedule.
    EXPECT_EQ(trial.record(10.0 + k, false), k == AutoTrial::kSteps - 1) << k;
  }
  EXPECT_FALSE(trial.active());
  EXPECT_FALSE(trial.record(99.0, false));                       // nothing after the end
  const std::array<double, 4> timed = {12.0, 13.0, 14.0, 15.0};  // dense, chosen, dense, chosen
  EXPECT_EQ(trial.timed(), timed);
}

TEST(AutoTrial, SkippedStepsAreNotMeasuredAndCancelEnds) {
  AutoTrial trial;
  trial.start({Config::parse("onebit")}, {Config::parse("none")});
  for (int k = 0; k < AutoTrial::kSteps; ++k) trial.record(1.0, k == 3);
  EXPECT_EQ(trial.timed()[1], kInf);
  EXPECT_EQ(trial.timed()[3], 1.0);
  trial.start({Config::parse("onebit")}, {Config::parse("none")});
  trial.cancel();
  EXPECT_FALSE(trial.active());
}

TEST(AutoTrial, KeepsTheChoiceUnlessDenseWasFasterOnBothMeasuredArms) {
  // {dense, chosen, dense, chosen}: each arm's best of 2 decides.
  EXPECT_TRUE(AutoTrial::keep_chosen({2.0, 1.0, 2.0, 1.0}));
  EXPECT_FALSE(AutoTrial::keep_chosen({1.0, 2.0, 1.0, 2.0}));
  EXPECT_FALSE(AutoTrial::keep_chosen({1.0, 1.0, 1.0, 1.0}));   // a tie goes dense
  EXPECT_TRUE(AutoTrial::keep_chosen({3.0, 5.0, 1.5, 1.4}));    // bests: dense 1.5, chosen 1.4
  EXPECT_FALSE(AutoTrial::keep_chosen({1.2, 1.3, 9.0, 1.25}));  // bests: dense 1.2, chosen 1.25
  // An arm never measured (every one of its steps skipped): no evidence, the choice stays.
  EXPECT_TRUE(AutoTrial::keep_chosen({kInf, 5.0, kInf, 5.0}));
  EXPECT_TRUE(AutoTrial::keep_chosen({1.0, kInf, 1.0, kInf}));
}

}  // namespace
}  // namespace thinwire::test
