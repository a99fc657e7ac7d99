#include "model/auto_trial.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>

namespace thinwire::detail::model {

namespace {
constexpr int kUntimed = 2;  // the schedule's first steps
constexpr double kUnmeasured = std::numeric_limits<double>::infinity();
}  // namespace

void AutoTrial::start(std::vector<Config> chosen, std::vector<Config> dense) {
  chosen_ = std::move(chosen);
  dense_ = std::move(dense);
  timed_.fill(kUnmeasured);
  step_ = 0;
}

bool AutoTrial::record(double seconds, bool skipped) {
  if (!active()) return false;
  if (step_ >= kUntimed && !skipped) timed_[static_cast<std::size_t>(step_ - kUntimed)] = seconds;
  ++step_;
  return !active();
}

bool AutoTrial::keep_chosen(const std::array<double, 4>& slowest) {
  const double dense = std::min(slowest[0], slowest[2]);
  const double chosen = std::min(slowest[1], slowest[3]);
  return !(std::isfinite(dense) && std::isfinite(chosen) && chosen >= dense);
}

}  // namespace thinwire::detail::model
