// thinwire-bench-codec: encode/decode speed of every compressor on the host, single-threaded,
// against baselines measured in the same process (memcpy of the same buffer, and
// std::nth_element for top-k selection). Google Benchmark runs the cases; a reporter
// collects them and writes JSON with the ratios, the commit, the host and the command.
//
//   thinwire-bench-codec [--n=16777216] [--json=FILE] [--simd=sse2|scalar]
//                        [google benchmark flags]
//
// --simd caps the host kernels at a narrower instruction set than the CPU has (default: the
// widest, AVX2 where present), to see what CPUs without it get.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "bench_common.hpp"
#include "bench_layers.hpp"
#include "common/simd.hpp"
#include "compress/low_rank.hpp"
#include "compress/onebit_codec.hpp"
#include "compress/onebit_error_memory.hpp"
#include "compress/qsgd_codec.hpp"
#include "compress/topk_average.hpp"
#include "compress/topk_codec.hpp"
#include "compress/topk_select.hpp"
#include "reducer/error_feedback.hpp"

namespace tw = thinwire::detail;

namespace {

std::size_t g_n = std::size_t{1} << 24;

const char* simd_name(tw::SimdLevel level) {
  switch (level) {
    case tw::SimdLevel::avx2:
      return "avx2";
    case tw::SimdLevel::sse2:
      return "sse2";
    default:
      return "scalar";
  }
}

struct Data {
  std::vector<float> g, e, out;
  std::vector<std::uint8_t> payload;
};

Data& data() {
  static Data d = [] {
    Data x;
    x.g.resize(g_n);
    x.e.resize(g_n);
    x.out.resize(g_n);
    std::mt19937 rng(42);
    std::normal_distribution<float> dist(0.0f, 1.0f);
    for (float& v : x.g) v = dist(rng);
    for (float& v : x.e) v = 0.1f * dist(rng);
    return x;
  }();
  return d;
}

// Bytes a kernel must move at least, for "bandwidth": memcpy reads n*4 and writes n*4.
void set_bytes(benchmark::State& state, double bytes_moved) {
  state.counters["bytes_moved"] = bytes_moved;
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) *
                          static_cast<std::int64_t>(g_n * 4));
}

void BM_memcpy(benchmark::State& state) {
  Data& d = data();
  for (auto _ : state) {
    std::memcpy(d.out.data(), d.g.data(), g_n * 4);
    benchmark::ClobberMemory();
  }
  set_bytes(state, 2.0 * g_n * 4);
}

// The worker side of 1-bit compression with error feedback, exactly as the Reducer runs it
// (TwoPhase with ef=ef, one chunk): x = g + e, scale, sign bits, new error e = x - s*sign(x),
// with e kept factored by OnebitErrorMemory.
void BM_onebit_ef_encode(benchmark::State& state) {
  Data& d = data();
  tw::OnebitCodec codec;
  d.payload.resize(codec.encoded_bytes(g_n));
  tw::OnebitErrorMemory memory;
  memory.assign(d.e.data(), g_n);
  const std::size_t bounds[2] = {0, g_n};
  for (auto _ : state) {
    memory.encode(d.g.data(), g_n, bounds, 1, tw::EncodeKey{}, d.payload.data(), 0);
    benchmark::ClobberMemory();
  }
  set_bytes(state, 3.0 * g_n * 4 + g_n / 8.0);  // read g and e, write e and the bits
}

void BM_onebit_decode(benchmark::State& state) {
  Data& d = data();
  tw::OnebitCodec codec;
  d.payload.resize(codec.encoded_bytes(g_n));
  std::vector<float> x = d.g;
  codec.encode(x.data(), g_n, tw::EncodeKey{}, d.payload.data(), nullptr);
  for (auto _ : state) {
    codec.decode(d.payload.data(), d.payload.size(), g_n, d.out.data(), tw::DecodeMode::assign, {});
    benchmark::ClobberMemory();
  }
  set_bytes(state, g_n * 4 + g_n / 8.0);
}

std::size_t topk_k() {
  return tw::topk_count(0.01, g_n);
}

// Baseline for selection: the k-th largest |x| with std::nth_element (on a copy of |x|).
void BM_nth_element_abs(benchmark::State& state) {
  Data& d = data();
  std::vector<float> a(g_n);
  for (auto _ : state) {
    for (std::size_t i = 0; i < g_n; ++i) a[i] = std::fabs(d.g[i]);
    std::nth_element(a.begin(), a.begin() + static_cast<long>(topk_k()), a.end(),
                     std::greater<float>());
    benchmark::DoNotOptimize(a[topk_k()]);
  }
  set_bytes(state, g_n * 4);
}

