// L-GreCo's candidate parameters per family, and what each costs on the wire.
//
//   adaptive:topk      densities d0 * {1/16, 1/8, 1/4, 1/2, 1, 2, 4, 8} within (0, 1]
//                      (default d0 = 0.01, or the density= key)
//   adaptive:powersgd  ranks r0 * {1/4, 1/2, 3/4, 1, 3/2, 2, 4}, rounded down, >= 1, <= 1024,
//                      duplicates removed (default r0 = 4, or rank=: 1 2 3 4 6 8 16)
//   adaptive:qsgd      bits 2, 3, 4, 5, 6, 7, 8 (default b0 = 4, or bits=)
//
// The uniform default (d0, r0 or b0) is always a candidate: its total error is the budget.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "reducer/layer_plan.hpp"
#include "thinwire/config.hpp"

namespace thinwire::detail {

constexpr double kAdaptiveDefaultDensity = 0.01;
constexpr int kAdaptiveDefaultRank = 4;
constexpr int kAdaptiveDefaultBits = 4;

struct CandidateSet {
  std::vector<Config> configs;  // concrete specs of the family, ascending parameter
  std::size_t default_index = 0;
};

// The candidates of an adaptive:<family> spec. Every other key (ef, min_numel, select, dgc,
// clip, bucket, seed, ...) is carried over unchanged.
CandidateSet adaptive_candidates(const Config& adaptive);

// Bytes this rank sends for a layer under `plan` in one step with p ranks: the formulas the
// algorithms report in Stats (dense allreduce of f32, top-k allgather of (index, value)
// payloads, two-phase alltoall + allgather of chunk payloads, PowerSGD's two factor
// allreduces).
std::uint64_t step_bytes(const LayerPlan& plan, int p);

}  // namespace thinwire::detail
