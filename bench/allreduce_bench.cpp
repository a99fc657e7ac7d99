// thinwire-bench-allreduce: time per allreduce call of every compression method against the
// best dense allreduce measured in the same run, nccl-tests style.
//
//   mpirun -np 4 thinwire-bench-allreduce --methods none,onebit,topk:0.01 --sizes 1M,16M,64M
//          [-b 1M -e 64M -f 4] [--iters 20] [--warmup 5] [--layers single|mix] [--json FILE]
//
// For each size every candidate — the dense baselines (MPI_Allreduce with the MPI library's
// default algorithm, Open MPI's ring where it can be forced, thinwire's own dense path
// `none`) and every requested method — runs on the same gradients, the calls interleaved
// (one call of each candidate per iteration) so that a change in machine load affects them
// alike; a compressed method's timed call follows an untimed one of its own, so that it finds
// the link as its own steps leave it. A call's time is the slowest rank's, between a barrier and
// the call's return; a compressed method's calls shorter than --min-timed-s (50 ms) are timed
// in bursts, enough calls back to back to last that long (`calls_per_timing` in the JSON), as
// a training loop runs its steps, and a burst's time / its calls is the time per call. The
// table and the JSON give the median over the timed iterations. The baseline
// of a size is the dense candidate with the lowest median, named in the output; speedup = baseline
// / method.
//
// Gradients: per layer a rank-4 "signal" that every rank shares plus noise that depends on the
// rank, so that compression has something to find and rel_err (against the exact average,
// computed in double) means something. rel_err is that of a method's first call, with fresh
// error memories.
//
// --device N: the gradients live in device memory (kernels::device_alloc) on CUDA device N
// (`local`: the rank's index on its node, modulo the devices it sees). They are generated on
// the host and uploaded before every call, outside the timed span, as host mode copies them;
// the timed span is the same: from a barrier to the return of Reducer::allreduce on the
// device tensors, which synchronises before it returns. The dense baseline is then the
// Communicator's device transport's allreduce of the same bytes ("nccl allreduce": one
// ncclAllReduce; "staged mpi allreduce" under THINWIRE_TRANSPORT=mpi: device -> pinned host
// -> MPI -> device), waited for within the call; the MPI_Allreduce candidates on host memory
// are not measured. The same binary linked with the CPU emulation of the kernels
// (thinwire-bench-allreduce-emulated) runs the device path with host memory as "device"
// memory, for tests: its times say nothing about a GPU.
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include <boost/program_options.hpp>
#include <thinwire/thinwire.hpp>

#include "bench_common.hpp"
#include "bench_layers.hpp"
#include "common/hash.hpp"
#include "dense_baselines.hpp"
#include "json_path_check.hpp"
#include "launch.hpp"
#include "median.hpp"
#include "model/auto_policy.hpp"
#include "model/auto_trial.hpp"
#include "model/cache_evictor.hpp"
#include "model/codec_rates.hpp"
#include "process_memory.hpp"
#include "tc_units.hpp"
#include "transport/communicator_state.hpp"
#include "transport/device_transport.hpp"
#include "transport/mpi_transport.hpp"

namespace po = boost::program_options;
using nlohmann::json;
namespace tb = thinwire::bench;