void BM_topk_select_exact(benchmark::State& state) {
  Data& d = data();
  tw::TopkSelector sel;
  std::vector<std::uint32_t> idx(topk_k());
  for (auto _ : state) {
    sel.select_exact(d.g.data(), g_n, topk_k(), idx.data());
    benchmark::DoNotOptimize(idx.data());
  }
  set_bytes(state, g_n * 4);
}

void BM_topk_select_sampled(benchmark::State& state) {
  Data& d = data();
  tw::TopkSelector sel;
  std::vector<std::uint32_t> idx(topk_k());
  const auto rng = tw::RandomStream::make(1, 0, tw::kPhaseSample, 0, 0);
  for (auto _ : state) {
    sel.select_sampled(d.g.data(), g_n, topk_k(), rng, idx.data());
    benchmark::DoNotOptimize(idx.data());
  }
  set_bytes(state, g_n * 4);
}

// The full worker step of top-k with error feedback, as the Reducer runs it (SparseAllgather
// with ef=ef): x = g + e summed in the selection pass, select, pack, residual.
void BM_topk_ef_encode(benchmark::State& state) {
  Data& d = data();
  tw::TopkCodec codec(0.01, thinwire::Selection::exact);
  d.payload.resize(codec.encoded_bytes(g_n));
  std::vector<float> e = d.e;
  for (auto _ : state) {
    codec.encode_ef(e.data(), d.g.data(), g_n, tw::EncodeKey{}, d.payload.data());
    benchmark::ClobberMemory();
  }
  set_bytes(state, 3.0 * g_n * 4);
}

// Decode of one payload into a dense tensor: zero it, scatter the k values.
void BM_topk_decode(benchmark::State& state) {
  Data& d = data();
  tw::TopkCodec codec(0.01, thinwire::Selection::exact);
  d.payload.resize(codec.encoded_bytes(g_n));
  std::vector<float> x = d.g;
  codec.encode(x.data(), g_n, tw::EncodeKey{}, d.payload.data(), nullptr);
  for (auto _ : state) {
    codec.decode(d.payload.data(), d.payload.size(), g_n, d.out.data(), tw::DecodeMode::assign, {});
    benchmark::ClobberMemory();
  }
  set_bytes(state, g_n * 4);
}

// Top-k's decode as every rank runs it after the allgather (SparseAllgather): the output
// zeroed, kTopkTimingPayloads payloads parsed and added in rank order, each touched entry
// divided by P. Their indices are moved apart, as different ranks' are, so that the entries
// miss the cache as a step's do. The cost model takes its per-entry cost from this case:
// BM_topk_decode (one payload, no division) ran faster than the zeroing estimate it subtracts.
void BM_topk_average(benchmark::State& state) {
  Data& d = data();
  tw::TopkCodec codec(0.01, thinwire::Selection::exact);
  d.payload.resize(codec.encoded_bytes(g_n));
  std::vector<float> x = d.g;
  codec.encode(x.data(), g_n, tw::EncodeKey{}, d.payload.data(), nullptr);
  constexpr int p = tw::kTopkTimingPayloads;
  std::vector<std::vector<std::uint8_t>> payloads;
  for (int i = 0; i < p; ++i)
    payloads.push_back(tw::shifted_topk_payload(d.payload, topk_k(), g_n, i * (g_n / p) + i));
  std::vector<tw::TopkCodec::View> views(p);
  std::vector<std::uint64_t> touched;
  for (auto _ : state) {
    for (int i = 0; i < p; ++i)
      views[i] = codec.parse(payloads[i].data(), payloads[i].size(), g_n, tw::PayloadSource{});
    tw::average_topk(views.data(), p, d.out.data(), g_n, touched);
    benchmark::ClobberMemory();
  }
  state.counters["payloads"] = p;
  set_bytes(state, g_n * 4 + p * topk_k() * 8.0);
}

void BM_qsgd4_ef_encode(benchmark::State& state) {
  Data& d = data();
  tw::QsgdCodec codec(4, 512, true);
  d.payload.resize(codec.encoded_bytes(g_n));
  std::vector<float> e = d.e;
  for (auto _ : state) {
    tw::add_error_feedback(e.data(), d.g.data(), g_n);
    codec.encode(e.data(), g_n, tw::EncodeKey{}, d.payload.data(), e.data());
    benchmark::ClobberMemory();
  }
  set_bytes(state, 3.0 * g_n * 4 + g_n / 2.0);
}

