#include "model/auto_policy.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <map>
#include <thread>

#include "common/fail.hpp"
#include "common/logging.hpp"
#include "common/machine.hpp"
#include "common/timer.hpp"
#include "model/auto_trial.hpp"
#include "model/codec_rates.hpp"
#include "reducer/layer_plan.hpp"
#include "reducer/reducer_impl.hpp"
#include "transport/mpi_transport.hpp"

namespace thinwire::detail::model {

namespace {

// A call should take this long for its time to say something about bandwidth.
// (20 ms: well beyond what a token-bucket shaper lets through at once, e.g. tbf's burst.)
constexpr double kProbeTargetSeconds = 0.020;
constexpr std::size_t kProbeMaxBytes = std::size_t{32} << 20;  // sent per rank
constexpr int kProbeRepeats = 2;
constexpr std::size_t kSampleMaxElements = std::size_t{1} << 22;

Config compressed(const Config& a, double density, int bits, int rank) {
  Config c = a;
  c.method = a.family;
  c.family = Method::none;
  c.density = density;
  c.bits = bits;
  c.rank = rank;
  if (c.method != Method::topk) c.density = 0.0;
  if (c.method != Method::qsgd) c.bits = 0;
  if (c.method != Method::powersgd) c.rank = 0;
  return c;
}

// Seconds of one collective on this rank: the best of kProbeRepeats after a warm-up call,
// each after a barrier.
template <typename F>
double time_collective(Transport& t, F&& call) {
  call();
  double best = std::numeric_limits<double>::infinity();
  for (int i = 0; i < kProbeRepeats; ++i) {
    t.barrier();
    Timer timer;
    call();
    best = std::min(best, timer.seconds());
  }
  return best;
}

double max_over_ranks(Transport& t, double v) {
  t.allreduce(&v, 1, ElementType::f64, ReduceOp::max);
  return v;
}

// One kind of collective: `run(s)` runs it at size s (what it is a size of is up to the
// caller), `sent(s)` is the bytes a rank sends and `messages(s)` the messages it sends per call.
// Sizes grow 4x from s0 until a call takes kProbeTargetSeconds (maxed over ranks, so every
// rank stops at the same size); the last two points give the bandwidth, the first the latency.
template <typename Run, typename Sent, typename Messages>
Link probe_link(Transport& t, std::size_t s0, std::size_t s_max, Run&& run, Sent&& sent,
                Messages&& messages) {
  std::size_t s = s0, s_prev = s0, s_last = s0;
  double t_first = 0, v_first = 0, t_prev = 0, v_prev = 0, t_last = 0, v_last = 0;
  for (int i = 0;; ++i) {
    const double seconds = max_over_ranks(t, time_collective(t, [&] { run(s); }));
    t_prev = t_last, v_prev = v_last, s_prev = s_last;
    t_last = seconds, v_last = static_cast<double>(sent(s)), s_last = s;
    if (i == 0) t_first = t_last, v_first = v_last;
    if (i >= 1 && (seconds >= kProbeTargetSeconds || s * 4 > s_max)) break;
    s *= 4;
  }
  Link link;
  const double dv = v_last - v_prev;
  // Where the last two calls sent different numbers of messages (an allgather that went in
  // rounds below MpiTransport::kLogAllgatherMaxBlockBytes and directly above), their latency
  // terms differ: the second pass takes the difference out of the bandwidth's time.
  const double extra_messages = messages(s_last) - messages(s_prev);
  for (int pass = 0; pass < 2; ++pass) {
    const double dt = t_last - t_prev - extra_messages * link.latency_s;
    link.bytes_per_s = dt > 0 ? dv / dt : v_last / t_last;
    // Latency: what the first (smallest) call took beyond its bytes, per message.
    link.latency_s = std::max(0.0, (t_first - v_first / link.bytes_per_s) / messages(s0));
  }
  return link;
}

std::string spec_summary(const std::vector<Config>& specs) {
  std::map<std::string, int> count;
  for (const Config& c : specs) ++count[c.to_string()];
  std::string s;
  for (const auto& [spec, n] : count) s += cat(s.empty() ? "" : ", ", spec, " x", n);
  return s;
}

}  // namespace

ComputeRates max_rates(Transport& t, const ComputeRates& r) {
  nlohmann::json j = rates_to_json(r);
  std::vector<double> values;
  for (const auto& [name, v] : j.items()) values.push_back(v.get<double>());
  // Per-shape rates add keys: every rank must hold the same ones (the same layers), or the
  // maxima below would pair different rates.
  double count[2] = {static_cast<double>(values.size()), -static_cast<double>(values.size())};
  t.allreduce(count, 2, ElementType::f64, ReduceOp::max);
  if (count[0] != -count[1])
    fail_with(ErrorCode::invalid_argument, "model", -1, "max_rates: ranks hold ", -count[1], " to ",
              count[0], " rates (expected the same per-shape rates on every rank)");
  t.allreduce(values.data(), values.size(), ElementType::f64, ReduceOp::max);
  std::size_t i = 0;
  for (auto& [name, v] : j.items()) v = values[i++];
  return rates_from_json(j);
}

std::vector<Config> auto_candidates(const Config& a) {
  Config dense;
  dense.nan = a.nan;
  std::vector<Config> out = {dense};
  switch (a.family) {
    case Method::onebit:
      out.push_back(compressed(a, 0, 0, 0));
      break;
    case Method::topk: {
      for (double d : {0.1, 0.03, 0.01, 0.003, 0.001})
        if (d > a.density) out.push_back(compressed(a, d, 0, 0));
      out.push_back(compressed(a, a.density, 0, 0));
      break;
    }
    case Method::qsgd:
      for (int b : {8, 6, 4, 3, 2})
        if (b > a.bits) out.push_back(compressed(a, 0, b, 0));
      out.push_back(compressed(a, 0, a.bits, 0));
      break;
    case Method::powersgd:
      for (int r : {32, 16, 8, 4, 2, 1})
        if (r > a.rank) out.push_back(compressed(a, 0, 0, r));
      out.push_back(compressed(a, 0, 0, a.rank));
      break;
    default:
      break;
  }
  return out;
}

std::string Calibration::describe() const {
  auto link = [](const Link& l) {
    return cat(l.bytes_per_s * 8e-9, " Gbit/s, ", l.latency_s * 1e6, " us");
  };
  return cat("allreduce ", link(net.allreduce), "; allgather ", link(net.allgather), "; alltoall ",
             link(net.alltoall), "; copy ", rates.copy * 1e9, " ns/elem (a core share of ",
             cpu_share, "); probe ", probe_seconds, " s");
}

AutoDecision decide(const std::vector<Layer>& layers, const Config& a, int ranks,
                    const Calibration& cal) {
  const std::vector<Config> cands = auto_candidates(a);
  constexpr double kInf = std::numeric_limits<double>::infinity();
  // Per layer: the most faithful option within the slack of its cheapest (`faithful`), and
  // its cheapest compressed option (`compressed`; dense when none applies).
  std::vector<std::size_t> faithful(layers.size(), 0), compressed(layers.size(), 0);
  for (std::size_t i = 0; i < layers.size(); ++i) {
    const Layer& layer = layers[i];
    if (layer.numel() == 0) continue;
    // Marginal cost of each option for this layer alone: latencies are shared by all layers
    // of a route, so they are weighed for the whole step below. A dense layer is packed with
    // the other dense layers (one copy), as it is in nearly every model.
    std::vector<double> cost(cands.size(), kInf);
    for (std::size_t c = 0; c < cands.size(); ++c) {
      if (c > 0) {
        if (make_plan(layer, cands[c]).route == Route::dense) continue;  // same as dense
        if (cands[c].method == Method::topk &&
            layer.numel() > std::numeric_limits<std::uint32_t>::max())
          continue;  // 32-bit indices
      }
      cost[c] = predict_step({layer}, {cands[c]}, ranks, cal.net, cal.rates, false).total();
    }
    cost[0] += static_cast<double>(layer.numel()) * cal.rates.copy;
    const double best = *std::min_element(cost.begin(), cost.end());
    for (std::size_t c = 0; c < cands.size(); ++c)
      if (cost[c] <= (1.0 + kAutoSlack) * best) {
        faithful[i] = c;
        break;
      }
    const auto cheapest = std::min_element(cost.begin() + 1, cost.end());
    compressed[i] = faithful[i] != 0 ? faithful[i]
                    : cheapest != cost.end() && *cheapest < kInf
                        ? static_cast<std::size_t>(cheapest - cost.begin())
                        : 0;
  }
  // Whole steps, latencies included, from the most faithful: all dense; the per-layer choice;
  // the per-layer choice with no layer dense that need not be (a dense route of a few small
  // layers can cost more in ring latency than their bytes). The most faithful within the
  // slack of the fastest wins, so a close call goes to dense.
  auto specs_of = [&](const std::vector<std::size_t>& choice) {
    std::vector<Config> s;
    for (std::size_t c : choice) s.push_back(cands[c]);
    return s;
  };
  const std::vector<std::vector<std::size_t>> options = {std::vector<std::size_t>(layers.size(), 0),
                                                         faithful, compressed};
  std::vector<StepCost> costs;
  for (const auto& o : options)
    costs.push_back(predict_step(layers, specs_of(o), ranks, cal.net, cal.rates));
  double fastest = kInf;
  for (const StepCost& c : costs) fastest = std::min(fastest, c.total());
  std::size_t pick = 0;
  while (costs[pick].total() > (1.0 + kAutoSlack) * fastest) ++pick;
  AutoDecision d;
  d.choice = options[pick];
  d.specs = specs_of(d.choice);
  d.predicted = costs[pick];
  d.dense = costs[0];
  return d;
}

HostPeers peers_by(Transport& t, const std::string& id) {
  constexpr std::size_t kName = 256;
  char name[kName] = {};
  std::memcpy(name, id.data(), std::min(id.size(), kName - 1));
  const int p = t.size(), rank = t.rank();
  std::vector<char> all(kName * static_cast<std::size_t>(p));
  if (p > 1)
    t.allgather(name, all.data(), kName);
  else
    std::memcpy(all.data(), name, kName);
  HostPeers h{0, 0};
  for (int r = 0; r < p; ++r) {
    const bool same =
        std::memcmp(all.data() + kName * static_cast<std::size_t>(r), name, kName) == 0;
    h.ranks += same;
    h.index += same && r < rank;
  }
  return h;
}

HostPeers host_peers(Transport& t) {
  return peers_by(t, machine_id());
}

double HostPeers::cpu_share() const {
  const double cores = std::max(1u, std::thread::hardware_concurrency());
  return std::min(1.0, cores / ranks);
}

Calibration calibrate(Transport& t, const std::vector<Layer>& layers, const Config& a) {
  Timer total;
  Calibration cal;
  const int p = t.size();
  const double fp = p;
  if (p > 1) {
    std::vector<float> buf;
    std::vector<std::uint8_t> send, recv;
    // Dense sums (and PowerSGD's factors) use the allreduce; start at the ring's threshold.
    // No bigger than the model's own collectives: a small model's step is latency-bound, and
    // the probe then measures that regime (and stays short).
    std::size_t model_bytes = 0;
    for (const Layer& l : layers) model_bytes += 4 * l.numel();
    const std::size_t sum_max = std::clamp<std::size_t>(
        model_bytes, 4 * MpiTransport::kRingMinBytes, kProbeMaxBytes * p / (2 * (p - 1)));
    cal.net.allreduce = probe_link(
        t, MpiTransport::kRingMinBytes, sum_max,
        [&](std::size_t bytes) {
          buf.assign(bytes / 4, 1.0f);
          t.allreduce(buf.data(), buf.size(), ElementType::f32, ReduceOp::sum);
        },
        [&](std::size_t bytes) { return allreduce_bytes(bytes, p); },
        [&](std::size_t) { return 2.0 * (fp - 1.0); });
    cal.net.allgather = cal.net.alltoall = cal.net.allreduce;
    const std::size_t block0 = 4096;
    const std::size_t block_max =
        std::clamp<std::size_t>(model_bytes / static_cast<std::size_t>(p), 4 * block0,
                                kProbeMaxBytes / static_cast<std::size_t>(p - 1));
    auto sent = [&](std::size_t block) { return allgather_bytes(block, p); };
    if (a.family == Method::topk || a.family == Method::onebit || a.family == Method::qsgd)
      cal.net.allgather = probe_link(
          t, block0, block_max,
          [&](std::size_t block) {
            send.assign(block, 1);
            recv.resize(block * static_cast<std::size_t>(p));
            t.allgather(send.data(), recv.data(), block);
          },
          sent, [&](std::size_t block) { return allgather_messages(block, p); });
    if (a.family == Method::onebit || a.family == Method::qsgd)
      cal.net.alltoall = probe_link(
          t, block0, block_max,
          [&](std::size_t block) {
            send.assign(block * static_cast<std::size_t>(p), 1);
            recv.resize(block * static_cast<std::size_t>(p));
            t.alltoall(send.data(), recv.data(), block);
          },
          sent, [&](std::size_t) { return fp - 1.0; });
  }
  // Kernels, on a sample as wide as the largest layer (sample_shape()), timed by one rank per
  // machine while the machine's other ranks wait in the collective that gathers the rates: one
  // core's rates, then divided by the share of a core each rank gets when all of the machine's
  // ranks compute, as they do in a step. (Timed on all ranks at once, a short timed call that was
  // preempted was charged a whole scheduler time slice: with 4 ranks on 2 cores the rates came out
  // up to 2x what steps pay, and `auto` kept dense where onebit ran 1.8x faster.)
  const HostPeers host = host_peers(t);
  const auto [rows, cols] = sample_shape(layers, kSampleMaxElements);
  std::vector<Config> cands = auto_candidates(a);
  ComputeRates rates;
  const std::size_t step_elements = total_elements(layers);
  if (host.index == 0)
    rates = measure_rates(cands.back(), rows, cols, kProbeRepeats, 0.0, RateKernels::base_and_codec,
                          1, topk_layer_elements(layers, kTopkLayerMaxElements), step_elements);
  if (p > 1) rates = max_rates(t, rates);
  cal.cpu_share = host.cpu_share();
  cal.rates = rates.scaled(cal.cpu_share);
  cal.probe_seconds = p > 1 ? max_over_ranks(t, total.seconds()) : total.seconds();
  return cal;
}

void apply_auto(ReducerImpl& r) {
  const Config& a = r.config_;
  const int p = r.comm_.size();
  const Calibration cal = calibrate(r.transport_, r.layers_, a);
  AutoDecision d = decide(r.layers_, a, p, cal);
  const std::vector<Config> cands = auto_candidates(a);
  // A compressed choice with a small predicted gain is tried against dense on real steps
  // (model/auto_trial.hpp).
  const bool compresses = std::any_of(d.specs.begin(), d.specs.end(),
                                      [](const Config& c) { return c.method != Method::none; });
  const bool trial = p > 1 && compresses && d.dense.total() < kTrialBelowGain * d.predicted.total();
  // Rank 0 decides for everyone: even a rank whose arithmetic differed could not diverge.
  std::vector<std::uint32_t> choice(d.choice.begin(), d.choice.end());
  choice.push_back(trial ? 1u : 0u);
  r.transport_.broadcast(choice.data(), choice.size() * 4, 0);
  const bool try_it = choice.back() != 0;
  choice.pop_back();
  for (std::size_t i = 0; i < choice.size(); ++i)
    d.specs[i] = cands[std::min<std::size_t>(choice[i], cands.size() - 1)];
  r.put_layers_under(d.specs);
  if (try_it)
    r.auto_trial_.start(d.specs, std::vector<Config>(d.specs.size(), cands.front()));
  else
    r.auto_trial_.cancel();
  TW_LOG(info, "auto '", a.to_string(), "' on ", p, " ranks: ", cal.describe());
  TW_LOG(info, "auto chose ", spec_summary(d.specs), "; predicted step ", d.predicted.total(),
         " s (comm ", d.predicted.comm, " s), all-dense ", d.dense.total(), " s",
         try_it ? cat("; tried against dense on the next ", AutoTrial::kSteps, " steps") : "");
}

}  // namespace thinwire::detail::model
