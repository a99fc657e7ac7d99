#include "reducer/non_finite.hpp"

#include "common/non_finite_scan.hpp"
#include "transport/mpi_transport.hpp"

namespace thinwire::detail {

std::size_t first_non_finite(const TensorView& v) {
  switch (v.dtype()) {
    case DType::f32:
      return first_non_finite_f32(static_cast<const float*>(v.data()), v.numel());
    case DType::f16:
      return first_with_exponent<AliasU16>(static_cast<const AliasU16*>(v.data()), v.numel(),
                                           0x7c00u);
    case DType::bf16:
      return first_with_exponent<AliasU16>(static_cast<const AliasU16*>(v.data()), v.numel(),
                                           0x7f80u);
  }
  return kAllFinite;
}

// Checked averages from this size on take the ring by default, which names the rank.
static_assert(kDenseSumCheckMinBytes == MpiTransport::kRingMinBytes, "checked sums take the ring");

NanPolicy dense_sum_check(const std::vector<LayerPlan>& plans, bool adaptive) {
  if (adaptive) return NanPolicy::propagate;
  for (const LayerPlan& plan : plans)
    if (runs_on_host_only(plan.config)) return NanPolicy::propagate;
  std::size_t elements = 0;
  NanPolicy policy = NanPolicy::propagate;
  for (const LayerPlan& plan : plans) {
    if (plan.route != Route::dense || plan.numel == 0) continue;
    if (plan.config.nan == NanPolicy::propagate) return NanPolicy::propagate;
    if (elements && plan.config.nan != policy) return NanPolicy::propagate;
    policy = plan.config.nan;
    elements += plan.numel;
  }
  return elements * sizeof(float) >= kDenseSumCheckMinBytes ? policy : NanPolicy::propagate;
}

}  // namespace thinwire::detail