namespace {

constexpr const char* kDefaultMethods = "none,onebit,topk:0.01,qsgd:4,powersgd:4";
// Compute-rate probes per size, spread over its timed iterations; the results carry their
// per-rate medians, which the cost model's --validate uses.
constexpr int kRateProbes = 9;
// What compute_rates_probe.when says for device tensors, whose results carry no rates.
constexpr const char* kRatesNotForDevice =
    "not measured: device tensors (the probes time the host kernels, which device steps do not "
    "run)";
// Each kernel sample of a probe: the mean of cold calls adding up to this long (see
// measure_compute_rates_here).
constexpr double kRateMinTimedS = 0.02;

std::uint64_t splitmix64(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// Uniform in [-1, 1) from a counter.
float uniform(std::uint64_t key, std::uint64_t i) {
  return static_cast<float>(static_cast<double>(splitmix64(key + i) >> 11) * 0x1.0p-52 - 1.0);
}

// Layer l's gradient on `rank`: U V^T (rank 4, shared) + noise of std 0.5 (per rank).
void make_gradient(const thinwire::Layer& layer, std::size_t l, std::uint64_t seed, int rank,
                   float* g) {
  constexpr int r = 4;
  const std::size_t rows = layer.rows(), cols = layer.cols();
  const std::uint64_t signal_key = splitmix64(seed ^ (0x5167ull << 32) ^ l);
  const std::uint64_t noise_key =
      splitmix64(seed ^ (static_cast<std::uint64_t>(rank + 1) << 40) ^ l);
  std::vector<float> u(rows * r), v(cols * r);
  for (std::size_t i = 0; i < u.size(); ++i) u[i] = uniform(signal_key, i);
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = uniform(signal_key ^ 0xabcdefull, i);
  const float noise = 0.5f * std::sqrt(3.0f);
  for (std::size_t i = 0; i < rows; ++i)
    for (std::size_t j = 0; j < cols; ++j) {
      float acc = 0.f;
      for (int k = 0; k < r; ++k) acc += u[i * r + k] * v[j * r + k];
      g[i * cols + j] = acc + noise * uniform(noise_key, i * cols + j);
    }
}

bool identical_on_all_ranks(const std::vector<float>& x) {
  std::uint64_t h[2];
  h[0] = thinwire::detail::Hasher().bytes(x.data(), x.size() * sizeof(float)).value();
  h[1] = ~h[0];
  MPI_Allreduce(MPI_IN_PLACE, h, 2, MPI_UINT64_T, MPI_MAX, MPI_COMM_WORLD);
  return h[0] == ~h[1];
}

// A launcher's failure (kernels/launch.hpp reports them as strings) as an exception.
void check_kernels(const std::string& err, const char* what) {
  if (!err.empty()) throw std::runtime_error(std::string(what) + ": " + err);
}

// Device memory (host memory under the emulation), freed on scope exit.
class DeviceMemory {
 public:
  explicit DeviceMemory(std::size_t bytes) {
    check_kernels(thinwire::kernels::device_alloc(&p_, bytes), "device_alloc");
  }
  ~DeviceMemory() { thinwire::kernels::device_free(p_); }
  DeviceMemory(const DeviceMemory&) = delete;
  DeviceMemory& operator=(const DeviceMemory&) = delete;
  float* floats() const { return static_cast<float*>(p_); }

 private:
  void* p_ = nullptr;
};

// The dense baseline of device tensors: the Communicator's device transport's in-place f32
// sum (ncclAllReduce, or staged through the host over MPI), on the benchmark's stream, waited
// for before the call returns as Reducer::allreduce waits for its step.
class DeviceTransportAllreduce final : public tb::DenseBaseline {
 public:
  DeviceTransportAllreduce(thinwire::detail::DeviceTransport& t, void* stream)
      : t_(t),
        stream_(stream),
        name_(std::string(t.name()) == "nccl" ? "nccl allreduce" : "staged mpi allreduce") {}
  const std::string& name() const override { return name_; }
  void allreduce(float* data, std::size_t n) override {
    // The transport serves the Reducers of the Communicator too; each sets its own stream.
    t_.set_stream(stream_);
    t_.allreduce(data, n, thinwire::ElementType::f32, thinwire::ReduceOp::sum);
    t_.synchronize("the benchmark's dense baseline");
  }

 private:
  thinwire::detail::DeviceTransport& t_;
  void* stream_;
  std::string name_;
};

// One thing to time: a dense baseline or a thinwire method.
struct Candidate {
  std::string name;
  bool dense_baseline = false;  // competes for the baseline
  // Each timed call follows an untimed call of its own (compressed methods): the JSON says so
  // as "timed_after", for the cost model's validation (the link's token bucket).
  bool settled() const { return reducer && !dense_baseline; }
  bool requested = false;              // one of --methods (reported as a result)
  tb::DenseBaseline* dense = nullptr;  // a baseline outside thinwire (MPI, NCCL)
  std::unique_ptr<thinwire::Reducer> reducer;
  std::vector<double> times;  // per timed call, this rank (a burst's time / its calls)
  // Calls per timing: a compressed method's short calls are timed in bursts back to back
  // (--min-timed-s), chosen from the warm-up; 1 for dense candidates and device tensors.
  int burst = 1;
  // The fastest untimed call before the timed ones (this rank's; the slowest rank's once
  // `burst` is chosen from it).
  double untimed_s = 0;
  // The Reducer's statistics summed over the timed calls only (not the settling calls).
  std::uint64_t timed_steps = 0, timed_bytes_sent = 0, timed_bytes_dense = 0;
  double timed_seconds[3] = {0, 0, 0};  // encode, comm, decode
  // Filled after the runs.
  double median_s = 0, min_s = 0, max_s = 0;
  double rel_err = 0;
  bool identical = true;
  double bytes_sent = 0, ratio = 1;
  double phase[3] = {0, 0, 0};        // encode, comm, decode s per call (slowest rank)
  std::string spec;                   // in force (canonical)
  std::map<std::string, int> chosen;  // auto: spec -> number of layers
  double setup_s = 0;  // Reducer construction (auto: its calibration probe), slowest rank
};

struct Options {
  std::vector<std::string> methods;
  std::vector<std::size_t> sizes;
  int iters = 20, warmup = 5;
  std::string layers = "single";
  std::string json_path;
  std::vector<std::string> baselines = {"default", "ring", "thinwire"};
  std::uint64_t seed = 1;
  double progress_s = 10.0;
  double min_timed_s = 0.05;  // a compressed method's timed span: at least this long, in bursts
  int device = -1;            // --device: -1 host tensors, else the CUDA device of the gradients
  std::string memory_note;    // keep_freed_memory_mapped()'s, for the notes
};

std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

std::string human_bytes(double b) {
  if (b >= 1e9) return fmt("%.2f GB", b / 1e9);
  if (b >= 1e6) return fmt("%.2f MB", b / 1e6);
  if (b >= 1e3) return fmt("%.1f kB", b / 1e3);
  return fmt("%.0f B", b);
}

class Bench {
 public:
  Bench(const Options& o, thinwire::Communicator comm, json provenance)
      : o_(o), comm_(std::move(comm)), out_(std::move(provenance)) {
    rank_ = comm_.rank();
    size_ = comm_.size();
    if (auto* mpi = dynamic_cast<thinwire::detail::MpiTransport*>(&comm_.state()->host.inner())) {
      mpi_segment_bytes_ = mpi->segment_bytes();
      mpi_log_allgather_min_ranks_ = mpi->log_allgather_min_ranks();
      mpi_allreduce_ = thinwire::detail::SumRouteChooser::name(mpi->sum_routes().mode());
    }
    const auto wanted = [&](const char* kind) {
      return std::find(o_.baselines.begin(), o_.baselines.end(), kind) != o_.baselines.end();
    };
    if (!o_.memory_note.empty()) notes_.push_back(o_.memory_note);
    std::string device_name = "host";
    if (o_.device < 0) {
      for (auto& b : tb::make_mpi_baselines(MPI_COMM_WORLD, &notes_)) {
        const std::string kind = b->name() == "MPI_Allreduce(ring)" ? "ring" : "default";
        if (wanted(kind.c_str()))
          baselines_.push_back(std::move(b));
        else
          notes_.push_back(b->name() + ": not measured (--baselines)");
      }
    } else {
      namespace tk = thinwire::kernels;
      check_kernels(tk::set_device(o_.device), "set_device");
      check_kernels(tk::device_name(o_.device, &device_name), "device_name");
      check_kernels(tk::stream_create(&stream_), "stream_create");
      // Collective: every rank builds the Communicator's device transport here, which the
      // Reducers' device steps use too.
      transport_ = &comm_.state()->device_transport(o_.device);
      auto b = std::make_unique<DeviceTransportAllreduce>(*transport_, stream_);
      if (wanted("default"))
        baselines_.push_back(std::move(b));
      else
        notes_.push_back(b->name() + ": not measured (--baselines)");
      if (wanted("ring"))
        notes_.push_back(
            "MPI_Allreduce(default), MPI_Allreduce(ring): host memory, not measured for device "
            "tensors (--baselines default is the device transport's allreduce)");
      if (tk::emulated())
        notes_.push_back(
            "device tensors are host memory under the CPU emulation of the kernels: the times "
            "say nothing about a GPU");
    }
    const char* rate = std::getenv("THINWIRE_EMULATE_RATE");
    out_["ranks"] = size_;
    find_host_peers();
    out_["compute_rates_probe"] = {
        {"how",
         "measure_rates() by one rank per host (processor name) while the host's other ranks "
         "sleep; hosts that share a machine time at once; the cost model divides the rates by "
         "cpu_share"},
        {"when", o_.device >= 0
                     ? std::string(kRatesNotForDevice)
                     : "between the timed iterations of each size (up to " +
                           std::to_string(kRateProbes) + " probes, evenly spread; per kernel the " +
                           tb::kProbeSamplesAreMeans + " adding up to " +
                           fmt("%g ms", 1e3 * kRateMinTimedS) + ", at most " +
                           std::to_string(thinwire::detail::model::kMaxSampleCalls) +
                           "); a result's compute_rates are the per-rate medians of its size's "
                           "probes"},
        {"sample",
         "sample_shape(): the largest layer's width, rows for all the layers' elements (a step "
         "streams them back to back), at most 4 Mi elements; PowerSGD also per matrix shape, in "
         "copies up to the matrix layers' elements"},
        {"ranks_on_host", ranks_on_host_},
        {"cpu_share", cpu_share_},
        // What the probes pass over before each timed call (CacheEvictor): the VM's reported
        // L3 changed between days (32 and 256 MiB), and with it the probes' cold caches.
        {"cache_evictor_bytes", thinwire::detail::model::CacheEvictor::buffer_bytes()}};
    // Other load on the machine shows in the times: record it.
    if (std::ifstream la("/proc/loadavg"); la) {
      double one = 0, five = 0, fifteen = 0;
      la >> one >> five >> fifteen;
      out_["load_average_at_start"] = {one, five, fifteen};
    }
    out_["device"] = device_name;
    out_["tensors"] = o_.device < 0 ? "host" : "device";
    if (o_.device >= 0) {
      out_["device_index"] = o_.device;
      out_["device_transport"] = transport_->name();
      out_["device_emulated"] = thinwire::kernels::emulated();
    }
    out_["layers"] = o_.layers;
    out_["iters"] = o_.iters;
    out_["warmup"] = o_.warmup;
    out_["min_timed_s"] = o_.min_timed_s;
    out_["link"] = {{"emulated", rate != nullptr}, {"rate", rate ? rate : "not shaped"}};
    // The shaper's token bucket (tc size units, e.g. 131072 or 64kb), when the launcher says.
    if (const char* burst = std::getenv("THINWIRE_EMULATE_BURST")) out_["link"]["burst"] = burst;
    out_["baseline_rule"] =
        o_.device < 0
            ? "per size, the dense candidate with the lowest median time among those measured "
              "(--baselines): MPI_Allreduce(default), MPI_Allreduce(ring) when Open MPI lets it "
              "be forced, thinwire none"
            : "per size, the dense candidate with the lowest median time among those measured "
              "(--baselines): the device transport's allreduce (nccl allreduce, or staged mpi "
              "allreduce), thinwire none; all on device tensors";
    out_["notes"] = notes_;
    out_["mpi_segment_bytes"] = mpi_segment_bytes_;
    out_["mpi_allreduce"] = mpi_allreduce_;  // THINWIRE_MPI_ALLREDUCE as the ranks agreed it
    // THINWIRE_MPI_LOG_ALLGATHER_MIN_RANKS as the ranks agreed it (0: never).
    out_["mpi_log_allgather_min_ranks"] = mpi_log_allgather_min_ranks_;
    out_["results"] = json::array();
    out_["baselines"] = json::array();
  }

  ~Bench() {
    if (stream_) {
      // Reducers are gone (run_size owns them); the transport must not keep our stream.
      if (transport_) transport_->set_stream(nullptr);
      thinwire::kernels::stream_destroy(stream_);
    }
  }
  Bench(const Bench&) = delete;
  Bench& operator=(const Bench&) = delete;

  void run() {
    measure_latency();
    measure_bandwidth(std::getenv("THINWIRE_EMULATE_RATE"));
    if (rank_ == 0) print_header();
    for (std::size_t s = 0; s < o_.sizes.size(); ++s) run_size(s);
    if (rank_ == 0 && !o_.json_path.empty()) {
      std::ofstream f(o_.json_path);
      f << out_.dump(2) << "\n";
      if (!f) throw std::runtime_error("cannot write " + o_.json_path);
      std::printf("# results written to %s\n", o_.json_path.c_str());
    }
  }

 private:
  // The slowest rank's time per call of `calls` calls run back to back after a barrier.
  template <typename F>
  double seconds_per_call(int calls, F&& call) {
    comm_.host_transport().barrier();
    const double t0 = MPI_Wtime();
    for (int i = 0; i < calls; ++i) call();
    double per_call = (MPI_Wtime() - t0) / calls;
    MPI_Allreduce(MPI_IN_PLACE, &per_call, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    return per_call;
  }

  // Small-message latency of this network as thinwire's transport sees it: alltoalls of
  // 64-byte blocks (P-1 messages per rank, posted at once) run back to back, as a training
  // loop runs its steps, so a call pays what it pays in a step; the time per call is the total
  // over kCalls divided by kCalls, the slowest rank's; the median of kTrials such runs (single
  // runs with 4 emulated hosts on 2 cores gave 0.39 ms per call in run k and 1.36 ms in a short
  // test on the same links). The blocks are small so that the trials stay within the shaper's
  // bucket: 4 KiB blocks (until commit 136278b) sent faster than 200 Mbit/s, and once five
  // trials had emptied the bucket each call waited for tokens (2 hosts, in a run not kept: 0.03
  // ms per call in the first trial, 0.17 ms = 4 KiB at the rate in the last three), a bandwidth
  // term the model counts apart. (The best
  // single call after a barrier is kept too: with more ranks than cores it includes scheduling
  // delays a step does not see.) The cost model's validation takes its per-message latency
  // from `per_message_s`.
  void measure_latency() {
    constexpr std::size_t kBlock = 64;
    constexpr int kCalls = 20, kTrials = 5;
    thinwire::Transport& t = comm_.host_transport();
    std::vector<unsigned char> send(kBlock * size_, 1), recv(kBlock * size_);
    double best = 1e30;
    for (int i = 0; i < 6; ++i) {
      t.barrier();
      const double t0 = MPI_Wtime();
      t.alltoall(send.data(), recv.data(), kBlock);
      double dt = MPI_Wtime() - t0;
      MPI_Allreduce(MPI_IN_PLACE, &dt, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
      if (i > 0) best = std::min(best, dt);
    }
    std::vector<double> trials;
    for (int i = 0; i < kTrials; ++i)
      trials.push_back(
          seconds_per_call(kCalls, [&] { t.alltoall(send.data(), recv.data(), kBlock); }));
    const double per_call = tb::median(trials);
    out_["latency_probe"] = {
        {"collective", "alltoall"},  {"block_bytes", kBlock},
        {"calls", kCalls},           {"trials_s", trials},
        {"seconds", per_call},       {"per_message_s", size_ > 1 ? per_call / (size_ - 1) : 0.0},
        {"best_single_call_s", best}};
  }

  // The link's bandwidth as thinwire's transport gets it, for the cost model's validation (as
  // `auto` calibrates it at start-up): kCalls ring allreduces, then kCalls allgathers, after a
  // warm-up call, each call started after a barrier as `auto`'s probe starts them
  // (auto_policy.cpp) and as a step's collectives start after its compute, each sized to send
  // about kTargetS at the emulated link's rate (16 MiB per rank on a link without one), so that
  // a tbf bucket's burst (5 ms at the rate) is a few percent of a call and refills only in the
  // short gaps between calls. Why the barriers: calls back to back drift apart, and a direct
  // allgather then leaves a host's link idle while it waits for its slowest sender (4 hosts
  // at 200 Mbit/s on the EPYC VM, 2026-12-03: 0.155-0.33 s per call back to back, first calls
  // usually the fastest; 0.156-0.181 s each after a barrier, in ten launches; 0.15 s is the
  // rate's time; HISTORY.md). A call's time is the slowest rank's, and the probe still takes the
  // fastest call (`calls_s`, `fastest_s`; with 3 calls averaged, 2 hosts at 100 Mbit/s once
  // measured their allgather at 0.80 of its rate after one slow call following the allreduce's
  // bulk, as in "TCP after a dense call"). bytes_per_s = bytes a rank sends per call / (fastest_s -
  // its latency terms at per_message_s). TCP over the emulated links moves bulk data below the rate
  // x 1448/1514 the model otherwise assumes: with 4 hosts at 100 Mbit/s a dense 16 MiB allreduce
  // ran at 0.86 of that (4 and 64 MiB: 0.92; valid_run_k_epyc), this probe's allgather at
  // 0.88-0.97.
  void measure_bandwidth(const char* rate) {
    if (size_ < 2) return;
    constexpr double kTargetS = 0.15;
    constexpr int kCalls = 5;
    const double p = size_;
    double sent = 16.0 * (1 << 20);
    if (rate && std::string(rate) != "none") sent = tb::parse_rate_bits(rate) / 8.0 * kTargetS;
    sent = std::clamp(sent, 1.0 * (1 << 20), 64.0 * (1 << 20));
    thinwire::Transport& t = comm_.host_transport();
    const double per_message = out_["latency_probe"]["per_message_s"].get<double>();
    // The slowest rank's time of each of kCalls calls after a warm-up call, each after a barrier.
    auto timed = [&](auto&& call) {
      call();
      std::vector<double> calls(kCalls);
      for (double& c : calls) {
        t.barrier();
        const double start = MPI_Wtime();
        call();
        c = MPI_Wtime() - start;
      }
      MPI_Allreduce(MPI_IN_PLACE, calls.data(), kCalls, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
      return calls;
    };
    auto entry = [&](std::size_t bytes, double sent_bytes, double messages,
                     const std::vector<double>& calls) {
      const double fastest = *std::min_element(calls.begin(), calls.end());
      const double wire_s = fastest - messages * per_message;
      return json{
          {"bytes", bytes},       {"sent_bytes", sent_bytes},
          {"messages", messages}, {"calls", kCalls},
          {"calls_s", calls},     {"seconds", tb::median(calls)},
          {"fastest_s", fastest}, {"bytes_per_s", wire_s > 0 ? json(sent_bytes / wire_s) : json()}};
    };
    // Ring allreduce of n floats: each rank sends 2(P-1)/P of them in 2(P-1) messages.
    const std::size_t n = std::max<std::size_t>(
        static_cast<std::size_t>(sent * p / (2.0 * (p - 1.0)) / 4.0), std::size_t{1} << 16);
    std::vector<float> sum(n, 1.0f);
    const std::vector<double> reduce_s = timed(
        [&] { t.allreduce(sum.data(), n, thinwire::ElementType::f32, thinwire::ReduceOp::sum); });
    std::vector<float>().swap(sum);
    // Allgather of one block per rank: each rank sends its block to the P-1 others (directly,
    // or for small blocks on many ranks in ceil(log2 P) rounds: model::allgather_messages).
    const std::size_t block = static_cast<std::size_t>(sent / (p - 1.0));
    std::vector<unsigned char> send(block, 1), recv(block * static_cast<std::size_t>(size_));
    const std::vector<double> gather_s =
        timed([&] { t.allgather(send.data(), recv.data(), block); });
    out_["bandwidth_probe"] = {
        {"how",
         "ring allreduce and allgather through thinwire's host transport, 5 calls after a "
         "warm-up call, each after a barrier (until commit 510e01a: back to back), sized to send "
         "about 0.15 s at the link's rate, each call's time "
         "the slowest rank's (seconds: the median call); bytes_per_s = sent per rank / "
         "(fastest_s - messages x latency_probe.per_message_s)"},
        {"allreduce", entry(4 * n, 2.0 * (p - 1.0) / p * 4.0 * static_cast<double>(n),
                            2.0 * (p - 1.0), reduce_s)},
        {"allgather", entry(block, (p - 1.0) * static_cast<double>(block),
                            thinwire::detail::model::allgather_messages(
                                block, size_, mpi_log_allgather_min_ranks_),
                            gather_s)}};
  }

  void print_header() {
    std::printf(
        "# thinwire-bench-allreduce: %d ranks on %s, layers '%s', %d warm-up + %d timed "
        "calls per candidate, link %s\n",
        size_, out_["host"].get<std::string>().c_str(), o_.layers.c_str(), o_.warmup, o_.iters,
        out_["link"]["rate"].get<std::string>().c_str());
    std::printf(
        "# time: median over calls of the slowest rank's time per call (compressed methods' "
        "calls shorter than %.0f ms: per burst of calls back to back / its calls); algbw = "
        "size / time; busbw = algbw * 2(P-1)/P\n",
        1e3 * o_.min_timed_s);
    std::printf(
        "# baseline: per size the fastest dense candidate (marked *); speedup = "
        "baseline time / time\n");
    if (o_.device >= 0)
      std::printf("# tensors: device %d (%s), device transport %s\n", o_.device,
                  out_["device"].get<std::string>().c_str(),
                  out_["device_transport"].get<std::string>().c_str());
    else
      std::printf("# tensors: host memory\n");
    std::printf(
        "# small-message latency: alltoall of %d-byte blocks %.3f ms per call, back to back\n",
        out_["latency_probe"]["block_bytes"].get<int>(),
        1e3 * out_["latency_probe"]["seconds"].get<double>());
    if (out_.contains("bandwidth_probe")) {
      const json& b = out_["bandwidth_probe"];
      auto mbps = [](const json& e) {
        return e["bytes_per_s"].is_number() ? e["bytes_per_s"].get<double>() / 1e6 : 0.0;
      };
      std::printf(
          "# bandwidth per rank: ring allreduce %.1f MB/s, allgather %.1f MB/s (bytes sent / the "
          "fastest of 5 calls, each after a barrier)\n",
          mbps(b["allreduce"]), mbps(b["allgather"]));
    }
    for (const std::string& n : notes_) std::printf("# note: %s\n", n.c_str());
    std::printf("%10s  %-24s %10s %10s %10s %11s %8s %10s %8s %5s\n", "size", "method", "time_ms",
                "algbw_GB/s", "busbw_GB/s", "sent/rank", "ratio", "rel_err", "speedup", "same");
    std::fflush(stdout);
  }

  void progress(const std::string& line) {
    if (rank_ != 0) return;
    std::fprintf(stderr, "[bench] %s\n", line.c_str());
    std::fflush(stderr);
  }

  void run_size(std::size_t s) {
    const std::vector<thinwire::Layer> layers = tb::make_layers(o_.layers, o_.sizes[s]);
    std::vector<std::size_t> offset(layers.size() + 1, 0);
    for (std::size_t l = 0; l < layers.size(); ++l) offset[l + 1] = offset[l] + layers[l].numel();
    const std::size_t n = offset.back(), bytes = 4 * n;

    std::vector<float> pristine(n), work(n);
    for (std::size_t l = 0; l < layers.size(); ++l)
      make_gradient(layers[l], l, o_.seed, rank_, pristine.data() + offset[l]);
    std::vector<double> exact(pristine.begin(), pristine.end());
    for (std::size_t off = 0; off < n;) {
      const int count = static_cast<int>(std::min<std::size_t>(n - off, 1 << 26));
      MPI_Allreduce(MPI_IN_PLACE, exact.data() + off, count, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
      off += static_cast<std::size_t>(count);
    }
    double exact_sq = 0;
    for (double& x : exact) {
      x /= size_;
      exact_sq += x * x;
    }
    // --device: the gradients every call reduces, in device memory; `work` then receives the
    // first call's result for the checks.
    const bool on_device = o_.device >= 0;
    std::unique_ptr<DeviceMemory> device_work;
    if (on_device) device_work = std::make_unique<DeviceMemory>(bytes);
    float* const grads = on_device ? device_work->floats() : work.data();
    std::vector<thinwire::TensorView> views;
    for (std::size_t l = 0; l < layers.size(); ++l)
      views.push_back(on_device
                          ? thinwire::TensorView::cuda(grads + offset[l], layers[l].numel(),
                                                       thinwire::DType::f32, o_.device, stream_)
                          : thinwire::TensorView::host(grads + offset[l], layers[l].numel()));

    // The candidates: MPI baselines, thinwire `none` (a baseline, and a result if asked
    // for), then the methods in the order given.
    std::vector<Candidate> cands;
    for (auto& b : baselines_) {
      Candidate c;
      c.name = b->name();
      c.dense_baseline = true;
      c.dense = b.get();
      cands.push_back(std::move(c));
    }
    const thinwire::Config dense_spec = thinwire::Config::parse("none");
    bool none_requested = false;
    for (const std::string& m : o_.methods)
      none_requested |= thinwire::Config::parse(m) == dense_spec;
    const bool thinwire_baseline =
        std::find(o_.baselines.begin(), o_.baselines.end(), "thinwire") != o_.baselines.end();
    if (!none_requested && thinwire_baseline) {
      Candidate c;
      c.name = "none";
      c.dense_baseline = true;
      cands.push_back(std::move(c));
    }
    for (const std::string& m : o_.methods) {
      Candidate c;
      c.name = m;
      c.requested = true;
      c.dense_baseline = thinwire_baseline && thinwire::Config::parse(m) == dense_spec;
      cands.push_back(std::move(c));
    }
    if (std::none_of(cands.begin(), cands.end(),
                     [](const Candidate& c) { return c.dense_baseline; }))
      throw std::runtime_error("no dense baseline to measure (see the notes: --baselines)");
    for (Candidate& c : cands)
      if (!c.dense) {
        MPI_Barrier(MPI_COMM_WORLD);
        const double t0 = MPI_Wtime();
        c.reducer =
            std::make_unique<thinwire::Reducer>(comm_, layers, thinwire::Config::parse(c.name));
        c.setup_s = MPI_Wtime() - t0;
        MPI_Allreduce(MPI_IN_PLACE, &c.setup_s, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
      }

    progress("size " + tb::format_size(bytes) + " (" + std::to_string(layers.size()) + " layers, " +
             o_.layers + "): " + std::to_string(cands.size()) + " candidates x (" +
             std::to_string(o_.warmup) + " warm-up + " + std::to_string(o_.iters) +
             " timed) calls, interleaved  [size " + std::to_string(s + 1) + "/" +
             std::to_string(o_.sizes.size()) + "]");

    namespace tk = thinwire::kernels;
    // A timing: `calls` calls back to back after one barrier, each on a fresh copy of the
    // gradients (a training loop's steps each reduce a new gradient); the time per call is the
    // span's / its calls. More than one call (Candidate::burst) only for compressed methods on
    // host tensors. Why bursts: with 4 emulated hosts on 2 cores, the first messages after a
    // barrier wait for the scheduler (a 4 KiB alltoall took 3.5 ms right after a barrier
    // against 0.4-1.0 ms back to back), which added 2-3 ms to every separately timed 5-8 ms
    // step; steps of a training loop, and nccl-tests' timed loops, run back to back. Device
    // calls are long and not oversubscribed.
    std::vector<std::vector<float>> burst_work;  // the gradient copies of calls after the first
    std::vector<std::vector<thinwire::TensorView>> burst_views;
    auto call = [&](Candidate& c, int calls = 1) {
      if (on_device) {
        check_kernels(tk::copy_async(grads, pristine.data(), bytes, stream_), "upload");
        check_kernels(tk::stream_synchronize(stream_), "upload");
      } else {
        std::memcpy(work.data(), pristine.data(), bytes);
        while (static_cast<int>(burst_work.size()) < calls - 1) {
          burst_work.emplace_back(n);
          std::vector<thinwire::TensorView> v;
          for (std::size_t l = 0; l < layers.size(); ++l)
            v.push_back(thinwire::TensorView::host(burst_work.back().data() + offset[l],
                                                   layers[l].numel()));
          burst_views.push_back(std::move(v));
        }
        for (int k = 0; k + 1 < calls; ++k)
          std::memcpy(burst_work[static_cast<std::size_t>(k)].data(), pristine.data(), bytes);
      }
      MPI_Barrier(MPI_COMM_WORLD);
      const double t0 = MPI_Wtime();
      if (c.dense)
        c.dense->allreduce(grads, n);
      else
        c.reducer->allreduce(views);
      for (int k = 0; k + 1 < calls; ++k)
        c.reducer->allreduce(burst_views[static_cast<std::size_t>(k)]);
      return (MPI_Wtime() - t0) / calls;
    };

    // First call of each candidate: correctness (error, same bits), then the warm-up.
    auto check = [&](Candidate& c) {
      c.untimed_s = call(c);
      if (on_device) {
        check_kernels(tk::copy_async(work.data(), grads, bytes, stream_), "download");
        check_kernels(tk::stream_synchronize(stream_), "download");
      }
      if (c.dense)
        for (float& x : work) x /= static_cast<float>(size_);
      c.identical = identical_on_all_ranks(work) && c.identical;
      double err = 0;
      for (std::size_t i = 0; i < n; ++i) {
        const double d = work[i] - exact[i];
        err += d * d;
      }
      c.rel_err = exact_sq > 0 ? std::sqrt(err / exact_sq) : std::sqrt(err);
    };
    for (Candidate& c : cands) check(c);
    // auto tries a close choice against dense on its first steps (model/auto_trial.hpp): the
    // rest of that trial runs before the warm-up, so that the timed calls see what it settled
    // on. Where that is not what its first step ran, the error is measured again.
    for (Candidate& c : cands) {
      if (!c.reducer || c.reducer->config().method != thinwire::Method::automatic) continue;
      const auto specs = [&] {
        std::vector<std::string> v;
        for (std::size_t i = 0; i < layers.size(); ++i) v.push_back(c.reducer->layer_spec(i));
        return v;
      };
      const std::vector<std::string> first = specs();
      for (int k = 1; k < thinwire::detail::model::AutoTrial::kSteps; ++k) call(c);
      if (specs() != first) check(c);
    }
    for (int w = 1; w < o_.warmup; ++w)
      for (Candidate& c : cands) c.untimed_s = std::min(c.untimed_s, call(c));
    choose_bursts(cands, bytes, on_device, call);
    for (Candidate& c : cands)
      if (c.reducer) c.reducer->reset_stats();

    double last = MPI_Wtime();
    const double start = last;
    // The kernels are timed between the timed iterations, so that the rates see the machine
    // as the calls do (one probe before the size, on the shared VM, once caught a contended
    // moment and predicted a step 57 % slow).
    // Device steps run the CUDA kernels, not the host kernels the probes time: none there.
    const int probes = on_device ? 0 : std::min(o_.iters, kRateProbes);
    std::vector<json> rate_samples;
    for (int it = 0; it < o_.iters; ++it) {
      // Rotate the order so that no candidate always runs right after the same one.
      for (std::size_t k = 0; k < cands.size(); ++k) {
        Candidate& c = cands[(k + static_cast<std::size_t>(it)) % cands.size()];
        // A compressed method's timed call follows an untimed call of its own, so that it
        // meets the link as the method's own steps leave it, as in training, not as the
        // candidate before left it: right after a dense allreduce of 64 MiB over the emulated
        // 500 Mbit/s link, TCP's state (a window and round-trip estimate grown by the shaper's
        // queue, fast retransmits) added about 130 ms to 3 of 18 onebit calls of 52 ms, and
        // the settling call removed that. Dense candidates move the same bulk every call.
        if (c.settled()) {
          call(c);
          c.reducer->reset_stats();
        }
        c.times.push_back(call(c, c.burst));
        if (c.reducer) {
          const thinwire::Stats st = c.reducer->stats();
          c.timed_steps += st.steps;
          c.timed_bytes_sent += st.bytes_sent;
          c.timed_bytes_dense += st.bytes_dense;
          c.timed_seconds[0] += st.seconds_encode;
          c.timed_seconds[1] += st.seconds_comm;
          c.timed_seconds[2] += st.seconds_decode;
          c.reducer->reset_stats();
        }
      }
      if ((it + 1) * probes / o_.iters != it * probes / o_.iters)
        rate_samples.push_back(measure_compute_rates(layers));
      const double now = MPI_Wtime();
      if (now - last > o_.progress_s && it + 1 < o_.iters) {
        progress("  timed iteration " + std::to_string(it + 1) + "/" + std::to_string(o_.iters) +
                 fmt(", %.0f s so far", now - start));
        last = now;
      }
    }

    const json rates = tb::median_per_key(rate_samples);
    for (Candidate& c : cands) finish(c, layers);
    // The baseline: the fastest dense candidate.
    const Candidate* base = nullptr;
    for (const Candidate& c : cands)
      if (c.dense_baseline && (!base || c.median_s < base->median_s)) base = &c;

    const double bus = size_ > 1 ? 2.0 * (size_ - 1) / size_ : 1.0;
    for (const Candidate& c : cands) {
      if (c.dense_baseline) {
        out_["baselines"].push_back({{"name", c.name == "none" ? "thinwire none" : c.name},
                                     {"size_bytes", bytes},
                                     {"time_median_s", c.median_s},
                                     {"time_min_s", c.min_s},
                                     {"algbw_GBps", bytes / c.median_s / 1e9},
                                     {"busbw_GBps", bytes / c.median_s / 1e9 * bus},
                                     {"rel_err", c.rel_err},
                                     {"identical", c.identical},
                                     {"chosen", &c == base}});
      }
      if (c.requested) {
        json r = {{"method", c.name},
                  {"spec", c.spec},
                  {"size_bytes", bytes},
                  {"ranks", size_},
                  {"layers", o_.layers},
                  {"num_layers", layers.size()},
                  {"time_median_s", c.median_s},
                  {"time_min_s", c.min_s},
                  {"time_max_s", c.max_s},
                  {"baseline", base->name == "none" ? "thinwire none" : base->name},
                  {"baseline_time_median_s", base->median_s},
                  {"speedup", base->median_s / c.median_s},
                  {"algbw_GBps", bytes / c.median_s / 1e9},
                  {"busbw_GBps", bytes / c.median_s / 1e9 * bus},
                  {"bytes_sent", c.bytes_sent},
                  {"compression_ratio", c.ratio},
                  {"rel_err", c.rel_err},
                  {"identical", c.identical},
                  {"tensors", on_device ? "device" : "host"}};
        if (!c.chosen.empty()) r["layer_specs"] = c.chosen;
        if (!c.dense) r["setup_s"] = c.setup_s;
        if (!on_device) r["compute_rates"] = rates;
        r["timed_after"] = c.settled() ? "own call" : "other candidate";
        r["calls_per_timing"] = c.burst;
        r["untimed_call_s"] = c.untimed_s;
        if (!c.dense)
          r["phases_s"] = {{"encode", c.phase[0]}, {"comm", c.phase[1]}, {"decode", c.phase[2]}};
        out_["results"].push_back(r);
      }
    }
    if (rank_ == 0) print_size(cands, base, bytes);
  }

  // How many calls each timing spans (Candidate::burst): compressed methods on host tensors
  // get enough back-to-back calls to last --min-timed-s by the slowest rank's fastest untimed
  // call (every rank the same number: a burst is collective), at most 16 and as many gradient
  // copies as 256 MiB hold. Each method first makes two more untimed calls, the second timed:
  // with one warm-up the only call so far was the first, which allocates (in a short test a 4
  // MiB onebit's first call took 17-25 ms, its timed calls 5 ms), and a call that follows
  // another candidate's 64 MiB dense one can take 130 ms longer (TCP after a dense call, README
  // "Scaling"; in a run not kept a 30 ms powersgd call was timed alone for that).
  template <typename Call>
  void choose_bursts(std::vector<Candidate>& cands, std::size_t bytes, bool on_device,
                     Call&& call) {
    const bool bursts = !on_device && o_.min_timed_s > 0;
    // The slowest rank's times: every rank decides alike (a call is collective).
    const auto slowest = [&] {
      std::vector<double> t;
      for (const Candidate& c : cands) t.push_back(c.untimed_s);
      MPI_Allreduce(MPI_IN_PLACE, t.data(), static_cast<int>(t.size()), MPI_DOUBLE, MPI_MAX,
                    MPI_COMM_WORLD);
      return t;
    };
    std::vector<double> untimed = slowest();
    if (bursts) {
      for (Candidate& c : cands)
        if (c.settled()) {
          call(c);
          c.untimed_s = call(c);  // after one of its own, not the first's
        }
      const std::vector<double> second = slowest();
      for (std::size_t i = 0; i < untimed.size(); ++i) untimed[i] = std::min(untimed[i], second[i]);
    }
    constexpr int kMaxBurst = 16;
    constexpr std::size_t kBurstMemory = std::size_t{256} << 20;
    const int by_memory = static_cast<int>(
        std::clamp<std::size_t>(kBurstMemory / std::max<std::size_t>(bytes, 1), 1, kMaxBurst));
    for (std::size_t i = 0; i < cands.size(); ++i) {
      Candidate& c = cands[i];
      c.untimed_s = untimed[i];
      c.burst = 1;
      if (!bursts || !c.settled() || !(untimed[i] > 0)) continue;
      const double wanted = std::ceil(o_.min_timed_s / untimed[i]);
      c.burst = static_cast<int>(std::clamp(wanted, 1.0, static_cast<double>(by_memory)));
    }
  }

  // The ranks on this rank's host (by processor name, so each emulated host is one): how
  // many, and this rank's place among them; a rank's share of a core on that host. Unlike
  // auto's calibration (one rank per machine, common/machine.hpp), the emulated hosts time
  // their kernels at the same time: the validation wants the rates steps see on the shared
  // VM, memory bandwidth and the kernel's network work included (timed once per machine and
  // divided by the core share, they made 72 of 95 predictions within 20 %, all misses
  // optimistic, against 83 of 95).
  void find_host_peers() {
    char name[MPI_MAX_PROCESSOR_NAME] = {};
    int length = 0;
    MPI_Get_processor_name(name, &length);
    const auto peers = thinwire::detail::model::peers_by(comm_.host_transport(), name);
    ranks_on_host_ = peers.ranks;
    host_rank_ = peers.index;
    cpu_share_ = peers.cpu_share();
  }

  // A barrier that waits asleep, leaving the cores to a rank that is timing kernels.
  static void sleeping_barrier() {
    MPI_Request request;
    MPI_Ibarrier(MPI_COMM_WORLD, &request);
    int done = 0;
    while (MPI_Test(&request, &done, MPI_STATUS_IGNORE) == MPI_SUCCESS && !done)
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }

  // This machine's kernels for every requested family, timed by the cost model's own
  // measure_rates(): one rank per host (find_host_peers) times them while the host's other
  // ranks wait asleep, maxed over the hosts; the cost model's validation divides them by the
  // host's cpu_share. Hosts that share a machine (the emulated cluster) time at once, as their
  // steps compute at once. (Making them meet at a barrier before every timed call was tried:
  // the kernels then timed at about one core's rate on 4 hosts sharing 2 cores (apparently
  // the scheduler runs two hosts' calls, then the other two's) and the model's error grew: 70
  // of 95 within 20 %, the misses at 4 hosts all optimistic.)
  json measure_compute_rates(const std::vector<thinwire::Layer>& layers) {
    namespace twm = thinwire::detail::model;
    twm::ComputeRates mine;
    if (host_rank_ == 0) {
      mine = twm::rates_from_json(measure_compute_rates_here(layers));
    } else {
      // The same per-shape keys as the timing rank's, at 0, for max_rates.
      for (const std::string& m : o_.methods)
        for (const auto& shape : twm::low_rank_shapes(layers, method_timed(m)))
          mine.powersgd_by_shape[shape] = {};
    }
    sleeping_barrier();
    return twm::rates_to_json(twm::max_rates(comm_.host_transport(), mine));
  }

  // One sample per kernel, the mean of cold calls adding up to kRateMinTimedS: on the emulated
  // cluster 4 hosts share 2 cores, and a single 1-5 ms call (the mix's largest layer, 1.3 M
  // elements) either ran through or waited out another host's scheduler slice; its probes timed
  // copy at 2.7 and 3.5 ns per element in two runs against 1.5-1.8 at 4 Mi elements.
  json measure_compute_rates_here(const std::vector<thinwire::Layer>& layers) {
    namespace twm = thinwire::detail::model;
    const auto [rows, cols] = twm::sample_shape(layers, std::size_t{1} << 22);
    const std::size_t step_elements = twm::total_elements(layers);
    json j = twm::rates_to_json(twm::measure_rates(thinwire::Config::parse("none"), rows, cols, 1,
                                                   kRateMinTimedS, twm::RateKernels::base_and_codec,
                                                   1, 0, step_elements));
    for (const std::string& m : o_.methods) {
      const thinwire::Config c = method_timed(m);
      if (c.method == thinwire::Method::none) continue;
      // The base kernels were timed above, once per probe.
      twm::ComputeRates codec = twm::measure_rates(
          c, rows, cols, 1, kRateMinTimedS, twm::RateKernels::codec_only, 1,
          twm::topk_layer_elements(layers, twm::kTopkLayerMaxElements), step_elements);
      // PowerSGD's speed depends on the matrix shape: each of the layers' shapes too.
      twm::measure_low_rank_shapes(c, layers, std::size_t{1} << 22, kRateMinTimedS, &codec);
      const json r = twm::rates_to_json(codec);
      for (const auto& [name, v] : r.items())
        if (v.get<double>() > 0) j[name] = v;
    }
    return j;
  }

  // The codec a method's probe times: auto's family for auto.
  static thinwire::Config method_timed(const std::string& method) {
    thinwire::Config c = thinwire::Config::parse(method);
    if (c.method == thinwire::Method::automatic) {
      c.method = c.family;
      c.family = thinwire::Method::none;
    }
    return c;
  }

  void finish(Candidate& c, const std::vector<thinwire::Layer>& layers) {
    // The slowest rank's time for each call.
    std::vector<double> slowest(c.times.size());
    MPI_Allreduce(c.times.data(), slowest.data(), static_cast<int>(c.times.size()), MPI_DOUBLE,
                  MPI_MAX, MPI_COMM_WORLD);
    c.median_s = tb::median(slowest);
    c.min_s = slowest.empty() ? 0 : *std::min_element(slowest.begin(), slowest.end());
    c.max_s = slowest.empty() ? 0 : *std::max_element(slowest.begin(), slowest.end());
    const double bytes = static_cast<double>(tb::total_bytes(layers));
    if (c.dense) {
      c.bytes_sent = size_ > 1 ? 2.0 * bytes * (size_ - 1) / size_ : 0.0;
      c.ratio = 1.0;
      c.spec = "dense";
      return;
    }
    const double steps = c.timed_steps ? static_cast<double>(c.timed_steps) : 1.0;
    c.bytes_sent = c.timed_steps ? static_cast<double>(c.timed_bytes_sent) / steps : 0;
    for (int k = 0; k < 3; ++k) c.phase[k] = c.timed_seconds[k] / steps;
    MPI_Allreduce(MPI_IN_PLACE, c.phase, 3, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    c.ratio = c.timed_bytes_sent ? static_cast<double>(c.timed_bytes_dense) /
                                       static_cast<double>(c.timed_bytes_sent)
                                 : 1.0;
    c.spec = c.reducer->config().to_string();
    if (c.reducer->config().method == thinwire::Method::automatic)
      for (std::size_t i = 0; i < layers.size(); ++i) ++c.chosen[c.reducer->layer_spec(i)];
  }

  void print_size(const std::vector<Candidate>& cands, const Candidate* base, std::size_t bytes) {
    const double bus = size_ > 1 ? 2.0 * (size_ - 1) / size_ : 1.0;
    for (const Candidate& c : cands) {
      std::string name = c.name == "none" && !c.requested ? "thinwire none" : c.name;
      if (&c == base) name += " *";
      std::printf("%10s  %-24s %10.3f %10.4f %10.4f %11s %7.1fx %10.3e %7.2fx %5s\n",
                  tb::format_size(bytes).c_str(), name.c_str(), 1e3 * c.median_s,
                  bytes / c.median_s / 1e9, bytes / c.median_s / 1e9 * bus,
                  human_bytes(c.bytes_sent).c_str(), c.ratio, c.rel_err,
                  base->median_s / c.median_s, c.identical ? "yes" : "NO");
      for (const auto& [spec, count] : c.chosen)
        std::printf("%10s  %-24s   auto chose '%s' for %d layer(s)\n", "", "", spec.c_str(), count);
      if (!c.chosen.empty())
        std::printf("%10s  %-24s   construction with the calibration probe: %.3f s\n", "", "",
                    c.setup_s);
    }
    std::fflush(stdout);
  }

  const Options& o_;
  thinwire::Communicator comm_;
  json out_;
  int rank_ = 0, size_ = 1;
  int ranks_on_host_ = 1, host_rank_ = 0;  // find_host_peers()
  double cpu_share_ = 1.0;
  std::vector<std::unique_ptr<tb::DenseBaseline>> baselines_;
  std::vector<std::string> notes_;
  // THINWIRE_MPI_SEGMENT_BYTES as the MPI transport agreed it (0: whole messages).
  std::uint64_t mpi_segment_bytes_ = 0;
  std::string mpi_allreduce_ = "none (no MPI transport)";
  int mpi_log_allgather_min_ranks_ = thinwire::detail::MpiTransport::kDefaultLogAllgatherMinRanks;
  // --device: the stream of the gradients and of the dense baseline, and the device transport
  // (owned by comm_'s state).
  void* stream_ = nullptr;
  thinwire::detail::DeviceTransport* transport_ = nullptr;
};

}  // namespace

int main(int argc, char** argv) {
  const char* const memory_note = tb::keep_freed_memory_mapped();
  tb::enable_forced_algorithms();
  MPI_Init(&argc, &argv);
  int world_rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);

  Options o;
  o.memory_note = memory_note;
  std::string methods = kDefaultMethods, sizes, min_bytes, max_bytes, device = "host",
              baselines = "default,ring,thinwire";
  double factor = 2.0;
  po::options_description opts(
      "thinwire-bench-allreduce: time per allreduce call of each compression method against "
      "the fastest dense allreduce, measured in the same run\nOptions");
  opts.add_options()("help,h", "show this help")(
      "methods", po::value<std::string>(&methods)->default_value(methods),
      "comma-separated compression specs; key=value items belong to the spec before them")(
      "sizes", po::value<std::string>(&sizes),
      "comma-separated gradient sizes in bytes of f32, K/M/G suffixes (default 1M,16M,64M)")(
      "minbytes,b", po::value<std::string>(&min_bytes), "smallest size of a sweep (with -e, -f)")(
      "maxbytes,e", po::value<std::string>(&max_bytes), "largest size of a sweep")(
      "stepfactor,f", po::value<double>(&factor)->default_value(factor),
      "multiplication factor between sizes of a sweep (each rounded down to whole f32)")(
      "iters", po::value<int>(&o.iters)->default_value(o.iters), "timed calls per candidate")(
      "warmup", po::value<int>(&o.warmup)->default_value(o.warmup),
      "untimed calls per candidate first (the first one also measures rel_err)")(
      "layers", po::value<std::string>(&o.layers)->default_value(o.layers),
      "single: one [rows, cols] tensor; mix: transformer blocks of matrices and vectors")(
      "json", po::value<std::string>(&o.json_path), "write the results to this JSON file")(
      "seed", po::value<std::uint64_t>(&o.seed)->default_value(o.seed), "seed of the gradients")(
      "baselines", po::value<std::string>(&baselines)->default_value(baselines),
      "dense candidates for the baseline: default (MPI_Allreduce), ring (Open MPI's, forced), "
      "thinwire (thinwire's none)")("progress",
                                    po::value<double>(&o.progress_s)->default_value(o.progress_s),
                                    "seconds between progress lines on stderr during long sizes")(
      "min-timed-s", po::value<double>(&o.min_timed_s)->default_value(o.min_timed_s),
      "a compressed method's shorter calls are timed in bursts back to back lasting about "
      "this long, each call on a fresh gradient (0: every call alone after a barrier)")(
      "device", po::value<std::string>(&device)->default_value(device),
      "where the gradients live: host, a CUDA device index N (device tensors; the dense "
      "baseline is then the device transport's allreduce: ncclAllReduce, or staged over MPI "
      "with THINWIRE_TRANSPORT=mpi), or local (the rank's index on its node modulo the "
      "devices)");
  po::variables_map vm;
  try {
    po::store(po::parse_command_line(argc, argv, opts), vm);
    po::notify(vm);
    if (vm.count("help")) {
      if (world_rank == 0) std::cout << opts;
      MPI_Finalize();
      return 0;
    }
    if (device != "host" && device != "local") {
      std::size_t end = 0;
      int index = -1;
      try {
        index = std::stoi(device, &end);
      } catch (const std::exception&) {
        end = 0;
      }
      if (end != device.size() || index < 0)
        throw po::error("--device " + device + ": expected host, local or a device index >= 0");
      o.device = index;
    }
    if (o.iters < 1 || o.warmup < 1) throw po::error("--iters and --warmup must be >= 1");
    if (!(o.min_timed_s >= 0 && o.min_timed_s <= 60))
      throw po::error("--min-timed-s must be between 0 and 60 seconds");
    o.baselines = tb::split_specs(baselines);
    for (const std::string& b : o.baselines)
      if (b != "default" && b != "ring" && b != "thinwire")
        throw po::error("--baselines: unknown '" + b + "' (default, ring, thinwire)");
    if (o.baselines.empty()) throw po::error("--baselines is empty");
    o.methods = tb::split_specs(methods);
    if (o.methods.empty()) throw po::error("--methods is empty");
    for (const std::string& m : o.methods) thinwire::Config::parse(m);
    tb::make_layers(o.layers, 4096);
    if (vm.count("sizes") && (vm.count("minbytes") || vm.count("maxbytes")))
      throw po::error("give either --sizes or -b/-e, not both");
    if (vm.count("minbytes") || vm.count("maxbytes")) {
      if (!vm.count("minbytes") || !vm.count("maxbytes"))
        throw po::error("a sweep needs both -b and -e");
      if (!(factor > 1.0) || !std::isfinite(factor)) throw po::error("-f must be a number > 1");
      const std::size_t lo = tb::parse_size(min_bytes), hi = tb::parse_size(max_bytes);
      if (lo < 4 || lo % 4 || hi < lo)
        throw po::error("-b " + min_bytes + " -e " + max_bytes +
                        ": expected -b a positive multiple of 4 bytes (f32) and -e >= -b");
      // Each size of the sweep rounded down to whole f32 elements (as nccl-tests aligns its
      // sizes to the data type), once each.
      for (double b = static_cast<double>(lo); b <= static_cast<double>(hi) * (1 + 1e-9);
           b *= factor) {
        const std::size_t size = static_cast<std::size_t>(b) / 4 * 4;
        if (o.sizes.empty() || o.sizes.back() != size) o.sizes.push_back(size);
      }
    } else {
      for (const std::string& s : tb::split_specs(sizes.empty() ? "1M,16M,64M" : sizes))
        o.sizes.push_back(tb::parse_size(s));
      if (o.sizes.empty()) throw po::error("--sizes: no sizes in '" + sizes + "'");
    }
    for (std::size_t s : o.sizes)
      if (s < 4 || s % 4) throw po::error("sizes must be positive multiples of 4 bytes (f32)");
  } catch (const std::exception& e) {
    if (world_rank == 0) std::cerr << "thinwire-bench-allreduce: " << e.what() << "\n\n" << opts;
    MPI_Finalize();
    return 2;
  }

  if (!tb::json_path_writable(o.json_path, "thinwire-bench-allreduce", MPI_COMM_WORLD)) {
    MPI_Finalize();
    return 2;
  }

  // Device tensors: a usable device on every rank, or a clear refusal on every rank (exit 2).
  // The CPU emulation (thinwire-bench-allreduce-emulated) has its one emulated device 0.
  if (device != "host") {
    std::string why;
    const int count = thinwire::kernels::device_count(&why);
    if (device == "local") {  // collective: on every rank, whatever it sees
      MPI_Comm node;
      MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, world_rank, MPI_INFO_NULL, &node);
      int local = 0;
      MPI_Comm_rank(node, &local);
      MPI_Comm_free(&node);
      o.device = count > 0 ? local % count : 0;
    }
    if (count == 0)
      why = "no usable CUDA device: " + why +
            " (thinwire-bench-allreduce-emulated runs device tensors on the CPU emulation of "
            "the kernels)";
    else if (o.device >= count)
      why = "device " + std::to_string(o.device) + " does not exist: this process sees " +
            std::to_string(count) + " device(s)";
    else
      why.clear();
    int ok = why.empty() ? 1 : 0;
    MPI_Allreduce(MPI_IN_PLACE, &ok, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    if (!ok) {
      if (!why.empty())
        std::fprintf(stderr, "thinwire-bench-allreduce: rank %d: --device %s: %s\n", world_rank,
                     device.c_str(), why.c_str());
      MPI_Finalize();
      return 2;
    }
  }

  try {
    {
      Bench bench(o, thinwire::Communicator::from_mpi(MPI_COMM_WORLD), tb::provenance(argc, argv));
      bench.run();
    }  // Reducers, device transport and stream go before MPI
    MPI_Finalize();
    return 0;
  } catch (const thinwire::Error& e) {
    std::fprintf(stderr, "thinwire-bench-allreduce: rank %d: %s (code %s)\n", world_rank, e.what(),
                 thinwire::to_string(e.code()));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "thinwire-bench-allreduce: rank %d: error: %s\n", world_rank, e.what());
  }
  std::fflush(stderr);
  MPI_Abort(MPI_COMM_WORLD, 1);
  return 1;
}
