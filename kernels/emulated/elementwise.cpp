// The CPU emulation of kernels/elementwise.cu: the same reducer/error_feedback_math.hpp
// formulas (and the host's non-finite scan and residual norms) in plain loops, so that the
// emulated device equals the host backend bit for bit.
#include "compress/low_rank.hpp"
#include "launch.hpp"
#include "reducer/error_feedback_math.hpp"
#include "reducer/non_finite.hpp"
#include "thinwire/tensor_view.hpp"

namespace thinwire::kernels {

std::string ef_accumulate(float* e, const float* g, std::size_t n, void*) {
  for (std::size_t i = 0; i < n; ++i) e[i] += g[i];
  return {};
}

std::string econtrol_input(float* x, const float* e, const float* g, const float* h, float eta,
                           std::size_t n, void*) {
  for (std::size_t i = 0; i < n; ++i) x[i] = detail::econtrol_input_of(e[i], g[i], h[i], eta);
  return {};
}

std::string econtrol_after_encode(float* e, float* h, const float* g, const float* r, float eta,
                                  std::size_t n, void*) {
  for (std::size_t i = 0; i < n; ++i) {
    const detail::EcontrolNext next = detail::econtrol_next(e[i], g[i], r[i], eta);
    h[i] = next.h;
    e[i] = next.e;
  }
  return {};
}

std::string econtrol_after_delta(float* e, float* h, const float* x, const float* delta, float eta,
                                 std::size_t n, void*) {
  for (std::size_t i = 0; i < n; ++i) {
    const detail::EcontrolNext next = detail::econtrol_next_delta(e[i], h[i], x[i], delta[i], eta);
    h[i] = next.h;
    e[i] = next.e;
  }
  return {};
}

std::string econtrol_finish(float* global, float* g, std::size_t n, void*) {
  for (std::size_t i = 0; i < n; ++i) {
    global[i] += g[i];
    g[i] = global[i];
  }
  return {};
}

std::string divide(float* out, const float* in, float divisor, std::size_t n, void*) {
  for (std::size_t i = 0; i < n; ++i) out[i] = in[i] / divisor;
  return {};
}

std::string subtract(float* x, const float* y, std::size_t n, void*) {
  for (std::size_t i = 0; i < n; ++i) x[i] -= y[i];
  return {};
}

std::string first_non_finite(const void* x, DType dtype, std::size_t n, std::uint64_t* first,
                             void*) {
  if (n == 0) return {};
  const std::size_t at = detail::first_non_finite(TensorView::host(const_cast<void*>(x), n, dtype));
  if (at != detail::kAllFinite && at < *first) *first = at;
  return {};
}

std::string residual_norms(const float* x, const float* y, std::size_t n, double* stats, void*) {
  double sq_error = 0.0, sq_norm = 0.0;
  detail::low_rank::residual_norms(x, y, n, &sq_error, &sq_norm);
  stats[0] += sq_error;
  stats[1] += sq_norm;
  return {};
}

}  // namespace thinwire::kernels
