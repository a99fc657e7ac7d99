// `auto[:FAMILY[:FLOOR]]`: per layer, dense or the family's compression, chosen from the cost
// model with the link and the kernels measured by a short collective probe.
//
// Choice rule. Per layer, the options are dense, then the family's parameters from the
// mildest to FLOOR (topk densities 0.1, 0.03, 0.01, 0.003, 0.001; qsgd bits 8, 6, 4, 3, 2;
// powersgd ranks 32, 16, 8, 4, 2, 1; onebit alone), most faithful first. Each option's
// marginal cost for the layer is predicted (bytes over the calibrated bandwidth plus
// encode/decode); the layer's choice is the most faithful option within kAutoSlack of its
// cheapest. Then three whole steps are predicted, latencies included: all dense, the per-layer
// choices, and the per-layer choices with every layer that can be compressed compressed (a
// dense route kept only for a few small layers can cost more in ring latency than it saves).
// The most faithful of them within kAutoSlack of the fastest is taken. Time saved beyond the
// slack is thus spent on fidelity, and a close call goes to dense, which loses nothing. A
// compressed choice with a small predicted gain is then tried against dense on real steps
// (model/auto_trial.hpp).
//
// Every rank must make the same choice: the probe's numbers are maxed over the ranks (every
// rank calibrates with the slowest rank's), and rank 0's choice is broadcast.
#pragma once

#include <string>
#include <vector>

#include "model/cost_model.hpp"
#include "thinwire/transport.hpp"

namespace thinwire::detail {
class ReducerImpl;
}

namespace thinwire::detail::model {

constexpr double kAutoSlack = 0.10;

// The options for an auto spec, most faithful first: "none" (keeping the spec's nan key),
// then the family at each parameter of its ladder down to the floor, with the spec's keys.
std::vector<Config> auto_candidates(const Config& auto_spec);

struct Calibration {
  Network net;
  ComputeRates rates;          // one core's rates / cpu_share
  double cpu_share = 1.0;      // of a core, per rank: cores / ranks on the host, at most 1
  double probe_seconds = 0.0;  // how long the probe took
  std::string describe() const;
};

// Every rate maxed over the ranks of `transport` (collective): the slowest rank's. Ranks that
// hold different per-shape rates (ComputeRates::powersgd_by_shape) get Error(invalid_argument).
ComputeRates max_rates(Transport& transport, const ComputeRates& rates);

// The ranks that gave the same `id` as this rank (collective): how many, and this rank's
// place among them; and the share of a core each gets when they all compute at once.
struct HostPeers {
  int ranks = 1;
  int index = 0;
  double cpu_share() const;  // min(1, cores / ranks)
};
HostPeers peers_by(Transport& transport, const std::string& id);
// The ranks on this rank's machine (common/machine.hpp).
HostPeers host_peers(Transport& transport);

struct AutoDecision {
  std::vector<std::size_t> choice;  // per layer, an index into auto_candidates()
  std::vector<Config> specs;        // per layer, the chosen spec
  StepCost predicted, dense;        // the whole step, for the choice and for all-dense
};

// Pure: the same inputs give the same choice on every rank.
AutoDecision decide(const std::vector<Layer>& layers, const Config& auto_spec, int ranks,
                    const Calibration& cal);

// Collective over `transport`: times the collectives the family uses (two sizes at least, grown
// until a call takes 20 ms) and, on one rank per host, the kernels on a sample of the largest
// layer (divided by the host's core share), then maxes every number over the ranks.
Calibration calibrate(Transport& transport, const std::vector<Layer>& layers,
                      const Config& auto_spec);

// Collective: calibrate, decide (rank 0's choice, broadcast) and put every layer under its
// choice (ReducerImpl::put_layers_under); start the Reducer's trial of a compressed choice
// whose predicted gain is under kTrialBelowGain (rank 0's verdict too), else cancel any. Logs
// the calibration and the choice at INFO.
void apply_auto(ReducerImpl& reducer);

}  // namespace thinwire::detail::model
