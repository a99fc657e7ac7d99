#include "model/codec_rates.hpp"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "common/bytes.hpp"
#include "common/fail.hpp"
#include "common/timer.hpp"
#include "compress/low_rank.hpp"
#include "compress/onebit_error_memory.hpp"
#include "compress/topk_average.hpp"
#include "compress/topk_codec.hpp"
#include "compress/wire_format.hpp"
#include "model/cache_evictor.hpp"
#include "reducer/error_feedback.hpp"
#include "reducer/layer_plan.hpp"
#include "reducer/non_finite.hpp"

namespace thinwire::detail::model {

namespace {

// The `field` of a codec benchmark's case `name` (in its "results"), or null where no case of
// that name has it.
const nlohmann::json* find_case(const nlohmann::json& j, const std::string& name,
                                const char* field) {
  if (j.contains("results"))
    for (const auto& r : j["results"])
      if (r.value("name", "") == name && r.contains(field)) return &r[field];
  return nullptr;
}

bool has_case(const nlohmann::json& j, const std::string& name) {
  return find_case(j, name, "seconds") != nullptr;
}

double case_seconds(const nlohmann::json& j, const std::string& name) {
  if (const nlohmann::json* s = find_case(j, name, "seconds")) return s->get<double>();
  fail_with(ErrorCode::invalid_argument, "model", -1, "codec benchmark JSON has no case '", name,
            "' (expected the output of thinwire-bench-codec --json)");
}

// A case of thinwire-bench-codec-device's JSON: its median in seconds.
double device_case_seconds(const nlohmann::json& j, const std::string& name) {
  const nlohmann::json* ms = find_case(j, name, "median_ms");
  if (ms && ms->is_number() && ms->get<double>() > 0) return ms->get<double>() / 1e3;
  fail_with(ErrorCode::invalid_argument, "model", -1, "device codec benchmark JSON has no case '",
            name,
            "' with a median_ms > 0 (expected the output of thinwire-bench-codec-device --json)");
}

// The median of `repeats` samples after one untimed call: a codec's first call allocates its
// scratch (1-bit's error memory, qsgd's levels), and with a single timed call (the allreduce
// benchmark's probes) its page faults made 1-bit's step predictions up to 98 % slow. A sample
// is one call on cold caches or, with `min_timed_s`, the mean of cold calls until they add up
// to that long (at most kMaxSampleCalls): where ranks share cores, a single call of a few ms either
// runs through or waits out another rank's scheduler slice, while a step's kernels, back to
// back over its layers, see the average.
// `before`, untimed between the eviction and each timed call, leaves the caches as the step
// leaves them for the timed kernel.
template <typename Before, typename F>
double median_after(CacheEvictor& evictor, int repeats, double min_timed_s, Before&& before,
                    F&& body) {
  before();
  body();
  std::vector<double> times;
  for (int i = 0; i < std::max(1, repeats); ++i) {
    double sum = 0;
    int calls = 0;
    do {
      evictor.evict();
      before();
      Timer t;
      body();
      sum += t.seconds();
      ++calls;
    } while (sum < min_timed_s && calls < kMaxSampleCalls);
    times.push_back(sum / calls);
  }
  std::sort(times.begin(), times.end());
  const std::size_t m = times.size() / 2;
  return times.size() % 2 ? times[m] : 0.5 * (times[m - 1] + times[m]);
}

template <typename F>
double median_cold(CacheEvictor& evictor, int repeats, double min_timed_s, F&& body) {
  return median_after(
      evictor, repeats, min_timed_s, [] {}, body);
}

// Gradient-like test values in [-1, 1), from a 64-bit LCG: the kernels' speed must not depend
// on a value pattern that a real gradient lacks (all equal, all zero).
class SyntheticValues {
 public:
  explicit SyntheticValues(std::uint64_t seed) : state_(seed) {}
  float next() {
    state_ = state_ * 6364136223846793005ull + 1442695040888963407ull;
    return static_cast<float>(static_cast<std::int64_t>(state_ >> 11) - (std::int64_t{1} << 52)) *
           0x1.0p-52f;
  }

