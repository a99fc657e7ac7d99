#include "adaptive/knapsack.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

namespace thinwire::detail {

KnapsackChoice min_bytes_within(const std::vector<std::vector<std::uint64_t>>& bytes,
                                const std::vector<std::vector<std::uint32_t>>& units,
                                std::uint32_t capacity) {
  constexpr std::uint64_t kNone = std::numeric_limits<std::uint64_t>::max();
  const std::size_t layers = bytes.size();
  const std::size_t width = static_cast<std::size_t>(capacity) + 1;
  // best[w]: least bytes of the layers so far with at most w units; used[w]: its units.
  std::vector<std::uint64_t> best(width, 0), next(width);
  std::vector<std::uint64_t> used(width, 0), next_used(width);
  std::vector<std::uint8_t> pick(layers * width);
  for (std::size_t l = 0; l < layers; ++l) {
    for (std::size_t w = 0; w < width; ++w) {
      std::uint64_t b = kNone, u = 0;
      std::uint8_t c_best = 0;
      const std::size_t candidates = std::min(bytes[l].size(), kKnapsackMaxCandidates);
      for (std::size_t c = 0; c < candidates; ++c) {
        const std::uint32_t cu = units[l][c];
        if (cu == kInfeasibleUnits || cu > w) continue;
        const std::uint64_t rest = best[w - cu];
        if (rest == kNone) continue;
        const std::uint64_t total = rest + bytes[l][c];
        const std::uint64_t total_units = used[w - cu] + cu;
        if (total < b || (total == b && total_units < u)) {
          b = total;
          u = total_units;
          c_best = static_cast<std::uint8_t>(c);
        }
      }
      next[w] = b;
      next_used[w] = u;
      pick[l * width + w] = c_best;
    }
    best.swap(next);
    used.swap(next_used);
  }
  KnapsackChoice r;
  if (best[capacity] == kNone) return r;
  r.feasible = true;
  r.bytes = best[capacity];
  r.choice.resize(layers);
  std::size_t w = capacity;
  for (std::size_t l = layers; l-- > 0;) {
    const std::size_t c = pick[l * width + w];
    r.choice[l] = c;
    w -= units[l][c];
  }
  return r;
}

std::vector<std::vector<std::uint32_t>> discretise_errors(
    const std::vector<std::vector<double>>& errors, double budget, std::uint32_t capacity) {
  std::vector<std::vector<std::uint32_t>> units(errors.size());
  const double unit = budget / capacity;
  for (std::size_t l = 0; l < errors.size(); ++l) {
    for (double e : errors[l]) {
      std::uint32_t u = kInfeasibleUnits;
      if (!(e > 0.0)) {
        u = 0;  // also -0.0; a NaN error is never chosen (below)
        if (std::isnan(e)) u = kInfeasibleUnits;
      } else if (budget > 0.0 && e <= budget) {
        const double q = std::ceil(e / unit);
        u = q > capacity ? kInfeasibleUnits : static_cast<std::uint32_t>(q);
      }
      units[l].push_back(u);
    }
  }
  return units;
}

KnapsackChoice choose_layerwise(const std::vector<std::vector<std::uint64_t>>& bytes,
                                const std::vector<std::vector<double>>& errors,
                                std::size_t uniform) {
  KnapsackChoice fallback;
  fallback.feasible = true;
  fallback.choice.assign(bytes.size(), uniform);
  double budget = 0.0;
  for (std::size_t l = 0; l < bytes.size(); ++l) {
    fallback.bytes += bytes[l][uniform];
    budget += errors[l][uniform];
  }
  if (!std::isfinite(budget)) return fallback;
  const std::size_t per_layer = kKnapsackUnitsPerLayer * bytes.size();
  const auto capacity = static_cast<std::uint32_t>(
      std::clamp<std::size_t>(per_layer, kKnapsackMinUnits, kKnapsackMaxUnits));
  const KnapsackChoice dp =
      min_bytes_within(bytes, discretise_errors(errors, budget, capacity), capacity);
  if (!dp.feasible || dp.bytes > fallback.bytes) return fallback;
  return dp;
}

}  // namespace thinwire::detail
