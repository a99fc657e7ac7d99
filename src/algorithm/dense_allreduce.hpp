// Dense: uncompressed layers (method none, small layers, warm-up, EControl's first step)
// packed into one buffer, one f32 allreduce of the average (sum divided by the ranks).
// Layers whose non-finite check rides on the sum (StepLayer::check_in_sum) go in a checked
// average of their own when the step has both kinds.
#pragma once

#include "algorithm/algorithm.hpp"

namespace thinwire::detail {

class DenseAllreduce final : public Algorithm {
 public:
  void run(const std::vector<StepLayer*>& layers, StepContext& ctx) override;

 private:
  void reduce(const std::vector<StepLayer*>& layers, bool checked, StepContext& ctx);

  std::vector<float> buffer_;
};

}  // namespace thinwire::detail