 private:
  std::uint64_t state_;
};

// Top-k's decode as a step runs it on a layer of `n` elements: {the zeroing per element, the
// rest per entry}.
std::pair<double, double> time_topk_average(const Config& spec, std::size_t n,
                                            CacheEvictor& evictor, int repeats,
                                            double min_timed_s) {
  std::vector<float> g(n), e(n), out(n);
  SyntheticValues values(0x2545f4914f6cdd1dull);
  for (std::size_t i = 0; i < n; ++i) {
    g[i] = values.next();
    e[i] = 0.1f * g[(i * 7919) % n];
  }
  const std::unique_ptr<Compressor> codec = make_codec(spec);
  auto& topk = static_cast<TopkCodec&>(*codec);
  std::vector<std::uint8_t> payload(codec->encoded_bytes(n));
  topk.encode_ef(e.data(), g.data(), n, EncodeKey{}, payload.data());
  // The step decodes into the gradient its encode has just read with the error memory
  // (x = g + e), and what of the two fits in cache is still there. Timed on cold caches, 4 MiB
  // steps (1 Mi elements) on 2 emulated hosts decoded in 0.56 ms against 0.97 predicted in
  // their bursts (2026-12-02, run not kept); after this pass, run o: 0.54-0.75 against
  // 0.55-0.71.
  auto after_encode = [&] { add_error_feedback(e.data(), out.data(), n); };
  const double fn = static_cast<double>(n);
  const double zero = median_after(evictor, repeats, min_timed_s, after_encode,
                                   [&] { std::memset(out.data(), 0, n * sizeof(float)); }) /
                      fn;
  // The rest as the step pays it (average_topk, after parsing the payloads): the payloads'
  // entries added, then the touched ones divided by P, with kTopkTimingPayloads payloads
  // (shifted_topk_payload) standing for the ranks'. One payload added repeatedly found its entries
  // in cache after the first round, and the division was not timed: 1.3-3.5 ns per entry on the
  // EPYC VM, where 64 MiB steps on 2 emulated hosts were predicted 14-22 % fast at 500 Mbit/s. The
  // layer's own size, not the sample's (a step scatters into one layer at a time): on one core of
  // that VM an entry cost 10-16 ns into a 4 MiB output and 34-54 ns into 64 MiB.
  constexpr int kRounds = kTopkTimingPayloads;
  const std::size_t k = topk_count(spec.density, n);
  std::vector<std::vector<std::uint8_t>> payloads;
  for (int i = 0; i < kRounds; ++i)
    payloads.push_back(shifted_topk_payload(payload, k, n, i * (n / kRounds) + i));
  std::vector<TopkCodec::View> views(kRounds);
  std::vector<std::uint64_t> touched;
  const double average = median_after(evictor, repeats, min_timed_s, after_encode, [&] {
    for (int i = 0; i < kRounds; ++i)
      views[i] = topk.parse(payloads[i].data(), payloads[i].size(), n, PayloadSource{});
    average_topk(views.data(), kRounds, out.data(), n, touched);
  });
  return {zero, k ? std::max(0.0, average - zero * fn) / (kRounds * static_cast<double>(k)) : 0.0};
}

// The cases of a codec benchmark that time the same kernels under each benchmark's names.
struct CodecCases {
  const char *copy, *topk_encode, *onebit_encode, *onebit_decode, *qsgd_encode, *qsgd_decode,
      *powersgd_encode, *powersgd_decode;
};

// Per-element rates of the named cases over `n` elements (PowerSGD's over n * 4, the rank it
// ran), `seconds(name)` a case's time. Derived: neither benchmark has PowerSGD's residual pass
// (its statistics and e <- x - y: about 2x memcpy on the development VM, two arrays read, one
// written, sums in double) or the non-finite check (one read pass, half of memcpy's traffic);
// top-k's decode zeroes its output first (half a copy). `add` and top-k's per-entry cost are
// the caller's.
template <typename Seconds>
ComputeRates rates_of_cases(double n, const CodecCases& c, Seconds&& seconds) {
  ComputeRates r;
  r.copy = seconds(c.copy) / n;
  r.norm = 2.0 * r.copy;
  r.check = r.copy / 2.0;
  r.topk_encode = seconds(c.topk_encode) / n;
  r.topk_decode_zero = r.copy / 2.0;
  r.onebit_encode = seconds(c.onebit_encode) / n;
  r.onebit_decode = seconds(c.onebit_decode) / n;
  r.qsgd_encode = seconds(c.qsgd_encode) / n;
  r.qsgd_decode = seconds(c.qsgd_decode) / n;
  r.powersgd_encode = seconds(c.powersgd_encode) / (n * 4.0);
  r.powersgd_decode = seconds(c.powersgd_decode) / (n * 4.0);
  return r;
}

// The kernels of one GPU, from thinwire-bench-codec-device: each case timed with CUDA events
// over `n` elements, L2 flushed before each run. The cases are the device path's own kernels:
// exact top-k (the default selection), the decode of one payload (zero + scatter), e += g for
// the sums, PowerSGD's three products and orthonormalisation over an n-element matrix.
ComputeRates rates_from_device_codec_json(const nlohmann::json& j) {
  if (!j.contains("n") || !j["n"].is_number() || !(j["n"].get<double>() > 0))
    fail_with(ErrorCode::invalid_argument, "model", -1,
              "device codec benchmark JSON has no 'n' > 0 (expected the output of "
              "thinwire-bench-codec-device --json)");
  const double n = j["n"].get<double>();
  auto seconds = [&](const char* name) { return device_case_seconds(j, name); };
  ComputeRates r =
      rates_of_cases(n,
                     {"memcpy_d2d", "topk_exact_ef_encode", "onebit_ef_encode_p1", "onebit_decode",
                      "qsgd4_ef_encode", "qsgd4_decode", "powersgd4_encode", "powersgd4_decode"},
                     seconds);
  r.add = seconds("ef_accumulate") / n;
  // One payload's k entries scattered after zeroing (the benchmark's own k where it says).
  const double k = j.contains("topk_k") && j["topk_k"].is_number()
                       ? j["topk_k"].get<double>()
                       : static_cast<double>(topk_count(0.01, static_cast<std::size_t>(n)));
  if (k > 0)
    r.topk_decode_entry =
        std::max(0.0, seconds("topk_decode_average_p1") - n * r.topk_decode_zero) / k;
  return r;
}

}  // namespace

ComputeRates rates_from_codec_json(const nlohmann::json& j) {
  if (j.contains("device") && j.contains("results")) return rates_from_device_codec_json(j);
  if (!j.contains("n"))
    fail_with(ErrorCode::invalid_argument, "model", -1,
              "codec benchmark JSON has no 'n' (expected the output of thinwire-bench-codec)");
  const double n = j["n"].get<double>();
  ComputeRates r = rates_of_cases(
      n,
      {"BM_memcpy", "BM_topk_ef_encode", "BM_onebit_ef_encode", "BM_onebit_decode",
       "BM_qsgd4_ef_encode", "BM_qsgd4_decode", "BM_powersgd4_encode", "BM_powersgd4_decode"},
      [&](const char* name) { return case_seconds(j, name); });
  r.add = r.copy;
  const double k = static_cast<double>(topk_count(0.01, static_cast<std::size_t>(n)));
  // The step's average of kTopkTimingPayloads payloads (BM_topk_average) where the JSON has
  // it. BM_topk_decode, one payload scattered repeatedly into warm caches with no division,
  // ran faster than the zeroing estimate subtracted here (3.96 ms against 4.0 on the Xeon VM):
  // an entry cost of 0, and a top-k decode that stayed flat from 2 to 4096 ranks.
  if (has_case(j, "BM_topk_average"))
    r.topk_decode_entry =
        std::max(0.0, case_seconds(j, "BM_topk_average") - n * r.topk_decode_zero) /
        (kTopkTimingPayloads * k);
  else
    r.topk_decode_entry =
        std::max(0.0, case_seconds(j, "BM_topk_decode") - n * r.topk_decode_zero) / k;
  return r;
}

ComputeRates measure_rates(const Config& spec, std::size_t rows, std::size_t cols, int repeats,
                           double min_timed_s, RateKernels which, std::size_t copies,
                           std::size_t topk_layer_n, std::size_t step_elements) {
  const std::size_t n = rows * cols;
  ComputeRates r;
  if (n == 0) return r;
  std::vector<float> g(n), e(n), out(n);
  SyntheticValues values(0x9e3779b97f4a7c15ull);
  for (std::size_t i = 0; i < n; ++i) {
    g[i] = values.next();
    e[i] = 0.1f * g[(i * 7919) % n];
  }
  const double fn = static_cast<double>(n);
  CacheEvictor evictor(sizeof(float) * (step_elements ? step_elements : n));
  if (which == RateKernels::base_and_codec) {
    r.copy = median_cold(evictor, repeats, min_timed_s,
                         [&] { std::memcpy(out.data(), g.data(), n * sizeof(float)); }) /
             fn;
    r.add = median_cold(evictor, repeats, min_timed_s,
                        [&] { add_error_feedback(out.data(), g.data(), n); }) /
            fn;
    volatile std::size_t first_bad = 0;  // a use of the result, so the scan is not dropped
    r.check = median_cold(evictor, repeats, min_timed_s,
                          [&] { first_bad = first_non_finite(TensorView::host(g.data(), n)); }) /
              fn;

    double sq_error = 0, sq_norm = 0;
    r.norm =
        median_cold(
            evictor, repeats, min_timed_s,
            [&] { low_rank::residual_update(e.data(), g.data(), n, true, &sq_error, &sq_norm); }) /
        fn;
  }

  // Each codec's worker step as the Reducer runs it with error feedback: top-k and 1-bit fuse
  // x = g + e into their pass (SparseAllgather, TwoPhase), qsgd adds first.
  const Method m = spec.method;
  if (m == Method::topk || m == Method::onebit || m == Method::qsgd) {
    std::unique_ptr<Compressor> codec = make_codec(spec);
    std::vector<std::uint8_t> payload(codec->encoded_bytes(n));
    OnebitErrorMemory onebit_memory;
    const std::size_t bounds[2] = {0, n};
    const double enc =
        median_cold(evictor, repeats, min_timed_s,
                    [&] {
                      if (m == Method::topk) {
                        static_cast<TopkCodec&>(*codec).encode_ef(e.data(), g.data(), n,
                                                                  EncodeKey{}, payload.data());
                      } else if (m == Method::onebit) {
                        onebit_memory.encode(g.data(), n, bounds, 1, EncodeKey{}, payload.data(),
                                             0);
                      } else {
                        add_error_feedback(e.data(), g.data(), n);
                        codec->encode(e.data(), n, EncodeKey{}, payload.data(), e.data());
                      }
                    }) /
        fn;
    // 1-bit and qsgd: one payload decoded over the layer.
    auto decode_rate = [&] {
      return median_cold(evictor, repeats, min_timed_s,
                         [&] {
                           codec->decode(payload.data(), payload.size(), n, out.data(),
                                         DecodeMode::assign, PayloadSource{});
                         }) /
             fn;
    };
    if (m == Method::topk) {
      r.topk_encode = enc;
      const auto [zero, entry] =
          time_topk_average(spec, topk_layer_n ? topk_layer_n : n, evictor, repeats, min_timed_s);
      r.topk_decode_zero = zero;
      r.topk_decode_entry = entry;
    } else if (m == Method::onebit) {
      r.onebit_encode = enc;
      r.onebit_decode = decode_rate();
    } else {
      r.qsgd_encode = enc;
      r.qsgd_decode = decode_rate();
    }
  } else if (m == Method::powersgd) {
    // `copies` matrices of the shape, each with its own P and Q, one after the other per call.
    const std::size_t rank = static_cast<std::size_t>(spec.rank);
    const std::size_t k = std::max<std::size_t>(1, copies);
    std::vector<float> mats(k > 1 ? k * n : 0), outs(k > 1 ? k * n : 0);
    for (std::size_t i = 0; i < mats.size(); ++i) mats[i] = g[i % n];
    float* const m0 = k > 1 ? mats.data() : g.data();
    float* const out0 = k > 1 ? outs.data() : out.data();
    std::vector<float> q(k * cols * rank), p(k * rows * rank);
    for (std::size_t c = 0; c < k; ++c)
      low_rank::random_init(q.data() + c * cols * rank, cols, rank, 1, 0, 0);
    const double work = fn * static_cast<double>(rank) * static_cast<double>(k);
    r.powersgd_encode = median_cold(evictor, repeats, min_timed_s,
                                    [&] {
                                      for (std::size_t c = 0; c < k; ++c) {
                                        const float* mat = m0 + c * n;
                                        float* pc = p.data() + c * rows * rank;
                                        float* qc = q.data() + c * cols * rank;
                                        low_rank::project(mat, rows, cols, qc, rank, pc);
                                        low_rank::orthonormalize(pc, rows, rank);
                                        low_rank::back_project(mat, rows, cols, pc, rank, qc);
                                      }
                                    }) /
                        work;
    r.powersgd_decode = median_cold(evictor, repeats, min_timed_s,
                                    [&] {
                                      for (std::size_t c = 0; c < k; ++c)
                                        low_rank::reconstruct(p.data() + c * rows * rank,
                                                              q.data() + c * cols * rank, rows,
                                                              cols, rank, out0 + c * n);
                                    }) /
                        work;
  }
  return r;
}

namespace {

template <typename R, typename F>
void for_each_rate(R& r, F&& f) {
  f("copy", r.copy);
  f("add", r.add);
  f("norm", r.norm);
  f("check", r.check);
  f("topk_encode", r.topk_encode);
  f("topk_decode_zero", r.topk_decode_zero);
  f("topk_decode_entry", r.topk_decode_entry);
  f("onebit_encode", r.onebit_encode);
  f("onebit_decode", r.onebit_decode);
  f("qsgd_encode", r.qsgd_encode);
  f("qsgd_decode", r.qsgd_decode);
  f("powersgd_encode", r.powersgd_encode);
  f("powersgd_decode", r.powersgd_decode);
}

}  // namespace

std::size_t topk_layer_elements(const std::vector<Layer>& layers, std::size_t max_elements) {
  std::size_t largest = 0;
  for (const Layer& l : layers) largest = std::max(largest, l.numel());
  return std::min(largest, max_elements);
}

std::size_t total_elements(const std::vector<Layer>& layers) {
  std::size_t n = 0;
  for (const Layer& l : layers) n += l.numel();
  return n;
}

std::pair<std::size_t, std::size_t> sample_shape(const std::vector<Layer>& layers,
                                                 std::size_t max_elements) {
  std::size_t rows = 1, cols = 1, total = 0;
  for (const Layer& l : layers) {
    total += l.numel();
    if (l.numel() > rows * cols) rows = l.rows(), cols = l.cols();
  }
  // More rows of the largest layer's width, as far as the layers' elements go: a step streams
  // all its layers through each kernel back to back, and a timed call on the largest layer
  // alone spreads its once-per-call costs over fewer elements. Timed on the 48-layer mix's
  // largest layer (1.3 M elements), the element-wise kernels came out 25-45 % slower per
  // element than on 4 Mi elements, though the mix's steps computed at the 64 MiB layer's speed.
  if (total > rows * cols && cols > 0) rows = std::max(rows, std::min(total, max_elements) / cols);
  while (rows * cols > max_elements) {
    if (rows >= cols)
      rows = (rows + 1) / 2;
    else
      cols = (cols + 1) / 2;
  }
  return {rows, cols};
}

std::vector<std::pair<std::size_t, std::size_t>> low_rank_shapes(const std::vector<Layer>& layers,
                                                                 const Config& spec) {
  std::vector<std::pair<std::size_t, std::size_t>> shapes;
  if (spec.method != Method::powersgd) return shapes;
  for (const Layer& l : layers) {
    const LayerPlan plan = make_plan(l, spec);
    if (plan.route == Route::low_rank) shapes.emplace_back(plan.rows, plan.cols);
  }
  std::sort(shapes.begin(), shapes.end());
  shapes.erase(std::unique(shapes.begin(), shapes.end()), shapes.end());
  return shapes;
}

ComputeRates::LowRankRates measure_low_rank_step(std::size_t rows, std::size_t cols,
                                                 std::size_t rank, double min_timed_s,
                                                 std::size_t step_elements) {
  const std::size_t n = rows * cols;
  ComputeRates::LowRankRates r;
  if (n == 0 || rank == 0) return r;
  std::vector<float> fresh(n), g(n), e(n, 0.0f), p(rows * rank), q(cols * rank);
  SyntheticValues values(0x2545f4914f6cdd1dull);
  for (float& v : fresh) v = values.next();
  low_rank::random_init(q.data(), cols, rank, 1, 0, 0);
  double sq_error = 0, sq_norm = 0;
  double phase[3] = {0, 0, 0};
  // LowRankAllreduce::run's compute with error feedback, its collectives left out.
  auto step = [&](bool timed) {
    Timer t;
    add_error_feedback(e.data(), g.data(), n);
    low_rank::project(e.data(), rows, cols, q.data(), rank, p.data());
    const double before_p = t.seconds();
    low_rank::orthonormalize(p.data(), rows, rank);
    low_rank::back_project(e.data(), rows, cols, p.data(), rank, q.data());
    const double before_q = t.seconds();
    low_rank::reconstruct(p.data(), q.data(), rows, cols, rank, g.data());
    low_rank::residual_update(e.data(), g.data(), n, true, &sq_error, &sq_norm);
    if (timed) {
      phase[0] += before_p;
      phase[1] += before_q - before_p;
      phase[2] += t.seconds() - before_q;
    }
  };
  CacheEvictor evictor(sizeof(float) * (step_elements ? step_elements : n));
  std::memcpy(g.data(), fresh.data(), n * sizeof(float));
  step(false);  // first-touch page faults
  int calls = 0;
  do {
    // As a step starts: caches cold but for the gradient, which the backward pass (or the
    // benchmark's copy-in) has just written.
    evictor.evict();
    std::memcpy(g.data(), fresh.data(), n * sizeof(float));
    step(true);
    ++calls;
  } while (phase[0] + phase[1] + phase[2] < min_timed_s && calls < kMaxSampleCalls);
  const double per_element = 1.0 / (static_cast<double>(n) * calls);
  r.step_before_p = phase[0] * per_element;
  r.step_before_q = phase[1] * per_element;
  r.step_decode = phase[2] * per_element;
  r.step_rank = static_cast<double>(rank);
  return r;
}

void measure_low_rank_shapes(const Config& spec, const std::vector<Layer>& layers,
                             std::size_t max_elements, double min_timed_s, ComputeRates* rates) {
  // The elements a step runs PowerSGD's kernels over back to back: all its matrix layers.
  std::size_t stream = 0;
  for (const Layer& l : layers)
    if (make_plan(l, spec).route == Route::low_rank) stream += l.numel();
  const std::size_t step_elements = total_elements(layers);
  stream = std::min(stream, max_elements);
  for (const auto& [rows, cols] : low_rank_shapes(layers, spec)) {
    const auto [r, c] = sample_shape(
        {Layer{"shape", {static_cast<std::int64_t>(rows), static_cast<std::int64_t>(cols)}}},
        max_elements);
    // Copies of a small shape up to that stream (sample_shape() says why): timed one at a time,
    // the mix's 576-wide shapes encoded at up to twice the per-element time of a 4096 x 4096
    // layer, while the mix's steps computed at about that layer's speed.
    const ComputeRates t =
        measure_rates(spec, r, c, 1, min_timed_s, RateKernels::codec_only,
                      std::max<std::size_t>(1, stream / (r * c)), 0, step_elements);
    ComputeRates::LowRankRates& out = rates->powersgd_by_shape[{rows, cols}];
    // The phases only on the layer's own shape: on a smaller sample more of them would stay in
    // cache than in the layer's step.
    if (spec.ef != ErrorFeedback::none && r * c == rows * cols)
      out = measure_low_rank_step(rows, cols, static_cast<std::size_t>(spec.rank), min_timed_s,
                                  step_elements);
    out.encode = t.powersgd_encode;
    out.decode = t.powersgd_decode;
  }
}

namespace {

constexpr const char* kShapeEncode = "powersgd_encode@";
constexpr const char* kShapeDecode = "powersgd_decode@";
constexpr const char* kStepBeforeP = "powersgd_step_before_p@";
constexpr const char* kStepBeforeQ = "powersgd_step_before_q@";
constexpr const char* kStepDecode = "powersgd_step_decode@";
constexpr const char* kStepRank = "powersgd_step_rank@";

// The per-shape fields and their keys' prefixes.
template <typename R, typename F>
void for_each_shape_rate(R& low_rank, F&& f) {
  f(kShapeEncode, low_rank.encode);
  f(kShapeDecode, low_rank.decode);
  f(kStepBeforeP, low_rank.step_before_p);
  f(kStepBeforeQ, low_rank.step_before_q);
  f(kStepDecode, low_rank.step_decode);
  f(kStepRank, low_rank.step_rank);
}

std::string shape_key(const char* prefix, std::size_t rows, std::size_t cols) {
  return std::string(prefix) + std::to_string(rows) + "x" + std::to_string(cols);
}

// "<prefix>ROWSxCOLS" -> (rows, cols); false for any other key.
bool parse_shape_key(const std::string& key, const char* prefix, std::size_t* rows,
                     std::size_t* cols) {
  const std::size_t n = std::strlen(prefix);
  if (key.compare(0, n, prefix) != 0) return false;
  unsigned long long r = 0, c = 0;
  char tail = 0;
  if (std::sscanf(key.c_str() + n, "%llux%llu%c", &r, &c, &tail) != 2) return false;
  *rows = static_cast<std::size_t>(r);
  *cols = static_cast<std::size_t>(c);
  return true;
}

}  // namespace

nlohmann::json rates_to_json(const ComputeRates& r) {
  nlohmann::json j = nlohmann::json::object();
  for_each_rate(r, [&](const char* name, double v) { j[name] = v; });
  // Every field of every shape, the untimed ones at 0: max_rates needs the same keys on every
  // rank.
  for (const auto& [shape, low_rank] : r.powersgd_by_shape)
    for_each_shape_rate(low_rank, [&, &shape = shape](const char* prefix, double v) {
      j[shape_key(prefix, shape.first, shape.second)] = v;
    });
  return j;
}

ComputeRates rates_from_json(const nlohmann::json& j) {
  ComputeRates r;
  for_each_rate(r, [&](const char* name, double& v) { v = j.value(name, 0.0); });
  for (const auto& item : j.items()) {
    // Named, not structured bindings: C++17 lambdas (clang) cannot capture those.
    const std::string& key = item.key();
    const nlohmann::json& value = item.value();
    std::size_t rows = 0, cols = 0;
    const char* field_of_key = nullptr;
    ComputeRates::LowRankRates none;
    for_each_shape_rate(none, [&](const char* prefix, double&) {
      if (!field_of_key && parse_shape_key(key, prefix, &rows, &cols)) field_of_key = prefix;
    });
    if (!field_of_key) continue;
    for_each_shape_rate(r.powersgd_by_shape[{rows, cols}], [&](const char* prefix, double& field) {
      if (prefix == field_of_key) field = value.get<double>();
    });
  }
  return r;
}

}  // namespace thinwire::detail::model
