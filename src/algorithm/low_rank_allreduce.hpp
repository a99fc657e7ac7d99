// PowerSGD (Vogels et al. 2019): per matrix layer M (rows x cols) one power-iteration step
// warm-started from the previous Q: P = M Q, allreduce-average P, orthonormalise,
// Q = M^T P, allreduce-average Q, result P Q^T. The P factors of all layers share one
// allreduce, and the Q factors another.
#pragma once

#include "algorithm/algorithm.hpp"

namespace thinwire::detail {

class LowRankAllreduce final : public Algorithm {
 public:
  void run(const std::vector<StepLayer*>& layers, StepContext& ctx) override;

 private:
  std::vector<float> p_, q_, q_local_, delta_;
};

}  // namespace thinwire::detail
