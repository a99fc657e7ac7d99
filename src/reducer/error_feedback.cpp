#include "reducer/error_feedback.hpp"

#include <algorithm>
#include <cstring>

#include "reducer/error_feedback_math.hpp"

namespace thinwire::detail {

namespace {
void ensure(std::vector<float>& v, std::size_t n) {
  if (v.size() != n) v.assign(n, 0.0f);
}
}  // namespace

void add_error_feedback(float* e, const float* g, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) e[i] += g[i];
}

float* error_memory(StepLayer& sl) {
  LayerState& s = *sl.state;
  if (!s.onebit_error.empty()) {  // the layer's memory was kept factored until now
    s.error.resize(s.onebit_error.size());
    s.onebit_error.materialize(s.error.data());
    s.onebit_error.clear();
  }
  ensure(s.error, sl.n);
  return s.error.data();
}

void prepare_input(StepLayer& sl) {
  LayerState& s = *sl.state;
  const std::size_t n = sl.n;
  switch (sl.feedback) {
    case StepFeedback::none:
    case StepFeedback::econtrol_first:
      sl.x = sl.g;
      sl.want_residual = false;
      break;
    case StepFeedback::ef: {
      float* e = error_memory(sl);
      add_error_feedback(e, sl.g, n);
      sl.x = e;
      sl.want_residual = true;
      break;
    }
    case StepFeedback::econtrol: {
      ensure(s.error, n);
      ensure(s.h, n);
      s.input.resize(n);
      const float eta = static_cast<float>(sl.plan->config.eta);
      const float *e = s.error.data(), *h = s.h.data(), *g = sl.g;
      float* x = s.input.data();
      for (std::size_t i = 0; i < n; ++i) x[i] = econtrol_input_of(e[i], g[i], h[i], eta);
      sl.x = x;
      sl.want_residual = true;
      break;
    }
  }
}

void after_encode(StepLayer& sl) {
  LayerState& s = *sl.state;
  const std::size_t n = sl.n;
  if (sl.feedback == StepFeedback::econtrol_first) {
    s.h.assign(sl.g, sl.g + n);
    ensure(s.error, n);
    return;
  }
  if (sl.feedback != StepFeedback::econtrol) return;
  // With r = x - D and x = eta e + g - h:  h + D = eta e + g - r,  e + g - h - D = (1-eta) e + r.
  const float eta = static_cast<float>(sl.plan->config.eta);
  float *e = s.error.data(), *h = s.h.data();
  const float *g = sl.g, *r = sl.x;
  for (std::size_t i = 0; i < n; ++i) {
    const EcontrolNext next = econtrol_next(e[i], g[i], r[i], eta);
    h[i] = next.h;
    e[i] = next.e;
  }
}

void after_encode_with_delta(StepLayer& sl, const float* delta) {
  LayerState& s = *sl.state;
  const float eta = static_cast<float>(sl.plan->config.eta);
  float *e = s.error.data(), *h = s.h.data();
  const float* x = sl.x;
  for (std::size_t i = 0; i < sl.n; ++i) {
    const EcontrolNext next = econtrol_next_delta(e[i], h[i], x[i], delta[i], eta);
    h[i] = next.h;
    e[i] = next.e;
  }
}

void finish(StepLayer& sl) {
  LayerState& s = *sl.state;
  const std::size_t n = sl.n;
  if (sl.feedback == StepFeedback::econtrol_first) {
    s.global.assign(sl.g, sl.g + n);
    s.econtrol_started = true;
  } else if (sl.feedback == StepFeedback::econtrol) {
    float* H = s.global.data();
    float* g = sl.g;
    for (std::size_t i = 0; i < n; ++i) {
      H[i] += g[i];
      g[i] = H[i];
    }
  }
}

}  // namespace thinwire::detail
