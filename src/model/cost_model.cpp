#include "model/cost_model.hpp"

#include <algorithm>
#include <cmath>
#include <map>
#include <memory>

#include "algorithm/dense_allreduce.hpp"
#include "algorithm/two_phase.hpp"
#include "common/fail.hpp"
#include "compress/topk_codec.hpp"
#include "reducer/agreement.hpp"
#include "reducer/layer_plan.hpp"
#include "reducer/non_finite.hpp"
#include "reducer/step.hpp"
#include "transport/mpi_transport.hpp"

namespace thinwire::detail::model {

namespace {

// Seconds to send `bytes` of which `credit` leave at wire speed.
double send_seconds(double bytes, const Link& link, double credit) {
  return std::max(0.0, bytes - credit) / link.bytes_per_s;
}

// The token bucket of one rank's link through a step: refilled at the link's rate all the
// time (tc tbf counts tokens by the clock), spent by the bytes the rank sends.
class TokenBucket {
 public:
  // Holding `level_bytes`, then refilled for `idle_s` (full after long enough).
  TokenBucket(double burst_bytes, double refill_bytes_per_s, double level_bytes, double idle_s)
      : burst_(burst_bytes), refill_(refill_bytes_per_s), level_(std::min(level_bytes, burst_)) {
    idle(idle_s);
  }
  void idle(double seconds) { level_ = std::min(burst_, level_ + seconds * refill_); }
  double level() const { return level_; }
  // The credit for a call that sends `bytes`: the bytes that leave at `wire_bytes_per_s`
  // before the bucket runs dry (the rest leave at beta). The bucket keeps refilling
  // while they leave, so it drains at wire - refill: a level L covers L wire / (wire - refill)
  // bytes (on the emulated 500 Mbit/s links, whose bucket's bytes leave at ~240 MB/s, 1.33 L;
  // counting L alone predicted 2-host 4 MiB onebit steps 25 % slow).
  double spend(double bytes, double wire_bytes_per_s) {
    const double drained_per_byte =
        wire_bytes_per_s > refill_ ? 1.0 - refill_ / wire_bytes_per_s : 0.0;
    const double credit =
        drained_per_byte > 0.0 ? std::min(bytes, level_ / drained_per_byte) : bytes;
    level_ = std::max(0.0, std::min(burst_, level_ - credit * drained_per_byte));
    return credit;
  }

