// Where the cost model's compute rates come from: the codec benchmark's JSON
// (bench/results/codec_cpu.json, for the thinwire-cost-model CLI) or a short measurement of
// the library's own kernels on this rank (for auto's start-up probe).
#pragma once

#include <cstddef>
#include <nlohmann/json.hpp>
#include <utility>
#include <vector>

#include "model/cost_model.hpp"

namespace thinwire::detail::model {

// From the JSON thinwire-bench-codec writes: per-element seconds of each case over its `n`
// (PowerSGD's over n * 4, the rank it ran). Derived rates: add = copy (one memory-bound pass),
// topk_decode_zero = copy / 2 (memset writes what memcpy reads and writes), topk_decode_entry
// = what the 1%-density decode took beyond zeroing, per entry. The JSON of
// thinwire-bench-codec-device (it has a "device") gives one GPU's rates the same way, from its
// cases' medians: add = e += g, top-k's exact EF encode, the decode of one payload. Throws
// Error(invalid_argument) naming a missing case.
ComputeRates rates_from_codec_json(const nlohmann::json& codec_bench);

// Times this rank's kernels on a synthetic layer of `n` elements (a rows x cols matrix with
// rows * cols == n for PowerSGD), the median of `repeats` calls on cold caches, for the codec of
// `spec` (topk, onebit, qsgd or powersgd at its parameter), after the base kernels (copy, add,
// check, norm; for none only those). Rates of other codecs stay 0. With `min_timed_s`, each of the
// `repeats` samples is the mean of cold calls adding up to that long (at most kMaxSampleCalls), for
// ranks that share cores. RateKernels::codec_only leaves the base kernels (copy, add, check, norm)
// at 0, for callers that time them once and then every codec (the benchmark's probes).
inline constexpr int kMaxSampleCalls = 16;
enum class RateKernels { base_and_codec, codec_only };
// PowerSGD's kernels run over `copies` distinct rows x cols matrices in each timed call, as a
// step runs them over its layers back to back (its rates stay per element of work). Top-k's
// decode (zeroing, then P payloads' entries added and divided) is timed on a layer of
// `topk_layer_n` elements (0: rows * cols), as a step decodes one layer at a time: its entries'
// cost depends on the size of the output they land in (topk_layer_elements()). The caches are
// left before each timed call as a step of `step_elements` (0: rows * cols) leaves them: with
// as many bytes written (CacheEvictor says why), at most the cache's size.
ComputeRates measure_rates(const Config& spec, std::size_t rows, std::size_t cols, int repeats,
                           double min_timed_s = 0.0,
                           RateKernels which = RateKernels::base_and_codec, std::size_t copies = 1,
                           std::size_t topk_layer_n = 0, std::size_t step_elements = 0);

// The layer size to time top-k's decode on: the largest layer's elements, at most
// `max_elements` (kTopkLayerMaxElements: a 64 MiB f32 layer).
inline constexpr std::size_t kTopkLayerMaxElements = std::size_t{1} << 24;
std::size_t topk_layer_elements(const std::vector<Layer>& layers, std::size_t max_elements);

// The elements a step writes before its kernels run: all its layers' (measure_rates()'s
// `step_elements`).
std::size_t total_elements(const std::vector<Layer>& layers);

// The shape to time kernels on: the largest layer's width, with as many rows as the layers have
// elements in all (a step streams them back to back), at least the largest layer's rows; then
// halved along its longer side until it has at most `max_elements`. One layer: its own shape.
std::pair<std::size_t, std::size_t> sample_shape(const std::vector<Layer>& layers,
                                                 std::size_t max_elements);

// The distinct (rows, cols) of the layers that `spec` (PowerSGD) reduces as matrices, sorted;
// none for other methods.
std::vector<std::pair<std::size_t, std::size_t>> low_rank_shapes(const std::vector<Layer>& layers,
                                                                 const Config& spec);

// Times PowerSGD's two kernels once per shape of low_rank_shapes() (a shape over
// `max_elements` on its sample_shape(), keyed by its own), as measure_rates(spec, ..., 1,
// min_timed_s, codec_only, copies) does, into rates->powersgd_by_shape: a shape smaller than
// the matrix layers' elements in all (at most `max_elements`) in as many copies as fit them. With
// error feedback, a shape within `max_elements` also gets its step phases (measure_low_rank_step).
void measure_low_rank_shapes(const Config& spec, const std::vector<Layer>& layers,
                             std::size_t max_elements, double min_timed_s, ComputeRates* rates);

// PowerSGD's three compute phases with error feedback on a rows x cols layer at `rank`, timed
// back to back as LowRankAllreduce runs them, from caches cold but for a freshly written
// gradient; the mean of calls adding up to `min_timed_s` (at most kMaxSampleCalls), after one
// untimed call. Fills the step_* fields of the result (seconds per element of the layer).
ComputeRates::LowRankRates measure_low_rank_step(std::size_t rows, std::size_t cols,
                                                 std::size_t rank, double min_timed_s,
                                                 std::size_t step_elements = 0);

// The rates as {"copy": s, "add": s, ...} (seconds per unit of work) and back; missing
// fields read as 0. PowerSGD's per-shape rates are "powersgd_encode@ROWSxCOLS",
// "powersgd_decode@ROWSxCOLS" and the step phases' "powersgd_step_before_p@", "..._before_q@",
// "..._decode@" and "powersgd_step_rank@" (every field of a shape, 0 if untimed), so that medians
// and maxima per key (the benchmark's probes, max_rates) treat them like the others.
nlohmann::json rates_to_json(const ComputeRates& r);
ComputeRates rates_from_json(const nlohmann::json& j);

}  // namespace thinwire::detail::model
