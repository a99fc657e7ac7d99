// What algorithms see of one step: the layers to move and where their numbers live.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "common/non_finite_scan.hpp"
#include "reducer/layer_plan.hpp"
#include "reducer/layer_state.hpp"
#include "thinwire/transport.hpp"

namespace thinwire::detail {

// How error feedback treats the layer in this step.
enum class StepFeedback : std::uint8_t {
  none,            // x = g
  ef,              // x = e + g; e <- residual
  econtrol,        // x = eta e + g - h; then h, e updates; result H
  econtrol_first,  // EControl's first step: g sent dense; h = g; H = result
};

struct StepLayer {
  std::uint32_t index = 0;
  const std::string* name = nullptr;
  const LayerPlan* plan = nullptr;
  LayerState* state = nullptr;
  std::size_t n = 0;
  float* g = nullptr;          // f32 gradient; the result is written here
  float* x = nullptr;          // algorithm input (g, e or EControl's input buffer)
  bool want_residual = false;  // encode must leave x - decoded in x
  StepFeedback feedback = StepFeedback::none;
  DType dtype = DType::f32;
  Route route = Route::dense;  // this step's route (warm-up and EControl's first step go dense)
  // Dense route: test the layer for NaN and infinity on the way through the average (its
  // nan policy rides on the sum, see dense_sum_check in non_finite.hpp) instead of before the
  // step.
  bool check_in_sum = false;

  // Filled by the algorithm.
  std::uint64_t bytes_sent = 0;
  double sq_error = 0.0;
  double sq_norm = 0.0;
  // check_in_sum: the first non-finite element the average found in this layer (kAllFinite:
  // none) and the rank whose gradient held it (-1: found in the average itself).
  std::size_t non_finite_at = kAllFinite;
  int non_finite_rank = -1;
};

struct PhaseTimes {
  double encode = 0.0, comm = 0.0, decode = 0.0;
};

struct StepContext {
  Transport& transport;
  int rank = 0;
  int size = 1;
  std::uint64_t step = 0;
  PhaseTimes* times = nullptr;
};

// Bytes this rank sends in the ring/pairwise algorithms (see Stats).
inline std::uint64_t allreduce_bytes(std::uint64_t bytes, int p) {
  return p > 1 ? 2 * bytes * static_cast<std::uint64_t>(p - 1) / static_cast<std::uint64_t>(p) : 0;
}
inline std::uint64_t allgather_bytes(std::uint64_t block, int p) {
  return block * static_cast<std::uint64_t>(p > 1 ? p - 1 : 0);
}

}  // namespace thinwire::detail
