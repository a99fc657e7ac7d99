// Optimizers over the model's tensors, applied after the gradients went through thinwire.
//
//   sgd          v <- mu v + g;  w <- w - lr v          (mu = 0 when the spec has dgc=on:
//                                                        DGC's Reducer already returns the
//                                                        averaged velocity; w <- w - lr result)
//   adam         Adam (Kingma & Ba) with bias correction
//   onebit_adam  1-bit Adam (Tang et al. 2021): Adam on densely averaged gradients for the
//                warm-up steps; then the variance v is frozen (bias-corrected once) and each
//                rank updates its momentum with its own gradient, m <- b1 m + (1 - b1) g,
//                which a second Reducer (the compressed spec, e.g. onebit: sign + scale with
//                worker and server error feedback) averages; w <- w - lr m / (sqrt(v) + eps)
#pragma once

#include <string>
#include <vector>

#include "mlp.hpp"

namespace train {

struct OptimizerConfig {
  std::string name = "sgd";  // sgd | adam | onebit_adam
  double lr = 0.05;
  double momentum = 0.9;  // sgd
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
};

class Optimizer {
 public:
  Optimizer(const OptimizerConfig& config, const std::vector<Tensor>& params);
  // SGD and Adam: one step with the (averaged) gradients in params[i].grad.
  void step(std::vector<Tensor>& params);
  // The learning rate from now on (schedules).
  void set_lr(double lr) { c_.lr = lr; }

  // 1-bit Adam's compression stage, split around the momentum's allreduce:
  // local_momentum() writes b1 m + (1 - b1) g (this rank's g) into params[i].grad, the caller
  // averages it with thinwire, then momentum_step() takes it as the new m and updates w.
  void freeze_variance();
  void local_momentum(std::vector<Tensor>& params) const;
  void momentum_step(std::vector<Tensor>& params);

 private:
  OptimizerConfig c_;
  std::vector<std::vector<float>> m_, v_;
  long t_ = 0;
};

}  // namespace train
