// L-GreCo (Alimohammadi, Markov, Frantar & Alistarh, MLSys 2023) for adaptive:<family>:
// every `period` steps (steps 0, period, 2 period, ...), before the step is compressed,
//
//   1. each rank measures, for every layer l and candidate c of the family (candidates.hpp),
//      err(l, c) = ||x - C_c(x)||^2 on its current error-corrected gradient x (what the
//      layer's error feedback would compress this step: e + g, DGC's e + m u + g, EControl's
//      eta e + g - h), see compression_error.hpp;
//   2. the ranks allgather these numbers and every rank averages them in rank order, so
//      every rank holds the same bits;
//   3. every rank solves the same knapsack (knapsack.hpp): minimise sum bytes(l, c) subject
//      to sum err(l, c) <= sum err(l, default), bytes being the step_bytes() formula with
//      max(P, 2) ranks (so that a single rank still chooses by size);
//   4. the Reducer applies the choice to the same step on every rank (set_layer_config).
//
// Layers that go dense under every candidate (n < min_numel, empty, PowerSGD layers too
// small for any rank) take no part and keep the default.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "adaptive/candidates.hpp"
#include "reducer/step.hpp"
#include "thinwire/layer.hpp"

namespace thinwire::detail {

class LgrecoPolicy {
 public:
  LgrecoPolicy(const Config& adaptive, const std::vector<Layer>& layers);

  const CandidateSet& candidates() const { return set_; }
  const Config& config_of(std::size_t candidate) const { return set_.configs[candidate]; }
  // The candidate in force for each layer (the default until the first decision).
  const std::vector<std::size_t>& choices() const { return choices_; }
  void set_choices(std::vector<std::size_t> choices) { choices_ = std::move(choices); }
  bool due(std::uint64_t step) const { return step % period_ == 0; }

  // Collective (one allgather). `layers` are this step's layers in layer order with their
  // f32 gradients in g. Returns the new choice per layer (also kept in choices()).
  // *bytes_sent gets this rank's bytes of the exchange.
  const std::vector<std::size_t>& decide(const std::vector<StepLayer>& layers,
                                         const StepContext& ctx, std::uint64_t* bytes_sent);

  // The last decision's statistics, for tests and logs: per participating layer, its index,
  // and per candidate the averaged error and the bytes.
  struct Table {
    std::vector<std::size_t> layers;
    std::vector<std::vector<double>> errors;
    std::vector<std::vector<std::uint64_t>> bytes;
  };
  const Table& last_table() const { return table_; }

 private:
  void measure(const StepLayer& sl, std::size_t layer, const StepContext& ctx, double* out);

  CandidateSet set_;
  std::size_t period_;
  std::vector<std::unique_ptr<Compressor>> codecs_;  // per candidate (sizes, qsgd errors)
  std::vector<std::vector<LayerPlan>> plans_;        // per layer, per candidate
  std::vector<std::size_t> active_;                  // layers that take part
  std::vector<std::size_t> choices_;
  std::vector<float> input_;
  std::vector<std::uint8_t> scratch_;
  Table table_;
};

}  // namespace thinwire::detail
