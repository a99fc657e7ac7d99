// thinwire-cost-model: predicted time of one allreduce step per method, for P ranks and a link
// rate, from the library's cost model (src/model/): alpha-beta terms for the collectives, the
// payloads the library itself would send, encode/decode rates from the codec benchmark JSON.
//
//   thinwire-cost-model [--layers single|mix --size 64M | --layer-file layers.json]
//                       [--methods none,onebit,...] [--ranks 2,4,...] [--gbps 0.1,1,...]
//                       [--latency-us 10] [--efficiency 0.956] [--cpu-share 1]
//                       [--codec-json bench/results/codec_cpu.json] [--json FILE]
//   (--codec-json: thinwire-bench-codec's JSON, one CPU core, or thinwire-bench-codec-device's,
//   one GPU)
//   thinwire-cost-model --validate bench.json [more.json...] [--wire unshaped.json] [--json FILE]
//
// --validate predicts every result of thinwire-bench-allreduce JSON files (runs on the
// emulated cluster, whose rate and tbf bucket the JSON records) and prints predicted vs
// measured; --wire names a run on the same links unshaped, whose dense rate per rank is what
// the bucket's bytes leave at.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include <boost/program_options.hpp>

#include "bench_common.hpp"
#include "bench_layers.hpp"
#include "median.hpp"
#include "model/auto_policy.hpp"
#include "model/codec_rates.hpp"
#include "model/cost_model.hpp"
#include "tc_units.hpp"

namespace po = boost::program_options;
namespace tb = thinwire::bench;
using tb::parse_rate_bits;
using tb::parse_size_bytes;
namespace twm = thinwire::detail::model;
using nlohmann::json;

