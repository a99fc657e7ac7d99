// The cost model of one Reducer::allreduce() step: alpha-beta terms for the collectives the
// MPI transport runs, the payload of every layer as the library itself sizes it (routes from
// make_plan, payloads from the codecs' encoded_bytes), and encode/decode time from measured
// per-element rates. Used by `auto` (model/auto_policy) and by the thinwire-cost-model CLI.
//
// Collective times on P ranks, for a rank whose link sends `beta` bytes/s with `alpha` s of
// latency per message (MpiTransport: all point-to-point, so each rank's own link is the
// bottleneck):
//   ring allreduce of B bytes (B >= MpiTransport::kRingMinBytes): 2(P-1) (alpha + B/(P beta))
//   smaller allreduce (MPI's recursive doubling):               ceil(log2 P) (alpha + B/beta)
//   allgather of b-byte blocks:                                 m (alpha) + (P-1) b/beta
//     m = ceil(log2 P) rounds for blocks below MpiTransport::kLogAllgatherMaxBlockBytes on
//     at least MpiTransport::kDefaultLogAllgatherMinRanks ranks, else P-1 direct messages
//   alltoall of b-byte blocks:                                  (P-1) (alpha + b/beta)
//
// A link may also have a token bucket (tc tbf, the emulated cluster's shaper; cloud NICs'
// burst credits): up to `burst_bytes` leave at wire speed (`wire_bytes_per_s`, the link
// unshaped) once the link has been idle long enough to refill them at the shaper's rate
// (`refill_bytes_per_s`; 0: allgather's beta). predict_step() then walks the step in the
// Reducer's order (control exchange, then dense, top-k, two-phase and low-rank routes, each
// encode -> its collectives -> decode), refilling the bucket by the clock (during compute,
// latency terms and while its own bytes leave) and spending it on the bytes a collective
// sends. The bucket is full when a step starts (a training step follows its backward pass),
// unless `idle_before_s` says the link rested only that long after a call that left
// `bucket_before_bytes` in it (a benchmark's back-to-back calls: 0 after a call that emptied
// it, StepCost::bucket_after_bytes after a predicted one). Without a bucket (burst_bytes = 0,
// what the calibration probe of `auto` measures) the terms above are exact.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "thinwire/config.hpp"
#include "thinwire/layer.hpp"

namespace thinwire::detail::model {

struct Link {
  double latency_s = 0.0;      // alpha, per message
  double bytes_per_s = 1e300;  // beta, what one rank can send
};

// Link parameters per kind of collective (the probe of `auto` calibrates each one; a network
// described by its rate uses one Link for all).
struct Network {
  Link allreduce, allgather, alltoall;
  double burst_bytes = 0.0;          // token bucket of the rank's link
  double wire_bytes_per_s = 1e300;   // what the bucket's bytes leave at (the link unshaped)
  double idle_before_s = 1e300;      // the link's rest before the step
  double bucket_before_bytes = 0.0;  // what the bucket held when that rest began
  double refill_bytes_per_s = 0.0;   // the bucket's rate (0: allgather's beta; a shaper's rate
                                     // where beta is measured and lower)
  static Network uniform(const Link& link, double burst_bytes = 0.0,
                         double wire_bytes_per_s = 1e300) {
    return {link, link, link, burst_bytes, wire_bytes_per_s};
  }
};

// `credit_bytes` of the call's bytes are not limited by beta (a token bucket's; the time they
// take at wire speed is predict_step's to add).
double allreduce_seconds(std::uint64_t bytes, int ranks, const Link& link,
                         double credit_bytes = 0.0);
double allgather_seconds(std::uint64_t block_bytes, int ranks, const Link& link,
                         double credit_bytes = 0.0);
// The messages a rank sends in an allgather of `block_bytes` blocks (its latency terms): the
// MPI transport's ceil(log2 P) rounds for small blocks from `log_min_ranks` ranks on (0:
// never; MpiTransport::log_allgather_min_ranks), else P-1. The model takes the default.
double allgather_messages(std::uint64_t block_bytes, int ranks, int log_min_ranks);
double allgather_messages(std::uint64_t block_bytes, int ranks);  // the default's
double alltoall_seconds(std::uint64_t block_bytes, int ranks, const Link& link,
                        double credit_bytes = 0.0);

// Seconds of one core per unit of work. Elementwise rates are per f32 element; PowerSGD's per
// rows*cols*rank (its matrix products dominate).
struct ComputeRates {
  double copy = 0.0;         // memcpy of one element (read + write): packing, copies
  double add = 0.0;          // one elementwise pass: ring sums, division by P
  double norm = 0.0;         // PowerSGD's residual pass: ||x - y||^2, ||x||^2 and x <- x - y
  double check = 0.0;        // the non-finite check of nan=error|skip: one read of the gradient
  double topk_encode = 0.0;  // error feedback + selection + packing
  double topk_decode_zero = 0.0;   // zeroing the output, per element of the layer
  double topk_decode_entry = 0.0;  // one received (index, value) entry: scatter-add and divide
  double onebit_encode = 0.0;      // error feedback + scale + signs
  double onebit_decode = 0.0;
  double qsgd_encode = 0.0;  // Philox rounding; taken as independent of the bit width
  double qsgd_decode = 0.0;
  double powersgd_encode = 0.0;  // M Q, orthonormalisation, M^T P
  double powersgd_decode = 0.0;  // P Q^T, error memory, result

