#include "model/cost_model.hpp"

#include <cmath>
#include <map>
#include <memory>

#include "algorithm/two_phase.hpp"
#include "common/fail.hpp"
#include "compress/topk_codec.hpp"
#include "reducer/agreement.hpp"
#include "reducer/layer_plan.hpp"
#include "reducer/step.hpp"
#include "transport/mpi_transport.hpp"

namespace thinwire::detail::model {

double allreduce_seconds(std::uint64_t bytes, int ranks, const Link& link) {
  if (ranks <= 1 || bytes == 0) return 0.0;
  const double b = static_cast<double>(bytes), p = ranks;
  if (bytes >= MpiTransport::kRingMinBytes)
    return 2.0 * (p - 1.0) * (link.latency_s + b / (p * link.bytes_per_s));
  return std::ceil(std::log2(p)) * (link.latency_s + b / link.bytes_per_s);
}

double allgather_seconds(std::uint64_t block_bytes, int ranks, const Link& link) {
  if (ranks <= 1 || block_bytes == 0) return 0.0;
  return (ranks - 1.0) * (link.latency_s + static_cast<double>(block_bytes) / link.bytes_per_s);
}

double alltoall_seconds(std::uint64_t block_bytes, int ranks, const Link& link) {
  return allgather_seconds(block_bytes, ranks, link);
}

ComputeRates ComputeRates::scaled(double share) const {
  ComputeRates r = *this;
  for (double* v : {&r.copy, &r.add, &r.norm, &r.topk_encode, &r.topk_decode_zero,
                    &r.topk_decode_entry, &r.onebit_encode, &r.onebit_decode, &r.qsgd_encode,
                    &r.qsgd_decode, &r.powersgd_encode, &r.powersgd_decode})
    *v /= share;
  return r;
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
  // Collectives are fused per route (one buffer per collective for all its layers).
  std::uint64_t dense_elems = 0, topk_block = 0, two_phase_block = 0, low_rank_p = 0,
                low_rank_q = 0;
  std::size_t dense_layers = 0;
  std::map<std::string, std::unique_ptr<Compressor>> codecs;

  for (std::size_t i = 0; i < layers.size(); ++i) {
    const LayerPlan plan = make_plan(layers[i], specs[i]);
    const double n = static_cast<double>(plan.numel);
    if (plan.numel == 0) continue;
    std::unique_ptr<Compressor>& codec = codecs[plan.spec];
    if (!codec) codec = make_codec(specs[i]);
    switch (plan.route) {
      case Route::dense:
        dense_elems += plan.numel;
        ++dense_layers;
        cost.bytes_sent += allreduce_bytes(4 * plan.numel, p);
        break;
      case Route::topk: {
        const std::uint64_t payload = codec->encoded_bytes(plan.numel);
        topk_block += payload;
        cost.bytes_sent += allgather_bytes(payload, p);
        const double k = static_cast<double>(topk_count(specs[i].density, plan.numel));
        cost.encode += n * rates.topk_encode;
        cost.decode += n * rates.topk_decode_zero + fp * k * rates.topk_decode_entry;
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
        cost.encode += n * enc;
        cost.decode += n * dec + n / fp * (rates.add + enc) + n * dec;
        break;
      }
      case Route::low_rank: {
        const double work = static_cast<double>(plan.rows) * static_cast<double>(plan.cols) *
                            static_cast<double>(plan.rank);
        low_rank_p += plan.rows * plan.rank;
        low_rank_q += plan.cols * plan.rank;
        cost.bytes_sent += allreduce_bytes(4 * plan.rows * plan.rank, p) +
                           allreduce_bytes(4 * plan.cols * plan.rank, p);
        // x = g + e (error feedback), M Q, orthonormalisation, M^T P.
        const bool feedback = specs[i].ef != ErrorFeedback::none;
        cost.encode += work * rates.powersgd_encode + (feedback ? n * rates.add : 0.0);
        // P Q^T, the error statistics, e <- M - P Q^T (error feedback), the result's copy.
        cost.decode += work * rates.powersgd_decode + n * rates.norm +
                       (feedback ? n * rates.add : 0.0) + n * rates.copy;
        break;
      }
    }
  }

  if (dense_elems) {
    const double n = static_cast<double>(dense_elems);
    // Packing (unless one layer is reduced in place), the ring's sums, the division by P.
    if (dense_layers > 1) cost.encode += n * rates.copy;
    cost.comm += allreduce_seconds(4 * dense_elems, p, net.allreduce);
    if (p > 1) cost.decode += n * (fp - 1.0) / fp * rates.add + n * rates.add;
  }
  cost.comm += allgather_seconds(topk_block, p, net.allgather);
  cost.comm += alltoall_seconds(two_phase_block, p, net.alltoall) +
               allgather_seconds(two_phase_block, p, net.allgather);
  cost.comm += allreduce_seconds(4 * low_rank_p, p, net.allreduce) +
               allreduce_seconds(4 * low_rank_q, p, net.allreduce);
  // The per-step control exchange (agreement).
  cost.comm += allgather_seconds(kControlBlockBytes, p, net.allgather);
  cost.bytes_sent += allgather_bytes(kControlBlockBytes, p);
  return cost;
}

StepCost predict_step(const std::vector<Layer>& layers, const Config& spec, int ranks,
                      const Network& net, const ComputeRates& rates) {
  return predict_step(layers, std::vector<Config>(layers.size(), spec), ranks, net, rates);
}

}  // namespace thinwire::detail::model
