// L-GreCo's per-layer choice as a multiple-choice knapsack: pick one candidate per layer so
// that the total size is smallest while the total error stays within a budget. Solved by
// dynamic programming over the error, discretised into integer units (Alimohammadi et al.,
// MLSys 2023).
//
// Discretisation: with budget B and U units, one unit is B / U and a candidate's error e
// costs ceil(e / (B / U)) units; the capacity is U. Rounding up makes every solution of the
// discrete problem satisfy the real budget (sum e <= sum units * B/U <= B); a solution of
// the real problem can be lost only when its per-layer round-up (at most one unit per
// layer) pushes it over U, which is why U grows with the number of layers (up to a cap that
// bounds the solver's memory: layers * (U + 1) bytes for its choice table).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace thinwire::detail {

// Units of the error budget: kKnapsackUnitsPerLayer * layers, clamped to
// [kKnapsackMinUnits, kKnapsackMaxUnits].
constexpr std::uint32_t kKnapsackMinUnits = 4096;
constexpr std::uint32_t kKnapsackUnitsPerLayer = 64;
constexpr std::uint32_t kKnapsackMaxUnits = 16384;
// At most this many candidates per layer.
constexpr std::size_t kKnapsackMaxCandidates = 255;

// A candidate that cannot fit (error above the budget) costs this many units.
constexpr std::uint32_t kInfeasibleUnits = 0xffffffffu;

struct KnapsackChoice {
  bool feasible = false;
  std::uint64_t bytes = 0;          // sum of the chosen sizes
  std::vector<std::size_t> choice;  // per layer, an index into its candidates
};

// Exact solution of the discrete problem: minimises sum bytes[l][choice[l]] subject to
// sum units[l][choice[l]] <= capacity. Ties go to the smaller total of units, then to the
// lower candidate index of the last layers. O(layers * candidates * capacity) time.
KnapsackChoice min_bytes_within(const std::vector<std::vector<std::uint64_t>>& bytes,
                                const std::vector<std::vector<std::uint32_t>>& units,
                                std::uint32_t capacity);

// Units of each error for a budget split into `capacity` units (see above). When the budget
// is 0, zero errors cost 0 units and any other error is infeasible.
std::vector<std::vector<std::uint32_t>> discretise_errors(
    const std::vector<std::vector<double>>& errors, double budget, std::uint32_t capacity);

// The whole decision: the budget is the total error of candidate `uniform` on every layer;
// the discrete problem is solved and its answer kept if it is no larger than the uniform
// choice (which always meets the budget), else the uniform choice is returned. The result
// always satisfies sum error <= budget in real numbers.
KnapsackChoice choose_layerwise(const std::vector<std::vector<std::uint64_t>>& bytes,
                                const std::vector<std::vector<double>>& errors,
                                std::size_t uniform);

}  // namespace thinwire::detail