void BM_qsgd4_decode(benchmark::State& state) {
  Data& d = data();
  tw::QsgdCodec codec(4, 512, true);
  d.payload.resize(codec.encoded_bytes(g_n));
  std::vector<float> x = d.g;
  codec.encode(x.data(), g_n, tw::EncodeKey{}, d.payload.data(), nullptr);
  for (auto _ : state) {
    codec.decode(d.payload.data(), d.payload.size(), g_n, d.out.data(), tw::DecodeMode::assign, {});
    benchmark::ClobberMemory();
  }
  set_bytes(state, g_n * 4 + g_n / 2.0);
}

// PowerSGD rank 4 on a square matrix of n elements: P = M Q, orthonormalise, Q = M^T P
// (encode), M_hat = P Q^T (decode).
std::size_t square_side() {
  return static_cast<std::size_t>(std::sqrt(static_cast<double>(g_n)));
}

void BM_powersgd4_encode(benchmark::State& state) {
  Data& d = data();
  const std::size_t s = square_side(), r = 4;
  std::vector<float> q(s * r), p(s * r);
  tw::low_rank::random_init(q.data(), s, r, 1, 0, 0);
  for (auto _ : state) {
    tw::low_rank::project(d.g.data(), s, s, q.data(), r, p.data());
    tw::low_rank::orthonormalize(p.data(), s, r);
    tw::low_rank::back_project(d.g.data(), s, s, p.data(), r, q.data());
    benchmark::ClobberMemory();
  }
  set_bytes(state, 2.0 * s * s * 4);
}

void BM_powersgd4_decode(benchmark::State& state) {
  Data& d = data();
  const std::size_t s = square_side(), r = 4;
  std::vector<float> q(s * r), p(s * r);
  tw::low_rank::random_init(q.data(), s, r, 1, 0, 0);
  tw::low_rank::random_init(p.data(), s, r, 2, 0, 0);
  for (auto _ : state) {
    tw::low_rank::reconstruct(p.data(), q.data(), s, s, r, d.out.data());
    benchmark::ClobberMemory();
  }
  set_bytes(state, s * s * 4.0);
}

// Collects each case's median real time (seconds per iteration) for the JSON.
class Collector : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& runs) override {
    ConsoleReporter::ReportRuns(runs);
    for (const Run& run : runs) {
      if (run.run_type == Run::RT_Aggregate && run.aggregate_name != "median") continue;
      const std::string name = run.run_name.function_name;
      const double seconds =
          run.GetAdjustedRealTime() / benchmark::GetTimeUnitMultiplier(run.time_unit);
      Entry& e = results[name];
      // Prefer the median aggregate when repetitions are on.
      if (run.run_type == Run::RT_Aggregate || e.seconds == 0) {
        e.seconds = seconds;
        auto it = run.counters.find("bytes_moved");
        e.bytes_moved = it == run.counters.end() ? 0 : static_cast<double>(it->second);
      }
    }
  }
  struct Entry {
    double seconds = 0, bytes_moved = 0;
  };
  std::map<std::string, Entry> results;
};

}  // namespace

BENCHMARK(BM_memcpy)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_onebit_ef_encode)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_onebit_decode)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_nth_element_abs)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_topk_select_exact)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_topk_select_sampled)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_topk_ef_encode)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_topk_decode)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_topk_average)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_qsgd4_ef_encode)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_qsgd4_decode)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_powersgd4_encode)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_powersgd4_decode)->UseRealTime()->Unit(benchmark::kMillisecond);

// --n=COUNT: an integer with an optional K, M or G suffix (the benchmarks' own parse_size),
// 1024 to 2^31 elements (8 GiB of f32); 0 for anything else.
std::size_t parse_n(const std::string& text) {
  std::size_t v = 0;
  try {
    v = thinwire::bench::parse_size(text);
  } catch (const std::invalid_argument&) {
    return 0;
  }
  return v >= 1024 && v <= (std::size_t{1} << 31) ? v : 0;
}

