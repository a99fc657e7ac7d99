// Dense: uncompressed layers (method none, small layers, warm-up, EControl's first step)
// packed into one buffer, one f32 allreduce of the average (sum divided by the ranks).
#pragma once

#include "algorithm/algorithm.hpp"

namespace thinwire::detail {

class DenseAllreduce final : public Algorithm {
 public:
  void run(const std::vector<StepLayer*>& layers, StepContext& ctx) override;

 private:
  std::vector<float> buffer_;
};

}  // namespace thinwire::detail