namespace {

// TCP over Ethernet: 1448 payload bytes (MSS with timestamps) per 1514-byte frame.
constexpr double kTcpEfficiency = 1448.0 / 1514.0;

// The whole of `text` as a finite number; false when it is not one.
bool whole_finite_number(const std::string& text, double* v) {
  std::size_t pos = 0;
  try {
    *v = std::stod(text, &pos);
  } catch (const std::exception&) {
    return false;
  }
  return pos != 0 && pos == text.size() && std::isfinite(*v);
}

// The whole of `text` as a finite number, or invalid_argument naming `option`.
double parse_number(const std::string& text, const char* option) {
  double v = 0;
  if (!whole_finite_number(text, &v))
    throw std::invalid_argument(std::string(option) + ": '" + text + "' is not a finite number");
  return v;
}

// The whole of `text` as an integer in [1, 2^31), or invalid_argument naming `option`.
int parse_count(const std::string& text, const char* option) {
  double v = 0;
  if (!whole_finite_number(text, &v) || v != std::floor(v) || v < 1 || v > 2147483647.0)
    throw std::invalid_argument(std::string(option) + ": '" + text + "' is not an integer >= 1");
  return static_cast<int>(v);
}

// The emulated cluster's tbf bucket: what the launcher recorded, else its default (5 ms at
// the rate, at least 64 KiB; runs before the launcher recorded it used that default).
double emulated_burst_bytes(const json& link, double rate_bits) {
  if (link.contains("burst")) return parse_size_bytes(link.at("burst").get<std::string>());
  return std::max(65536.0, rate_bits / 8.0 * 0.005);
}

// The links' own speed, what a tbf bucket's bytes leave at: bytes per second one rank sent in
// thinwire's dense allreduce (`none`, largest size) of a run on unshaped emulated links.
double wire_bytes_per_s_from(const std::string& path) {
  std::ifstream f(path);
  if (!f) throw std::runtime_error("cannot read " + path);
  json j;
  try {
    j = json::parse(f);
    if (!j.contains("link") || !j["link"].contains("emulated") || !j["link"].contains("rate"))
      throw std::runtime_error("no 'link' with 'emulated' and 'rate'");
  } catch (const std::exception& e) {
    throw std::runtime_error(path + ": not a thinwire-bench-allreduce JSON (" + e.what() + ")");
  }
  if (!j.at("link").at("emulated").get<bool>() || j.at("link").at("rate") != "none")
    throw std::runtime_error(path +
                             ": --wire needs a run on unshaped emulated links (--rate none)");
  double best = 0, size = 0;
  for (const auto& r : j.at("results"))
    if (r.at("method") == "none" && r.at("size_bytes").get<double>() > size) {
      size = r.at("size_bytes").get<double>();
      best = r.at("bytes_sent").get<double>() / r.at("time_median_s").get<double>();
    }
  if (!(best > 0))
    throw std::runtime_error(path + ": no 'none' result to take the wire speed from");
  return best;
}

// [{"name": "fc1.weight", "shape": [256, 784]}, ...]: at least one layer, each dimension an
// integer >= 1 and the layer under 2^62 elements.
std::vector<thinwire::Layer> read_layer_file(const std::string& path) {
  std::ifstream f(path);
  if (!f) throw std::runtime_error("cannot read " + path);
  const std::string expected =
      "; expected [{\"name\": \"fc1.weight\", \"shape\": [256, 784]}, ...]";
  json j;
  try {
    j = json::parse(f);
  } catch (const std::exception& e) {
    throw std::runtime_error(path + ": not JSON (" + e.what() + ")" + expected);
  }
  if (!j.is_array() || j.empty()) throw std::runtime_error(path + ": no layers" + expected);
  std::vector<thinwire::Layer> layers;
  for (std::size_t i = 0; i < j.size(); ++i) {
    const json& l = j[i];
    const std::string where = path + ": layer " + std::to_string(i);
    if (!l.is_object() || !l.contains("name") || !l["name"].is_string() || !l.contains("shape") ||
        !l["shape"].is_array())
      throw std::runtime_error(where + " has no string 'name' and array 'shape'" + expected);
    thinwire::Layer layer{l["name"].get<std::string>(), {}};
    double numel = 1;
    for (const json& d : l["shape"]) {
      if (!d.is_number_integer() || d.get<std::int64_t>() < 1)
        throw std::runtime_error(where + " ('" + layer.name + "'): shape " + l["shape"].dump() +
                                 " has a dimension that is not an integer >= 1");
      layer.shape.push_back(d.get<std::int64_t>());
      numel *= static_cast<double>(layer.shape.back());
    }
    if (numel >= 0x1p62)
      throw std::runtime_error(where + " ('" + layer.name + "'): shape " + l["shape"].dump() +
                               " has too many elements");
    layers.push_back(std::move(layer));
  }
  return layers;
}

struct Params {
  double latency_s = 10e-6;
  double efficiency = kTcpEfficiency;
  double cpu_share = 1.0;
  double burst_bytes = 0.0;         // the link's token bucket
  double wire_bytes_per_s = 1e300;  // what the bucket's bytes leave at
};

twm::Network network(double gbps, const Params& p) {
  return twm::Network::uniform({p.latency_s, gbps * 1e9 / 8.0 * p.efficiency}, p.burst_bytes,
                               p.wire_bytes_per_s);
}

// The predicted step of `spec` (for auto: of what it would choose on this network).
twm::StepCost predict(const std::vector<thinwire::Layer>& layers, const std::string& spec,
                      int ranks, const twm::Network& net, const twm::ComputeRates& rates,
                      std::string* chosen = nullptr) {
  const thinwire::Config c = thinwire::Config::parse(spec);
  if (c.method != thinwire::Method::automatic)
    return twm::predict_step(layers, c, ranks, net, rates);
  twm::Calibration cal;
  cal.net = net;
  cal.rates = rates;
  const twm::AutoDecision d = twm::decide(layers, c, ranks, cal);
  if (chosen) {
    std::map<std::string, int> count;
    for (const thinwire::Config& s : d.specs) ++count[s.to_string()];
    for (const auto& [s, n] : count)
      *chosen += (chosen->empty() ? "" : " ") + s + "x" + std::to_string(n);
  }
  return d.predicted;
}

int sweep(const std::vector<thinwire::Layer>& layers, const std::vector<std::string>& methods,
          const std::vector<int>& ranks, const std::vector<double>& gbps, const Params& p,
          const twm::ComputeRates& rates, json& out) {
  std::printf(
      "# thinwire-cost-model: %zu layers, %s of f32; latency %.1f us per message, "
      "bandwidth = rate x %.3f, cpu share %.2f\n",
      layers.size(), tb::format_size(tb::total_bytes(layers)).c_str(), p.latency_s * 1e6,
      p.efficiency, p.cpu_share);
  std::printf("# predicted ms per step (speedup over dense `none`, thinwire's ring allreduce)\n");
  out["predictions"] = json::array();
  for (double g : gbps) {
    const twm::Network net = network(g, p);
    std::printf("\n## %g Gbit/s\n%7s %12s", g, "ranks", "none");
    for (const std::string& m : methods)
      if (m != "none") std::printf(" %22s", m.c_str());
    std::printf("\n");
    for (int P : ranks) {
      const twm::StepCost dense = predict(layers, "none", P, net, rates);
      std::printf("%7d %12.3f", P, 1e3 * dense.total());
      for (const std::string& m : methods) {
        std::string chosen;
        const twm::StepCost c = predict(layers, m, P, net, rates, &chosen);
        const double speedup = dense.total() / c.total();
        if (m != "none") std::printf(" %12.3f (%6.2fx)", 1e3 * c.total(), speedup);
        json row = {{"gbps", g},
                    {"ranks", P},
                    {"method", m},
                    {"time_s", c.total()},
                    {"comm_s", c.comm},
                    {"encode_s", c.encode},
                    {"decode_s", c.decode},
                    {"bytes_sent", c.bytes_sent},
                    {"dense_time_s", dense.total()},
                    {"speedup", speedup}};
        if (!chosen.empty()) row["auto_chose"] = chosen;
        out["predictions"].push_back(row);
      }
      std::printf("\n");
    }
  }
  return 0;
}

// The kernel rates a benchmark run timed for one of its results, per rate the median over the
// results of the same size and layers, or over all of them for runs that timed each size once.
// The benchmark times them between the timed iterations of each size (up to 9 probes) and each
// result carries its size's per-rate medians: a step's kernels run at its own size's rates (at
// 2 hosts the 4 MiB steps' kernels ran 5-20 % faster per element than at 64 MiB, and top-k's
// scatter into a 4 MiB output took 2 ns per entry against 5, the output staying in cache).
// Older runs timed one call per kernel (their compute_rates_probe's "when" has no "mean of cold
// calls"), or once before each size (no "when"), and on the shared 2-core VM one call can catch
// other hosts' work (they timed the add pass at 0.8 to 3.9 ns per element from one size to the
// next at 4 hosts): the median over their sizes. Rates a run did not time (0) stay 0.
json median_run_rates(const json& run, const json& result) {
  const json probe = run.value("compute_rates_probe", json::object());
  const bool per_size =
      probe.value("when", std::string()).find(tb::kProbeSamplesAreMeans) != std::string::npos;
  std::vector<json> rates;
  for (const auto& res : run.at("results"))
    if (res.contains("compute_rates") &&
        (!per_size || (res.value("size_bytes", json()) == result.value("size_bytes", json()) &&
                       res.value("layers", json()) == result.value("layers", json()))))
      rates.push_back(res.at("compute_rates"));
  return tb::median_per_key(rates);
}

// A bandwidth the run's probe measured (thinwire-bench-allreduce's bandwidth_probe), from its
// fastest call where it recorded them (`calls_s`, runs from run l on; older runs: its
// bytes_per_s). Why the fastest: in the runs kept (to valid_run_r_epyc) the probe's calls ran
// back to back, and a call that starts while the one before it is still draining (a rank
// leaves a call when it has received, while its own sends may still sit in its socket and tbf
// queues) is slower than a step's collective, which follows a barrier or compute: 4 hosts'
// direct allgathers took 156-290 ms per call where the first took 156-170, the steps' comm
// phases ran at about the rate, and 2 hosts at 200 Mbit/s once had 4 slow calls of 5 (0.65 of
// the rate) in a run whose steps were not slow. With the median call, that run
// (valid_run_o_epyc) made 76 of 95 within 20 %; with the fastest 88, with the nominal rate 90.
// Runs after valid_run_r_epyc start each probe call after a barrier (measure_bandwidth).
double probed_bytes_per_s(const json& run, const char* kind) {
  const json& e = run.at("bandwidth_probe").at(kind);
  if (e.contains("calls_s")) {
    double fastest = 1e300;
    for (const json& c : e.at("calls_s")) fastest = std::min(fastest, c.get<double>());
    const double wire_s = fastest - e.at("messages").get<double>() *
                                        run.at("latency_probe").at("per_message_s").get<double>();
    if (!(wire_s > 0))
      throw std::runtime_error(std::string("bandwidth_probe.") + kind +
                               ": its fastest call is no longer than its latency terms");
    return e.at("sent_bytes").get<double>() / wire_s;
  }
  const json& v = e.at("bytes_per_s");
  if (!v.is_number() || !(v.get<double>() > 0))
    throw std::runtime_error(std::string("bandwidth_probe.") + kind + ".bytes_per_s " + v.dump() +
                             ": expected a rate > 0");
  return v.get<double>();
}

int validate(const std::vector<std::string>& files, const Params& p, bool latency_given,
             bool codec_rates_only, bool nominal_bandwidth, const twm::ComputeRates& rates,
             json& out) {
  std::printf(
      "# thinwire-cost-model --validate: predicted vs measured time per call\n"
      "# prediction: bandwidth = the run's own probe (ring allreduce for allreduces, allgather "
      "for allgathers and alltoalls, the fastest of its calls; runs without one, or "
      "--nominal-bandwidth: "
      "emulated rate x %.3f), tbf bucket as the launcher set it (as the "
      "call before left it: empty after another candidate's, predicted after an untimed call of "
      "the method's own; refilled at the link's rate all the time, its bytes at %.0f MB/s%s); "
      "latency per "
      "message = the run's own "
      "small-message alltoall probe / (P-1)%s;\n# compute: 'run' = the kernels timed by the run "
      "itself "
      "(one rank per host, between the timed calls; per rate the median over the result's size) / "
      "cpu share; 'codec' = the codec benchmark JSON / cpu share "
      "(cores / ranks)%s\n",
      p.efficiency, p.wire_bytes_per_s < 1e300 ? p.wire_bytes_per_s / 1e6 : 0.0,
      p.wire_bytes_per_s < 1e300 ? ", --wire" : ": taken as free, no --wire",
      latency_given ? " (overridden by --latency-us)" : "",
      codec_rates_only ? "; errors use 'codec' (--codec-rates)" : "; errors use 'run'");
  std::printf("%6s %9s %7s %-12s %11s %11s %8s %11s %8s %9s %9s\n", "ranks", "rate", "size",
              "method", "measured_ms", "run_ms", "error", "codec_ms", "error", "speedup",
              "predicted");
  out["validation"] = json::array();
  double worst = 0;
  for (const std::string& path : files) {
    std::ifstream f(path);
    if (!f) throw std::runtime_error("cannot read " + path);
    // Any malformed field below is reported with the file's name.
    try {
      const json j = json::parse(f);
      const std::string rate = j.at("link").at("rate");
      if (!j.at("link").at("emulated").get<bool>())
        throw std::runtime_error("not a run on the emulated cluster (no link rate)");
      const int P = j.at("ranks");
      const double cores = j.value("cores", 1.0);
      if (P < 1 || !(cores > 0))
        throw std::runtime_error("'ranks' " + std::to_string(P) + " and 'cores' " +
                                 std::to_string(cores) + ": expected ranks >= 1 and cores > 0");
      Params q = p;
      q.cpu_share = std::min(1.0, cores / P);
      if (!latency_given) q.latency_s = j.at("latency_probe").at("per_message_s");
      const twm::ComputeRates codec = rates.scaled(q.cpu_share);
      const double gbps = parse_rate_bits(rate) / 1e9;
      q.burst_bytes = emulated_burst_bytes(j.at("link"), gbps * 1e9);
      // The links as the rate says, and as the run's own probe measured them: on the emulated
      // cluster TCP moved bulk data below rate x 1448/1514 (a dense 16 MiB allreduce on 4
      // hosts at 100 Mbit/s at 0.86 of it in valid_run_k_epyc).
      const twm::Network nominal = network(gbps, q);
      twm::Network net = nominal;
      const bool probed = !nominal_bandwidth && P > 1 && j.contains("bandwidth_probe");
      if (probed) {
        net.refill_bytes_per_s = nominal.allgather.bytes_per_s;  // the shaper's own rate
        net.allreduce.bytes_per_s = probed_bytes_per_s(j, "allreduce");
        net.allgather.bytes_per_s = net.alltoall.bytes_per_s = probed_bytes_per_s(j, "allgather");
      }
      const double run_share = j.contains("compute_rates_probe")
                                   ? j["compute_rates_probe"].value("cpu_share", 1.0)
                                   : 1.0;
      for (const auto& res : j.at("results")) {
        const std::string method = res.at("method");
        // The run's own kernel rates. Timed by one rank per host they are one core's: divided
        // by the share of a core a rank gets. (Older files timed them on all ranks at once:
        // taken as they are (run_share 1), but the ranks still share the cores: no step phases
        // then either, ComputeRates::without_step_phases.)
        const json run_rates = median_run_rates(j, res);
        twm::ComputeRates run_scaled = twm::rates_from_json(run_rates).scaled(run_share);
        if (q.cpu_share < 1.0) run_scaled = run_scaled.without_step_phases();
        if (!res.at("size_bytes").is_number_unsigned() ||
            res["size_bytes"].get<std::size_t>() == 0 ||
            res["size_bytes"].get<std::size_t>() % 4 != 0 ||
            !(res.at("time_median_s").get<double>() > 0))
          throw std::runtime_error("result '" + method + "': size_bytes " +
                                   res["size_bytes"].dump() + ", time_median_s " +
                                   res["time_median_s"].dump() +
                                   ": expected a positive multiple of 4 bytes and a time > 0");
        const std::size_t bytes = res.at("size_bytes");
        const auto layers = tb::make_layers(res.at("layers"), bytes);
        if (tb::total_bytes(layers) != bytes)
          throw std::runtime_error("cannot rebuild the layers of a " + std::to_string(bytes) +
                                   "-byte '" + res.at("layers").get<std::string>() + "' result");
        const bool have_run = res.contains("compute_rates");
        const twm::ComputeRates& run = have_run ? run_scaled : codec;
        const twm::ComputeRates& used = codec_rates_only || !have_run ? codec : run;
        const double measured = res.at("time_median_s");
        // The benchmark's calls run back to back. Before a call the link rests only while
        // every rank copies in fresh gradients and meets the others at a barrier (ceil(log2 P)
        // message latencies). A dense candidate's call follows another candidate's, which
        // emptied the bucket (dense, or a compressed call that outlasts the bucket); a
        // compressed method's timed call ("timed_after": "own call") follows an untimed call
        // of its own that did, and starts with what that call's last compute refilled. Short
        // compressed calls are timed in bursts ("calls_per_timing" K): the copies of K
        // gradients and the barrier come before the first call, the others follow at once, and
        // the time per call is the burst's mean. Where the ranks share the cores (share < 1:
        // 4 emulated hosts on 2 cores) the barrier starts them in step, so the first call's
        // phases add up (compute at the share, as all ranks compute at once); the calls after
        // it drift apart, one rank computing while another waits for the network, and take the
        // longer of the CPU work of all ranks on the cores (compute at the share) and one
        // rank's own path (compute at a whole core, then its comm), and send no more than
        // their bucket and its refill let through (model::burst_call). `share` is the machine's,
        // cores / ranks: the run's own kernel rates were timed by all emulated hosts at once.
        const bool after_own_call = res.value("timed_after", "") == "own call";
        const int burst = std::max(1, res.value("calls_per_timing", 1));
        // The rest before a timing of `calls` calls: their gradients' copies and the barrier.
        auto rest_before = [&](const twm::ComputeRates& r, int calls) {
          return static_cast<double>(calls) * static_cast<double>(bytes / 4) * r.copy +
                 std::ceil(std::log2(static_cast<double>(P))) * q.latency_s;
        };
        struct Timed {
          twm::Network first;  // the network as the timing's first call finds it
          twm::StepCost cost;  // per call, the mean over the timing, phase by phase
          double seconds = 0;  // per call, the mean over the timing, with the drift
        };
        auto timed_call = [&](const twm::Network& links, const twm::ComputeRates& r, double share,
                              bool own, int calls) {
          Timed t{links, {}, 0.0};
          t.first.idle_before_s = rest_before(r, calls);
          if (own)
            t.first.bucket_before_bytes = predict(layers, method, P, t.first, r).bucket_after_bytes;
          twm::Network n = t.first;
          for (int k = 0; k < calls; ++k) {
            const twm::StepCost c = predict(layers, method, P, n, r);
            const twm::BurstCall call = twm::burst_call(c, k > 0 ? share : 1.0, n);
            t.seconds += call.seconds / calls;
            t.cost.comm += c.comm / calls;
            t.cost.encode += c.encode / calls;
            t.cost.decode += c.decode / calls;
            n.idle_before_s = 0;
            n.bucket_before_bytes = call.bucket_after_bytes;
          }
          return t;
        };
        // `used` is one of `run` and `codec`: its network and prediction are that one's.
        const bool use_run = &used == &run;
        const Timed run_timed = timed_call(net, run, q.cpu_share, after_own_call, burst);
        const Timed codec_timed = timed_call(net, codec, q.cpu_share, after_own_call, burst);
        const double pred_run = run_timed.seconds, pred_codec = codec_timed.seconds;
        const Timed& used_timed = use_run ? run_timed : codec_timed;
        const twm::Network& used_net = used_timed.first;
        const twm::StepCost& pred_cost = used_timed.cost;
        const double pred = used_timed.seconds;
        twm::Network dense_net = net;
        dense_net.idle_before_s = rest_before(used, 1);
        const double dense = predict(layers, "none", P, dense_net, used).total();
        const double pred_nominal =
            timed_call(nominal, used, q.cpu_share, after_own_call, burst).seconds;
        const double err = (pred - measured) / measured;
        worst = std::max(worst, std::fabs(err));
        std::printf("%6d %9s %7s %-12s %11.1f %11.1f %+7.1f%% %11.1f %+7.1f%% %8.2fx %8.2fx\n", P,
                    rate.c_str(), tb::format_size(bytes).c_str(), method.c_str(), 1e3 * measured,
                    1e3 * pred_run, 100 * (pred_run - measured) / measured, 1e3 * pred_codec,
                    100 * (pred_codec - measured) / measured, res.at("speedup").get<double>(),
                    dense / pred);
        out["validation"].push_back(
            {{"file", path},
             {"ranks", P},
             {"rate", rate},
             {"size_bytes", bytes},
             {"layers", res.at("layers")},
             {"method", method},
             {"measured_s", measured},
             {"predicted_s", pred},
             {"predicted_comm_s", pred_cost.comm},
             {"predicted_compute_s", pred_cost.encode + pred_cost.decode},
             {"predicted_phases_added_s", pred_cost.total()},
             {"measured_phases_s", res.value("phases_s", json::object())},
             {"error", err},
             {"predicted_run_rates_s", pred_run},
             {"predicted_codec_rates_s", pred_codec},
             {"measured_speedup", res.at("speedup")},
             {"predicted_speedup", dense / pred},
             {"latency_s", q.latency_s},
             {"cpu_share", q.cpu_share},
             {"run_rates", run_rates},
             {"run_rates_cpu_share", run_share},
             {"burst_bytes", q.burst_bytes},
             {"idle_before_s", used_net.idle_before_s},
             {"timed_after", after_own_call ? "own call" : "other candidate"},
             {"calls_per_timing", burst},
             {"bucket_before_bytes", used_net.bucket_before_bytes},
             {"bandwidth", probed ? "probe" : "rate"},
             {"allreduce_bytes_per_s", used_net.allreduce.bytes_per_s},
             {"allgather_bytes_per_s", used_net.allgather.bytes_per_s},
             {"refill_bytes_per_s", nominal.allgather.bytes_per_s},
             {"predicted_nominal_bandwidth_s", pred_nominal},
             {"wire_bytes_per_s", q.wire_bytes_per_s < 1e300 ? json(q.wire_bytes_per_s) : json()},
             {"load_average_at_start", j.value("load_average_at_start", json::array())}});
      }
    } catch (const std::exception& e) {
      throw std::runtime_error(path + ": " + e.what());
    }
  }
  std::printf("# largest |error|: %.1f%%\n", 100 * worst);
  out["largest_abs_error"] = worst;
  out["rates_used"] = codec_rates_only ? "codec"
                                       : "run (per rate the median over the result's size; over "
                                         "the run's sizes for runs that timed each size once)";
  return 0;
}

template <typename T, typename F>
std::vector<T> parse_list(const std::string& text, const char* option, F&& convert) {
  std::vector<T> v;
  for (const std::string& s : tb::split_specs(text)) v.push_back(convert(s));
  if (v.empty()) throw std::invalid_argument(std::string(option) + ": no values in '" + text + "'");
  return v;
}

}  // namespace

