#include "optimizers.hpp"

#include <cmath>

namespace train {

Optimizer::Optimizer(const OptimizerConfig& config, const std::vector<Tensor>& params)
    : c_(config) {
  for (const Tensor& p : params) {
    m_.emplace_back(p.value.size(), 0.0f);
    if (c_.name != "sgd") v_.emplace_back(p.value.size(), 0.0f);
  }
}

void Optimizer::step(std::vector<Tensor>& params) {
  ++t_;
  const auto lr = static_cast<float>(c_.lr);
  if (c_.name == "sgd") {
    const auto mu = static_cast<float>(c_.momentum);
    for (std::size_t i = 0; i < params.size(); ++i) {
      float* w = params[i].value.data();
      const float* g = params[i].grad.data();
      float* v = m_[i].data();
      for (std::size_t j = 0; j < params[i].value.size(); ++j) {
        v[j] = mu * v[j] + g[j];
        w[j] -= lr * v[j];
      }
    }
    return;
  }
  const auto b1 = static_cast<float>(c_.beta1), b2 = static_cast<float>(c_.beta2);
  const auto eps = static_cast<float>(c_.eps);
  const auto c1 = static_cast<float>(1.0 - std::pow(c_.beta1, static_cast<double>(t_)));
  const auto c2 = static_cast<float>(1.0 - std::pow(c_.beta2, static_cast<double>(t_)));
  for (std::size_t i = 0; i < params.size(); ++i) {
    float* w = params[i].value.data();
    const float* g = params[i].grad.data();
    float *m = m_[i].data(), *v = v_[i].data();
    for (std::size_t j = 0; j < params[i].value.size(); ++j) {
      m[j] = b1 * m[j] + (1.0f - b1) * g[j];
      v[j] = b2 * v[j] + (1.0f - b2) * g[j] * g[j];
      w[j] -= lr * (m[j] / c1) / (std::sqrt(v[j] / c2) + eps);
    }
  }
}

void Optimizer::freeze_variance() {
  const auto c2 = static_cast<float>(1.0 - std::pow(c_.beta2, static_cast<double>(t_)));
  for (auto& v : v_)
    for (float& x : v) x /= c2;
}

void Optimizer::local_momentum(std::vector<Tensor>& params) const {
  const auto b1 = static_cast<float>(c_.beta1);
  for (std::size_t i = 0; i < params.size(); ++i) {
    float* g = params[i].grad.data();
    const float* m = m_[i].data();
    for (std::size_t j = 0; j < params[i].grad.size(); ++j) g[j] = b1 * m[j] + (1.0f - b1) * g[j];
  }
}

void Optimizer::momentum_step(std::vector<Tensor>& params) {
  ++t_;
  const auto lr = static_cast<float>(c_.lr), eps = static_cast<float>(c_.eps);
  for (std::size_t i = 0; i < params.size(); ++i) {
    float* w = params[i].value.data();
    const float* avg = params[i].grad.data();
    float *m = m_[i].data(), *v = v_[i].data();
    for (std::size_t j = 0; j < params[i].value.size(); ++j) {
      m[j] = avg[j];
      w[j] -= lr * m[j] / (std::sqrt(v[j]) + eps);
    }
  }
}

}  // namespace train