  // PowerSGD's two rates for the matrix shapes (rows, cols) they were timed on. Its products'
  // speed per unit of work depends on the shape: on one core of the development VM a 2304 x 576
  // layer's encode took 1.3-1.7x the time of a 1024 x 1024 or 576 x 2304 one's. Layers of a
  // shape not in here use the two rates above.
  //
  // With error feedback, a layer timed at its own size also has its three compute phases timed
  // as a step runs them back to back (seconds per element of the layer; 0 = not timed): x = g +
  // e and M Q before P's allreduce, the orthonormalisation and M^T P before Q's, then P Q^T and
  // the residual pass. Kernels timed one by one on cold caches sum to more than that: each one
  // after the first finds its operands where the one before left them. On the development VM the
  // decode of a 1024 x 1024 layer (4 MiB) took 0.7x the sum of its two cold kernels in the
  // sequence, the same at 16 MiB, and 1.0x at 64 MiB, where no cache holds the layer.
  struct LowRankRates {
    double encode = 0.0, decode = 0.0;
    double step_before_p = 0.0, step_before_q = 0.0, step_decode = 0.0;
    double step_rank = 0.0;  // the PowerSGD rank the phases were timed at (a double for JSON)
    bool step_timed_at(std::size_t rank) const {
      return step_before_p > 0 && step_before_q > 0 && step_decode > 0 &&
             step_rank == static_cast<double>(rank);
    }
  };
  std::map<std::pair<std::size_t, std::size_t>, LowRankRates> powersgd_by_shape;
  LowRankRates powersgd_at(std::size_t rows, std::size_t cols) const;

  // Every rate divided by `share` (< 1 when ranks share cores). Below 1 without PowerSGD's step
  // phases (without_step_phases).
  ComputeRates scaled(double share) const;
  // The same rates but for PowerSGD's step phases, for ranks that share a core: a rank's
  // collectives between its phases hand the core to another rank, whose kernels evict what the
  // phases timed back to back found in cache. On the emulated cluster (4 hosts on 2 cores, the
  // phases timed by all hosts at once) they predicted 4 MiB steps 22-26 % fast, against 1-7 %
  // with the kernels' cold sum on the same files (commit 88e7222's run); with a core per rank
  // (2 hosts) the phases were the closer.
  ComputeRates without_step_phases() const;
};

// Predicted time of one step, by phase, and the bytes this rank sends (as Stats counts them).
struct StepCost {
  double comm = 0.0, encode = 0.0, decode = 0.0;
  std::uint64_t bytes_sent = 0;
  // What the link's token bucket holds when the step ends (refilled by its last compute): the
  // start of a next call that follows at once (Network::idle_before_s, bucket_before_bytes).
  double bucket_after_bytes = 0.0;
  double total() const { return comm + encode + decode; }
};

// A call that follows the one before it at once on ranks sharing the cores (`share` < 1: more
// ranks than cores, as the emulated hosts on one machine). The ranks drift apart, one computing
// while another waits for the network, so the call lasts the longer of all ranks' CPU work on
// the cores (`step`'s compute, timed at the share) and one rank's own path (its compute at a
// whole core, then its comm). But `step` refilled the link's token bucket through its compute
// at the share: where the call is shorter, tokens it never got. A call cannot send more than
// what its bucket held plus what refills while it lasts (its other bytes leave at most at the
// allgather's beta), and it leaves the bucket what is left. With `share` >= 1, `step` as it is.
struct BurstCall {
  double seconds = 0.0;
  double bucket_after_bytes = 0.0;
};
BurstCall burst_call(const StepCost& step, double share, const Network& net);

// One step of `layers` under `specs` (one per layer) on `ranks` ranks. With
// include_latency = false the alpha terms are left out: the marginal cost of a layer whose
// collectives are shared with others (all layers of a route share one collective).
StepCost predict_step(const std::vector<Layer>& layers, const std::vector<Config>& specs, int ranks,
                      const Network& net, const ComputeRates& rates, bool include_latency = true);

// The same spec for every layer.
StepCost predict_step(const std::vector<Layer>& layers, const Config& spec, int ranks,
                      const Network& net, const ComputeRates& rates);

}  // namespace thinwire::detail::model
