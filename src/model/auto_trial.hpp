// Verifying auto's choice on real steps.
//
// The cost model predicts a step from a probe that cannot see everything a step meets. Ranks
// that share cores wait in collectives for peers that are descheduled while they compute: with
// 4 ranks on 2 cores, a 16 MiB onebit step predicted to communicate for 0.6 ms did so for
// 9.9 ms, and auto lost to dense (0.59x). The probe's bandwidth also varies from run to run
// near a decision's margin. So where the predicted gain of the choice over all-dense is under
// kTrialBelowGain, the Reducer runs its next steps as a trial of the two and keeps whichever
// ran faster on the slowest rank. Larger predicted gains (slow links) are not re-checked: there
// a dense step costs seconds, and no error of the model seen so far would reverse them.
//
// Schedule (kSteps steps): chosen, dense (untimed: first calls allocate and warm caches), then
// dense, chosen, dense, chosen, timed. Dense steps are exact averages, as in warm-up; the
// error memories of compressed layers carry over them unchanged.
#pragma once

#include <array>
#include <cstddef>
#include <vector>

#include "thinwire/config.hpp"

namespace thinwire::detail::model {

constexpr double kTrialBelowGain = 2.0;

class AutoTrial {
 public:
  static constexpr int kSteps = 6;
  enum class Arm { chosen, dense };

  // Starts a trial of `chosen` (per layer) against `dense` (per layer).
  void start(std::vector<Config> chosen, std::vector<Config> dense);
  void cancel() { step_ = kSteps; }
  bool active() const { return step_ < kSteps; }

  Arm next_arm() const { return kSchedule[static_cast<std::size_t>(step_)]; }
  const std::vector<Config>& next_specs() const {
    return next_arm() == Arm::chosen ? chosen_ : dense_;
  }
  const std::vector<Config>& chosen() const { return chosen_; }
  const std::vector<Config>& dense() const { return dense_; }

  // Records the step just run: its seconds on this rank, unused when the step was skipped
  // (nan=skip). True once the schedule is complete.
  bool record(double seconds, bool skipped);

  // This rank's timed steps: dense, chosen, dense, chosen (infinity where not measured).
  const std::array<double, 4>& timed() const { return timed_; }

  // Whether to keep the choice, from the slowest rank's timed steps: unless both arms were
  // measured and the choice's best step was not faster than dense's best, it stays.
  static bool keep_chosen(const std::array<double, 4>& slowest);

 private:
  static constexpr Arm kSchedule[kSteps] = {Arm::chosen, Arm::dense, Arm::dense,
                                            Arm::chosen, Arm::dense, Arm::chosen};
  std::vector<Config> chosen_, dense_;
  std::array<double, 4> timed_{};
  int step_ = kSteps;
};

}  // namespace thinwire::detail::model