int main(int argc, char** argv) {
  std::string layers_kind = "single", size = "64M", layer_file, methods, ranks_text, gbps_text,
              codec_json = std::string(THINWIRE_SOURCE_DIR) + "/bench/results/codec_cpu.json",
              json_path;
  std::vector<std::string> validate_files;
  std::string wire_json;
  Params p;
  double latency_us = p.latency_s * 1e6;
  po::options_description opts(
      "thinwire-cost-model: predicted allreduce step time per method from thinwire's cost "
      "model\nOptions");
  opts.add_options()("help,h", "show this help")(
      "layers", po::value<std::string>(&layers_kind)->default_value(layers_kind),
      "single | mix (as thinwire-bench-allreduce)")(
      "size", po::value<std::string>(&size)->default_value(size), "bytes of f32 gradient")(
      "layer-file", po::value<std::string>(&layer_file),
      "JSON list of {\"name\", \"shape\"} instead of --layers/--size")(
      "methods",
      po::value<std::string>(&methods)->default_value(
          "none,onebit,topk:0.01,qsgd:4,powersgd:4,auto:onebit"),
      "compression specs")("ranks",
                           po::value<std::string>(&ranks_text)
                               ->default_value("2,4,8,16,32,64,128,256,512,1024,2048,4096"),
                           "numbers of ranks")(
      "gbps", po::value<std::string>(&gbps_text)->default_value("0.1,0.2,0.5,1,10,25,100,400"),
      "link rates in Gbit/s")("latency-us",
                              po::value<double>(&latency_us)->default_value(latency_us),
                              "latency per message, microseconds")(
      "efficiency", po::value<double>(&p.efficiency)->default_value(p.efficiency),
      "payload bytes per byte of link rate (TCP/Ethernet: 1448/1514)")(
      "cpu-share", po::value<double>(&p.cpu_share)->default_value(p.cpu_share),
      "fraction of a core each rank gets (ranks sharing cores: cores/ranks)")(
      "codec-json", po::value<std::string>(&codec_json)->default_value(codec_json),
      "the kernels' speeds: thinwire-bench-codec's JSON (one CPU core) or "
      "thinwire-bench-codec-device's (one GPU)")(
      "validate", po::value<std::vector<std::string>>(&validate_files)->multitoken(),
      "thinwire-bench-allreduce JSON files from the emulated cluster to predict and compare")(
      "wire", po::value<std::string>(&wire_json),
      "--validate: thinwire-bench-allreduce JSON of a run on unshaped emulated links; its "
      "dense rate per rank is the speed a tbf bucket's bytes leave at (default: free)")(
      "codec-rates",
      "--validate: predict with the codec benchmark's rates / cpu share, not the rates the "
      "run measured")("nominal-bandwidth",
                      "--validate: bandwidth = emulated rate x --efficiency, not what the run's "
                      "bandwidth probe measured")("json", po::value<std::string>(&json_path),
                                                  "write the predictions to this JSON file");
  po::variables_map vm;
  try {
    // No positional arguments: a stray word is an error, not ignored.
    po::store(po::command_line_parser(argc, argv)
                  .options(opts)
                  .positional(po::positional_options_description())
                  .run(),
              vm);
    po::notify(vm);
    if (vm.count("help")) {
      std::cout << opts;
      return 0;
    }
    // Written as !(x in range) so that NaN fails too.
    if (!(latency_us >= 0) || !std::isfinite(latency_us))
      throw std::invalid_argument("--latency-us must be a finite number >= 0");
    if (!(p.efficiency > 0 && p.efficiency <= 1))
      throw std::invalid_argument("--efficiency must be in (0, 1]");
    if (!(p.cpu_share > 0 && p.cpu_share <= 1))
      throw std::invalid_argument("--cpu-share must be in (0, 1]");
    p.latency_s = latency_us * 1e-6;
    std::ifstream cf(codec_json);
    if (!cf) throw std::runtime_error("cannot read the codec benchmark JSON " + codec_json);
    const twm::ComputeRates base = twm::rates_from_codec_json(json::parse(cf));
    json out = tb::provenance(argc, argv);
    out["codec_json"] = codec_json;
    out["params"] = {
        {"latency_s", p.latency_s}, {"efficiency", p.efficiency}, {"cpu_share", p.cpu_share}};
    if (!wire_json.empty()) {
      p.wire_bytes_per_s = wire_bytes_per_s_from(wire_json);
      out["wire_json"] = wire_json;
    }
    if (!validate_files.empty()) {
      validate(validate_files, p, !vm["latency-us"].defaulted(), vm.count("codec-rates") > 0,
               vm.count("nominal-bandwidth") > 0, base, out);
    } else {
      std::vector<thinwire::Layer> layers;
      if (layer_file.empty()) {
        const std::size_t bytes = tb::parse_size(size);
        if (bytes == 0 || bytes % 4 != 0)
          throw std::invalid_argument("--size: '" + size +
                                      "' is not a positive multiple of 4 bytes (f32)");
        layers = tb::make_layers(layers_kind, bytes);
      } else {
        layers = read_layer_file(layer_file);
      }
      out["layers"] = json::array();
      for (const thinwire::Layer& l : layers)
        out["layers"].push_back({{"name", l.name}, {"shape", l.shape}});
      const auto method_list = tb::split_specs(methods);
      if (method_list.empty())
        throw std::invalid_argument("--methods: no methods in '" + methods + "'");
      for (const std::string& m : method_list)
        if (thinwire::Config::parse(m).method == thinwire::Method::adaptive)
          throw std::invalid_argument("--methods: '" + m +
                                      "': the cost model does not model adaptive (L-GreCo) specs; "
                                      "auto chooses per layer from the model");
      const auto ranks = parse_list<int>(
          ranks_text, "--ranks", [](const std::string& s) { return parse_count(s, "--ranks"); });
      const auto gbps = parse_list<double>(gbps_text, "--gbps", [](const std::string& s) {
        const double v = parse_number(s, "--gbps");
        if (!(v > 0)) throw std::invalid_argument("--gbps: '" + s + "' is not > 0");
        return v;
      });
      sweep(layers, method_list, ranks, gbps, p, base.scaled(p.cpu_share), out);
    }
    if (!json_path.empty()) {
      std::ofstream f(json_path);
      f << out.dump(1) << "\n";
      if (!f) throw std::runtime_error("cannot write " + json_path);
      std::printf("# written to %s\n", json_path.c_str());
    }
  } catch (const std::exception& e) {
    std::cerr << "thinwire-cost-model: " << e.what() << "\n";
    return 2;
  }
  return 0;
}
