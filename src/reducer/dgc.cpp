#include "reducer/dgc.hpp"

#include <cmath>
#include <cstring>
#include <map>

#include "common/bytes.hpp"
#include "reducer/step.hpp"

namespace thinwire::detail {

double dgc_warmup_density(double target, std::size_t warmup_steps, std::uint64_t step) {
  if (step >= warmup_steps || target >= 1.0) return target;
  const std::uint64_t stage = step * kDgcWarmupStages / warmup_steps;  // 0 .. stages-1
  const double d =
      std::pow(target, static_cast<double>(stage + 1) / static_cast<double>(kDgcWarmupStages + 1));
  return d > target ? d : target;
}

float* dgc_momentum(std::vector<float>& u, const float* g, float m, std::size_t n) {
  if (u.size() != n) u.assign(n, 0.0f);
  float* p = u.data();
  for (std::size_t i = 0; i < n; ++i) p[i] = m * p[i] + g[i];
  return p;
}

void dgc_dense_momentum(StepLayer& sl) {
  const float* u =
      dgc_momentum(sl.state->momentum, sl.g, static_cast<float>(sl.plan->config.momentum), sl.n);
  std::memcpy(sl.g, u, sl.n * sizeof(float));
}

void dgc_mask(float* u, const std::uint8_t* indices_le, std::size_t k) {
  for (std::size_t j = 0; j < k; ++j) u[load_le<std::uint32_t>(indices_le + 4 * j)] = 0.0f;
}

void clip_gradients(const std::vector<StepLayer*>& layers, int ranks) {
  std::map<double, double> sq;  // clip value -> squared norm of its group
  for (const StepLayer* sl : layers) {
    const double c = sl->plan->config.clip;
    if (!(c > 0.0) || sl->n == 0) continue;
    double s = 0.0;
    for (std::size_t i = 0; i < sl->n; ++i) s += static_cast<double>(sl->g[i]) * sl->g[i];
    sq[c] += s;
  }
  for (StepLayer* sl : layers) {
    const double c = sl->plan->config.clip;
    if (!(c > 0.0) || sl->n == 0) continue;
    const double norm = std::sqrt(sq[c]);
    const double threshold = c * std::sqrt(static_cast<double>(ranks));
    if (!(norm > threshold) || !std::isfinite(norm)) continue;
    const float scale = static_cast<float>(threshold / norm);
    for (std::size_t i = 0; i < sl->n; ++i) sl->g[i] *= scale;
  }
}

}  // namespace thinwire::detail
