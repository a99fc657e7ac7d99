// The first NaN or infinity in a gradient tensor, for the nan= policy.
#pragma once

#include <cstddef>
#include <vector>

#include "common/non_finite_scan.hpp"
#include "reducer/layer_plan.hpp"
#include "thinwire/tensor_view.hpp"

namespace thinwire::detail {

// Index of the first non-finite element of a host tensor, or kAllFinite. One read pass,
// exponent bits only (no floating-point compares), blocks tested with OR-reductions.
std::size_t first_non_finite(const TensorView& v);

// Where dense layers' nan=error|skip check runs in a host step. A check before the step is a
// read of every gradient (25-43 % of a 16 MiB dense step over shared memory on the
// development VM); a check that rides on the average (transport/average.hpp) costs no pass.
// Returns the policy the dense-plan layers then take on their sum, or NanPolicy::propagate
// where they are checked before the step like the others. Riding on the sum needs:
// - every non-empty layer with a dense plan under one policy, error or skip (the first
//   non-finite element of their average then decides for all of them alike);
// - at least kDenseSumCheckMinBytes of them: below it the check before the step is cheap
//   and, riding on the control exchange, names the rank (small sums take MPI's allreduce,
//   where only the average can be tested);
// - no feature that reads gradients before the sum (clipping and DGC, `runs_on_host_only`,
//   or an adaptive choice), since a NaN there would reach other layers first.
// The compressed layers are still checked before the step: their error memories and
// payloads must never see a non-finite value. Dense layers run first in a step, so a skip
// still leaves every error memory untouched.
constexpr std::size_t kDenseSumCheckMinBytes = 64 * 1024;  // MpiTransport::kRingMinBytes
NanPolicy dense_sum_check(const std::vector<LayerPlan>& plans, bool adaptive);

// Whether layer `plan`'s check rides on the dense sum under dense_sum_check's `sum_check`.
inline bool checked_in_sum(const LayerPlan& plan, NanPolicy sum_check) {
  return sum_check != NanPolicy::propagate && plan.route == Route::dense;
}

}  // namespace thinwire::detail
