// A one-process model of the Reducer for P ranks: the same per-tensor codecs and PowerSGD
// math, with the collectives replaced by loops over ranks and error feedback written as in
// DESIGN.md section 3. A multi-rank run is compared against it.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "thinwire/thinwire.hpp"

namespace thinwire::test {

// gradient(step, rank, layer) -> the rank's f32 gradient of that layer at that step.
using GradientFn =
    std::function<std::vector<float>(std::uint64_t step, int rank, std::size_t layer)>;

// Results of every step: out[step][layer], the same for every rank.
std::vector<std::vector<std::vector<float>>> reference_run(const std::vector<Layer>& layers,
                                                           const Config& config, int ranks,
                                                           int steps, const GradientFn& gradient);

}  // namespace thinwire::test