 private:
  double burst_, refill_, level_;
};

// What the link's token bucket refills at: the shaper's rate where known, else the allgather's
// beta.
double bucket_refill_bytes_per_s(const Network& net) {
  return net.refill_bytes_per_s > 0.0 ? net.refill_bytes_per_s : net.allgather.bytes_per_s;
}

}  // namespace

double allreduce_seconds(std::uint64_t bytes, int ranks, const Link& link, double credit_bytes) {
  if (ranks <= 1 || bytes == 0) return 0.0;
  const double b = static_cast<double>(bytes), p = ranks;
  if (bytes >= MpiTransport::kRingMinBytes)
    return 2.0 * (p - 1.0) * link.latency_s +
           send_seconds(2.0 * (p - 1.0) * b / p, link, credit_bytes);
  const double rounds = std::ceil(std::log2(p));
  return rounds * link.latency_s + send_seconds(rounds * b, link, credit_bytes);
}

double allgather_messages(std::uint64_t block_bytes, int ranks, int log_min_ranks) {
  if (ranks <= 1) return 0.0;
  return MpiTransport::allgather_in_log_rounds(block_bytes, ranks, log_min_ranks)
             ? std::ceil(std::log2(static_cast<double>(ranks)))
             : ranks - 1.0;
}

double allgather_messages(std::uint64_t block_bytes, int ranks) {
  return allgather_messages(block_bytes, ranks, MpiTransport::kDefaultLogAllgatherMinRanks);
}

double allgather_seconds(std::uint64_t block_bytes, int ranks, const Link& link,
                         double credit_bytes) {
  if (ranks <= 1 || block_bytes == 0) return 0.0;
  // In rounds as directly, every rank sends its block once to each of the P-1 others (a round
  // forwards the blocks its rank received in the rounds before).
  return allgather_messages(block_bytes, ranks) * link.latency_s +
         send_seconds((ranks - 1.0) * static_cast<double>(block_bytes), link, credit_bytes);
}

double alltoall_seconds(std::uint64_t block_bytes, int ranks, const Link& link,
                        double credit_bytes) {
  if (ranks <= 1 || block_bytes == 0) return 0.0;
  return (ranks - 1.0) * link.latency_s +
         send_seconds((ranks - 1.0) * static_cast<double>(block_bytes), link, credit_bytes);
}

ComputeRates ComputeRates::without_step_phases() const {
  ComputeRates r = *this;
  for (auto& [shape, low_rank] : r.powersgd_by_shape)
    low_rank.step_before_p = low_rank.step_before_q = low_rank.step_decode = low_rank.step_rank =
        0.0;
  return r;
}

ComputeRates ComputeRates::scaled(double share) const {
  ComputeRates r = share < 1.0 ? without_step_phases() : *this;
  for (double* v : {&r.copy, &r.add, &r.norm, &r.check, &r.topk_encode, &r.topk_decode_zero,
                    &r.topk_decode_entry, &r.onebit_encode, &r.onebit_decode, &r.qsgd_encode,
                    &r.qsgd_decode, &r.powersgd_encode, &r.powersgd_decode})
    *v /= share;
  for (auto& [shape, low_rank] : r.powersgd_by_shape) {
    low_rank.encode /= share;
    low_rank.decode /= share;
  }
  return r;
}

ComputeRates::LowRankRates ComputeRates::powersgd_at(std::size_t rows, std::size_t cols) const {
  const auto it = powersgd_by_shape.find({rows, cols});
  if (it != powersgd_by_shape.end() && it->second.encode > 0 && it->second.decode > 0)
    return it->second;
  LowRankRates scalar;
  scalar.encode = powersgd_encode;
  scalar.decode = powersgd_decode;
  return scalar;
}

StepCost predict_step(const std::vector<Layer>& layers, const std::vector<Config>& specs, int ranks,
                      const Network& net_in, const ComputeRates& rates, bool include_latency) {
  if (specs.size() != layers.size())
    fail_with(ErrorCode::invalid_argument, "model", -1, "predict_step: ", specs.size(),
              " specs for ", layers.size(), " layers");
  Network net = net_in;
  if (!include_latency)
    net.allreduce.latency_s = net.allgather.latency_s = net.alltoall.latency_s = 0.0;
  const int p = ranks;
  const double fp = p;
  StepCost cost;
  // Collectives are fused per route (one buffer per collective for all its layers); the
  // compute of each route is summed by where it runs relative to those collectives.
  std::uint64_t dense_elems = 0, topk_block = 0, two_phase_block = 0, low_rank_p = 0,
                low_rank_q = 0;
  std::uint64_t small_dense_elems = 0;  // in layers that the ring, too, packs
  std::size_t dense_layers = 0;
  double topk_encode = 0, topk_decode = 0;
  double two_phase_worker = 0, two_phase_server = 0, two_phase_decode = 0;
  double low_rank_before_p = 0, low_rank_before_q = 0, low_rank_decode = 0;
  double check = 0;  // before the control exchange
  std::map<std::string, std::unique_ptr<Compressor>> codecs;

  std::vector<LayerPlan> plans;
  for (std::size_t i = 0; i < layers.size(); ++i) plans.push_back(make_plan(layers[i], specs[i]));
  // Dense layers' check may ride on their average at no cost (non_finite.hpp).
  const NanPolicy sum_check = dense_sum_check(plans, false);
  for (std::size_t i = 0; i < layers.size(); ++i) {
    const LayerPlan& plan = plans[i];
    const double n = static_cast<double>(plan.numel);
    if (plan.numel == 0) continue;
    if (specs[i].nan != NanPolicy::propagate && !checked_in_sum(plan, sum_check))
      check += n * rates.check;
    std::unique_ptr<Compressor>& codec = codecs[plan.spec];
    if (!codec) codec = make_codec(specs[i]);
    switch (plan.route) {
      case Route::dense:
        dense_elems += plan.numel;
        if (4 * plan.numel < DenseAllreduce::kInPlaceMinBytes) small_dense_elems += plan.numel;
        ++dense_layers;
        cost.bytes_sent += allreduce_bytes(4 * plan.numel, p);
        break;
      case Route::topk: {
        const std::uint64_t payload = codec->encoded_bytes(plan.numel);
        topk_block += payload;
        cost.bytes_sent += allgather_bytes(payload, p);
        const double k = static_cast<double>(topk_count(specs[i].density, plan.numel));
        topk_encode += n * rates.topk_encode;
        topk_decode += n * rates.topk_decode_zero + fp * k * rates.topk_decode_entry;
        break;
      }
      case Route::two_phase: {
        const std::uint64_t slot = two_phase_slot_bytes(*codec, plan.numel, p);
        two_phase_block += slot;
        cost.bytes_sent += 2 * allgather_bytes(slot, p);
        const bool onebit = specs[i].method == Method::onebit;
        const double enc = onebit ? rates.onebit_encode : rates.qsgd_encode;
        const double dec = onebit ? rates.onebit_decode : rates.qsgd_decode;
        // Worker: the whole layer; server: its chunk (decode P versions, average, encode);
        // then every rank decodes all P chunks.
        two_phase_worker += n * enc;
        two_phase_server += n * dec + n / fp * (rates.add + enc);
        two_phase_decode += n * dec;
        break;
      }
      case Route::low_rank: {
        const double work = static_cast<double>(plan.rows) * static_cast<double>(plan.cols) *
                            static_cast<double>(plan.rank);
        low_rank_p += plan.rows * plan.rank;
        low_rank_q += plan.cols * plan.rank;
        cost.bytes_sent += allreduce_bytes(4 * plan.rows * plan.rank, p) +
                           allreduce_bytes(4 * plan.cols * plan.rank, p);
        // x = g + e (error feedback) and M Q before P's allreduce; the orthonormalisation
        // and M^T P (about the other half of the encode work) before Q's.
        const bool feedback = specs[i].ef != ErrorFeedback::none;
        const ComputeRates::LowRankRates shape = rates.powersgd_at(plan.rows, plan.cols);
        if (feedback && shape.step_timed_at(plan.rank)) {
          // The phases as timed back to back on this shape (ComputeRates::LowRankRates).
          low_rank_before_p += n * shape.step_before_p;
          low_rank_before_q += n * shape.step_before_q;
          low_rank_decode += n * shape.step_decode;
          break;
        }
        low_rank_before_p += work * shape.encode / 2 + (feedback ? n * rates.add : 0.0);
        low_rank_before_q += work * shape.encode / 2;
        // P Q^T into the output, then one pass for the error statistics and e <- M - P Q^T;
        // without error feedback P Q^T goes to scratch and is copied out.
        low_rank_decode += work * shape.decode + n * rates.norm + (feedback ? 0.0 : n * rates.copy);
        break;
      }
    }
  }

  // The step in the Reducer's order, with the link's token bucket (if any) refilled by
  // compute and spent by collectives.
  const double refill = bucket_refill_bytes_per_s(net);
  TokenBucket bucket(net.burst_bytes, refill, net.bucket_before_bytes, net.idle_before_s);
  auto compute = [&](double seconds, double* phase) {
    *phase += seconds;
    bucket.idle(seconds);
  };
  // A collective's bytes: those the bucket covers leave at wire speed, the rest at beta.
  // The bucket also refills during the collective's latency (after its bytes: conservative).
  auto credited = [&](double sent) {
    const double credit = bucket.spend(sent, net.wire_bytes_per_s);
    cost.comm += credit / net.wire_bytes_per_s;
    return credit;
  };
  auto allgather = [&](std::uint64_t block, const Link& link) {
    if (p <= 1 || !block) return;
    cost.comm += allgather_seconds(block, p, link, credited((p - 1.0) * block));
    bucket.idle(allgather_messages(block, p) * link.latency_s);
  };
  auto alltoall = [&](std::uint64_t block, const Link& link) {
    if (p <= 1 || !block) return;
    cost.comm += alltoall_seconds(block, p, link, credited((p - 1.0) * block));
    bucket.idle((fp - 1.0) * link.latency_s);
  };
  auto allreduce = [&](std::uint64_t bytes) {
    if (p <= 1 || bytes == 0) return;
    const double b = static_cast<double>(bytes);
    // The ring's 2(P-1) messages carry B/P each; recursive doubling's ceil(log2 P) carry B.
    const bool ring = bytes >= MpiTransport::kRingMinBytes;
    const double messages = ring ? 2.0 * (fp - 1.0) : std::ceil(std::log2(fp));
    const double sent = messages * (ring ? b / fp : b);
    cost.comm += allreduce_seconds(bytes, p, net.allreduce, credited(sent));
    bucket.idle(messages * net.allreduce.latency_s);
  };

  // The non-finite check, then the per-step control exchange (agreement).
  compute(check, &cost.encode);
  allgather(kControlBlockBytes, net.allgather);
  cost.bytes_sent += allgather_bytes(kControlBlockBytes, p);
  if (dense_elems) {
    const double n = static_cast<double>(dense_elems);
    // Packing and unpacking: none for one layer, reduced where it is; on the ring only the
    // layers below DenseAllreduce::kInPlaceMinBytes, the others travel where they are; below
    // the ring's threshold all of them. Then the sums, and the division by P, which the ring
    // does on the 1/P of the sum each rank finishes and MPI's route (below the ring
    // threshold) on the whole result as it copies it out.
    const bool ring = 4 * dense_elems >= MpiTransport::kRingMinBytes;
    const double packed =
        dense_layers <= 1 ? 0.0 : static_cast<double>(ring ? small_dense_elems : dense_elems);
    compute(packed * rates.copy, &cost.encode);
    allreduce(4 * dense_elems);
    if (p > 1) {
      const double divided = ring ? n / fp : n;
      compute(n * (fp - 1.0) / fp * rates.add + divided * rates.add + packed * rates.copy,
              &cost.decode);
    }
  }
  if (topk_block) {
    compute(topk_encode, &cost.encode);
    allgather(topk_block, net.allgather);
    compute(topk_decode, &cost.decode);
  }
  if (two_phase_block) {
    compute(two_phase_worker, &cost.encode);
    alltoall(two_phase_block, net.alltoall);
    compute(two_phase_server, &cost.decode);
    allgather(two_phase_block, net.allgather);
    compute(two_phase_decode, &cost.decode);
  }
  if (low_rank_p) {
    compute(low_rank_before_p, &cost.encode);
    allreduce(4 * low_rank_p);
    compute(low_rank_before_q, &cost.encode);
    allreduce(4 * low_rank_q);
    compute(low_rank_decode, &cost.decode);
  }
  cost.bucket_after_bytes = bucket.level();
  return cost;
}

BurstCall burst_call(const StepCost& step, double share, const Network& net) {
  if (share >= 1.0) return {step.total(), step.bucket_after_bytes};
  const double compute = step.encode + step.decode;
  BurstCall call{std::max(compute, compute * share + step.comm), step.bucket_after_bytes};
  const double refill = bucket_refill_bytes_per_s(net);
  if (!(refill > 0.0) || net.burst_bytes <= 0.0) return call;
  // (4 MiB onebit at 4 hosts on 2 cores and 200 Mbit/s sends 197 KB a call, more than its
  // 125 KB bucket: without this bound it was predicted at 6 ms a call, measured at 10-12.)
  const double sent = static_cast<double>(step.bytes_sent);
  const double level =
      TokenBucket(net.burst_bytes, refill, net.bucket_before_bytes, net.idle_before_s).level();
  const double beyond = std::max(0.0, sent - level);
  call.seconds = std::max(call.seconds, beyond / std::min(refill, net.allgather.bytes_per_s));
  call.bucket_after_bytes = std::clamp(level + refill * call.seconds - sent, 0.0, net.burst_bytes);
  return call;
}

StepCost predict_step(const std::vector<Layer>& layers, const Config& spec, int ranks,
                      const Network& net, const ComputeRates& rates) {
  return predict_step(layers, std::vector<Config>(layers.size(), spec), ranks, net, rates);
}

}  // namespace thinwire::detail::model