int main(int argc, char** argv) {
  std::string json_path;
  std::vector<char*> args;
  auto usage = [&](const std::string& why) {
    std::fprintf(stderr,
                 "thinwire-bench-codec: %s\nusage: thinwire-bench-codec [--n=16777216] "
                 "[--json=FILE] [--simd=sse2|scalar] [Google Benchmark flags]\n",
                 why.c_str());
    return 2;
  };
  for (int i = 0; i < argc; ++i) {
    const std::string a = argv[i];
    if (a.rfind("--n=", 0) == 0) {
      g_n = parse_n(a.substr(4));
      if (g_n == 0) return usage("--n: '" + a.substr(4) + "' is not a count from 1024 to 2^31");
    } else if (a.rfind("--json=", 0) == 0) {
      json_path = a.substr(7);
      // Fail now rather than after the benchmarks (appending leaves an existing file as it is).
      if (json_path.empty() || !std::ofstream(json_path, std::ios::app))
        return usage("--json: cannot write '" + json_path + "'");
    } else if (a == "--simd=scalar") {
      tw::set_simd_cap(tw::SimdLevel::scalar);
    } else if (a == "--simd=sse2") {
      tw::set_simd_cap(tw::SimdLevel::sse2);
    } else if (a.rfind("--simd", 0) == 0) {
      return usage("'" + a + "': --simd takes sse2 or scalar (the default takes the widest)");
    } else {
      args.push_back(argv[i]);
    }
  }
  int bargc = static_cast<int>(args.size());
  benchmark::Initialize(&bargc, args.data());
  if (benchmark::ReportUnrecognizedArguments(bargc, args.data())) return 2;
  Collector collector;
  benchmark::RunSpecifiedBenchmarks(&collector);
  benchmark::Shutdown();

  auto& r = collector.results;
  const double memcpy_s = r["BM_memcpy"].seconds;
  const double memcpy_bw = memcpy_s > 0 ? 2.0 * g_n * 4 / memcpy_s : 0;
  nlohmann::json out = thinwire::bench::provenance(argc, argv);
  out["n"] = g_n;
  out["simd"] = simd_name(tw::simd_level());
  out["baseline"] = {{"memcpy_seconds", memcpy_s}, {"memcpy_GBps", g_n * 4 / memcpy_s / 1e9}};
  nlohmann::json results = nlohmann::json::array();
  std::printf("\nhost kernels: %s\n", simd_name(tw::simd_level()));
  std::printf("%-24s %10s %12s %14s %14s\n", "case", "ms", "GB/s of f32", "bw vs memcpy",
              "time vs memcpy");
  for (const auto& [name, e] : r) {
    if (e.seconds <= 0) continue;
    const double gbps = g_n * 4 / e.seconds / 1e9;
    const double bw_ratio = e.bytes_moved > 0 ? (e.bytes_moved / e.seconds) / memcpy_bw : 0;
    const double time_ratio = memcpy_s / e.seconds;
    std::printf("%-24s %10.3f %12.2f %14.2f %14.2f\n", name.c_str(), e.seconds * 1e3, gbps,
                bw_ratio, time_ratio);
    results.push_back({{"name", name},
                       {"seconds", e.seconds},
                       {"GBps_f32", gbps},
                       {"bytes_moved", e.bytes_moved},
                       {"bandwidth_vs_memcpy", bw_ratio},
                       {"throughput_vs_memcpy", time_ratio}});
  }
  out["results"] = results;
  // The goals, as measured ratios.
  auto ratio = [&](const char* a, const char* b) {
    return r[b].seconds > 0 && r[a].seconds > 0 ? r[b].seconds / r[a].seconds : 0.0;
  };
  const double onebit_bw =
      r["BM_onebit_ef_encode"].seconds > 0
          ? (r["BM_onebit_ef_encode"].bytes_moved / r["BM_onebit_ef_encode"].seconds) / memcpy_bw
          : 0;
  out["goals"] = {
      {"onebit_ef_encode_bandwidth_vs_memcpy", {{"measured", onebit_bw}, {"goal", 0.85}}},
      {"topk_exact_speedup_vs_nth_element",
       {{"measured", ratio("BM_topk_select_exact", "BM_nth_element_abs")}, {"goal", 10.0}}},
      {"topk_decode_throughput_vs_memcpy",
       {{"measured", ratio("BM_topk_decode", "BM_memcpy")}, {"goal", 0.5}}},
  };
  std::printf(
      "\ngoals: onebit EF encode %.2fx memcpy bandwidth (goal 0.85), exact top-k %.1fx faster than "
      "nth_element "
      "(goal 10), top-k decode %.2fx memcpy (goal 0.5)\n",
      onebit_bw, ratio("BM_topk_select_exact", "BM_nth_element_abs"),
      ratio("BM_topk_decode", "BM_memcpy"));
  if (!json_path.empty()) {
    std::ofstream f(json_path);
    f << out.dump(2) << "\n";
    if (!f) {
      std::fprintf(stderr, "thinwire-bench-codec: cannot write '%s'\n", json_path.c_str());
      return 1;
    }
    std::printf("wrote %s\n", json_path.c_str());
  }
  return 0;
}
