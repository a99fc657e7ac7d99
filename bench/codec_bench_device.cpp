// thinwire-bench-codec-device: the CUDA kernels of kernels/launch.hpp on device tensors, against
// cudaMemcpyAsync device-to-device of the same n floats measured in the same process. Timed
// with CUDA events on one stream; every run is preceded (untimed) by restoring the kernel's
// inputs and by writing a buffer twice the L2's size, so that each run starts from DRAM. The
// JSON (--json) carries the per-run medians and minima, the bandwidths, the ratios to the copy
// and the goals, with the commit, the host, the device and the command.
//
//   thinwire-bench-codec-device [--n 64M] [--iters 20] [--warmup 3] [--json FILE]
//                               [--device 0] [--methods all|onebit,qsgd,topk,ef,powersgd]
//
// "Bandwidth" counts the bytes a kernel must move at least (e.g. onebit EF encode reads x and
// g, writes x and the n/8 bytes of signs: 3*4n + n/8) per second, against the copy's 2*4n;
// "copy passes" is the kernel's time over the copy's time for the same n.
//
// Without a usable device it says why, writes {"skipped": true, "reason": ...} to --json and
// exits 0 (so that CI without GPUs can run it). A kernel that fails is reported in its entry
// and the program exits 1 after the others ran; a run that does not finish within --timeout
// seconds ends the program with exit status 3.
#include <cuda_runtime.h>

#include <algorithm>
#include <boost/program_options.hpp>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <iostream>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "bench_common.hpp"
#include "bench_layers.hpp"
#include "compress/topk_codec.hpp"
#include "compress/wire_format.hpp"
#include "launch.hpp"
#include "thinwire/config.hpp"

namespace k = thinwire::kernels;
namespace tw = thinwire::detail;
namespace po = boost::program_options;
using nlohmann::json;

namespace {

constexpr int kMinIters = 20;  // the JSON's medians need at least this many runs

struct Failure : std::runtime_error {
  using std::runtime_error::runtime_error;
};

void check(const std::string& err, const char* what) {
  if (!err.empty()) throw Failure(std::string(what) + ": " + err);
}

void cuda_check(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return;
  throw Failure(std::string(what) + ": " + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) +
                ")");
}

// "64M", "1G", "4096", "16k": binary multiples (the benchmarks' own parse_size).
std::size_t parse_count(const std::string& s) {
  try {
    return thinwire::bench::parse_size(s);
  } catch (const std::invalid_argument&) {
    throw Failure("not a count: '" + s + "' (an integer with an optional K, M or G suffix)");
  }
}

// Device memory, freed on scope exit.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(std::size_t bytes, const char* what) : bytes_(bytes) {
    const std::string err = k::device_alloc(&p_, bytes);
    if (!err.empty()) {
      p_ = nullptr;
      std::ostringstream m;
      m << "allocating " << what << " (" << bytes / 1048576.0 << " MiB): " << err
        << " (try a smaller --n)";
      throw Failure(m.str());
    }
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& o) noexcept : p_(o.p_), bytes_(o.bytes_) { o.p_ = nullptr; }
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    std::swap(p_, o.p_);
    std::swap(bytes_, o.bytes_);
    return *this;
  }
  ~DeviceBuffer() {
    if (p_) k::device_free(p_);
  }
  template <class T>
  T* as() const {
    return static_cast<T*>(p_);
  }
  void* get() const { return p_; }
  std::size_t bytes() const { return bytes_; }

 private:
  void* p_ = nullptr;
  std::size_t bytes_ = 0;
};

// Normal(0, 1) * scale, the same numbers for any thread count: fixed blocks, one seeded
// generator per block.
std::vector<float> random_normal(std::size_t n, std::uint64_t seed, float scale) {
  std::vector<float> v(n);
  constexpr std::size_t kBlock = std::size_t{1} << 20;
  const std::size_t blocks = (n + kBlock - 1) / kBlock;
  const unsigned threads =
      std::max(1u, std::min<unsigned>(std::thread::hardware_concurrency(), 16u));
  std::vector<std::thread> pool;
  for (unsigned t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      for (std::size_t b = t; b < blocks; b += threads) {
        std::seed_seq seq{static_cast<std::uint32_t>(seed), static_cast<std::uint32_t>(seed >> 32),
                          static_cast<std::uint32_t>(b), static_cast<std::uint32_t>(b >> 32)};
        std::mt19937 rng(seq);
        std::normal_distribution<float> dist(0.0f, 1.0f);
        const std::size_t end = std::min(n, (b + 1) * kBlock);
        for (std::size_t i = b * kBlock; i < end; ++i) v[i] = scale * dist(rng);
      }
    });
  }
  for (auto& th : pool) th.join();
  return v;
}

// Times work on one stream with CUDA events; waits by polling, so that a hung kernel ends the
// program after timeout_s instead of blocking it forever.
class Timer {
 public:
  Timer(cudaStream_t stream, double timeout_s) : stream_(stream), timeout_s_(timeout_s) {
    cuda_check(cudaEventCreate(&start_), "cudaEventCreate");
    cuda_check(cudaEventCreate(&stop_), "cudaEventCreate");
  }
  Timer(const Timer&) = delete;
  Timer& operator=(const Timer&) = delete;
  ~Timer() {
    cudaEventDestroy(start_);
    cudaEventDestroy(stop_);
  }

  // Milliseconds between the events around body(); prep() runs before, untimed.
  double time(const std::function<void()>& prep, const std::function<void()>& body,
              const std::string& name) {
    prep();
    cuda_check(cudaEventRecord(start_, stream_), "cudaEventRecord");
    body();
    cuda_check(cudaEventRecord(stop_, stream_), "cudaEventRecord");
    wait(stop_, name);
    float ms = 0;
    cuda_check(cudaEventElapsedTime(&ms, start_, stop_), "cudaEventElapsedTime");
    return ms;
  }

  void sync(const std::string& name) {
    cudaEvent_t e = nullptr;
    cuda_check(cudaEventCreateWithFlags(&e, cudaEventDisableTiming), "cudaEventCreate");
    const cudaError_t rec = cudaEventRecord(e, stream_);
    if (rec == cudaSuccess) {
      try {
        wait(e, name);
      } catch (...) {
        cudaEventDestroy(e);
        throw;
      }
    }
    cudaEventDestroy(e);
    cuda_check(rec, "cudaEventRecord");
  }

 private:
  void wait(cudaEvent_t e, const std::string& name) {
    const auto t0 = std::chrono::steady_clock::now();
    for (;;) {
      const cudaError_t q = cudaEventQuery(e);
      if (q == cudaSuccess) return;
      if (q != cudaErrorNotReady) cuda_check(q, ("waiting for " + name).c_str());
      const double waited =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      if (waited > timeout_s_) {
        std::fprintf(stderr,
                     "thinwire-bench-codec-device: %s did not finish within %.0f s (--timeout); "
                     "the kernel may be hung. Exiting.\n",
                     name.c_str(), timeout_s_);
        std::fflush(stdout);
        std::fflush(stderr);
        std::_Exit(3);
      }
      std::this_thread::sleep_for(std::chrono::microseconds(waited < 0.01 ? 2 : 200));
    }
  }

  cudaStream_t stream_;
  double timeout_s_;
  cudaEvent_t start_ = nullptr, stop_ = nullptr;
};

struct Case {
  std::string name;                     // JSON key
  std::string method;                   // --methods group
  std::string what;                     // one line for the table
  double bytes = 0;                     // bytes the operation must move at least
  double elements = 0;                  // elements processed (for "copy passes" when not n)
  std::function<void()> setup;          // once, untimed
  std::function<void()> prep;           // before every run, untimed (after it the L2 is flushed)
  std::function<void()> body;           // timed
  std::function<std::string()> verify;  // after the runs: "" or what is wrong
};

struct Stats {
  double median_ms = 0, min_ms = 0, max_ms = 0;
  std::vector<double> runs_ms;
};

Stats summarize(std::vector<double> ms) {
  Stats s;
  s.runs_ms = ms;
  std::sort(ms.begin(), ms.end());
  const std::size_t m = ms.size();
  s.median_ms = m % 2 ? ms[m / 2] : 0.5 * (ms[m / 2 - 1] + ms[m / 2]);
  s.min_ms = ms.front();
  s.max_ms = ms.back();
  return s;
}

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  for (std::string item; std::getline(in, item, ',');)
    if (!item.empty()) out.push_back(item);
  return out;
}

void write_json(const std::string& path, const json& j) {
  if (path.empty()) return;
  std::ofstream out(path);
  out << j.dump(2) << "\n";
  if (!out) throw Failure("cannot write " + path);
  std::printf("wrote %s\n", path.c_str());
}

json device_info(int device) {
  json info;
  auto attr = [&](cudaDeviceAttr a) {
    int v = 0;
    return cudaDeviceGetAttribute(&v, a, device) == cudaSuccess ? v : -1;
  };
  info["compute_capability"] = std::to_string(attr(cudaDevAttrComputeCapabilityMajor)) + "." +
                               std::to_string(attr(cudaDevAttrComputeCapabilityMinor));
  info["sm_count"] = attr(cudaDevAttrMultiProcessorCount);
  info["l2_bytes"] = attr(cudaDevAttrL2CacheSize);
  info["memory_bus_bits"] = attr(cudaDevAttrGlobalMemoryBusWidth);
  std::size_t free_b = 0, total_b = 0;
  if (cudaMemGetInfo(&free_b, &total_b) == cudaSuccess) info["memory_bytes"] = total_b;
  int runtime = 0, driver = 0;
  cudaRuntimeGetVersion(&runtime);
  cudaDriverGetVersion(&driver);
  info["cuda_runtime"] = runtime;
  info["cuda_driver"] = driver;
  return info;
}

struct Options {
  std::size_t n = std::size_t{64} << 20;
  int iters = kMinIters, warmup = 3, device = 0;
  std::string json_path, methods = "all";
  std::size_t rows = 8192;
  double density = 0.01, timeout_s = 120;
  bool flush = true;
};

// The --methods groups; Failure names an unknown one.
std::set<std::string> method_groups(const std::string& list) {
  std::set<std::string> methods;
  for (const std::string& m : split(list)) methods.insert(m);
  for (const std::string& m : methods)
    if (m != "all" && m != "onebit" && m != "qsgd" && m != "topk" && m != "ef" && m != "powersgd")
      throw Failure("--methods: unknown '" + m + "' (all, onebit, qsgd, topk, ef, powersgd)");
  return methods;
}

int run(const Options& o, json out) {
  const std::size_t n = o.n;
  k::ChunkCodec onebit;
  onebit.method = static_cast<std::uint8_t>(thinwire::Method::onebit);
  k::ChunkCodec qsgd;
  qsgd.method = static_cast<std::uint8_t>(thinwire::Method::qsgd);
  qsgd.bits = 4;
  qsgd.bucket = 512;
  qsgd.contractive = true;
  const std::size_t topk = tw::topk_count(o.density, n);
  const int parts8 = 8;
  const std::size_t largest8 = (n + parts8 - 1) / parts8;
  const std::size_t onebit1_bytes = k::chunk_encoded_bytes(onebit, n);
  const std::size_t onebit8_stride = k::chunk_encoded_bytes(onebit, largest8);
  const std::size_t qsgd_bytes = k::chunk_encoded_bytes(qsgd, n);
  const std::size_t topk_bytes = tw::kHeaderBytes + 8 * topk;
  const std::size_t payload_bytes =
      std::max({onebit1_bytes, onebit8_stride * parts8, qsgd_bytes, topk_bytes});
  const std::size_t workspace_bytes =
      std::max({k::chunk_workspace_bytes(onebit, n, 1), k::chunk_workspace_bytes(onebit, n, parts8),
                k::chunk_workspace_bytes(qsgd, n, 1), k::topk_workspace_bytes(n, topk)});
  const std::size_t rank = 4, rows = o.rows, cols = rows ? n / rows : 0;

  const std::set<std::string> methods = method_groups(o.methods);
  const bool all = methods.empty() || methods.count("all");
  auto wanted = [&](const std::string& m) { return all || methods.count(m) > 0; };

  // Device data: g the gradient, e0 the error memory (both pristine), x the working copy,
  // out the decode output.
  std::printf("generating %zu x 2 random floats on the host (seed 42)...\n", n);
  std::fflush(stdout);
  const std::vector<float> host_g = random_normal(n, 42, 1.0f);
  const std::vector<float> host_e = random_normal(n, 43, 0.1f);

  void* stream_v = nullptr;
  check(k::stream_create(&stream_v), "stream_create");
  struct StreamGuard {
    void* s;
    ~StreamGuard() { k::stream_destroy(s); }
  } stream_guard{stream_v};
  auto stream = static_cast<cudaStream_t>(stream_v);

  DeviceBuffer g(4 * n, "g"), e0(4 * n, "e0"), x(4 * n, "x"), out_f(4 * n, "out");
  DeviceBuffer payload(payload_bytes, "payload"), workspace(workspace_bytes, "workspace");
  DeviceBuffer status(sizeof(k::DecodeStatus), "decode status");
  int l2 = 0;
  cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, o.device);
  const std::size_t flush_bytes = std::max<std::size_t>(2 * static_cast<std::size_t>(l2), 64 << 20);
  DeviceBuffer flush(o.flush ? flush_bytes : 16, "L2 flush buffer");
  if (4 * n < 2 * static_cast<std::size_t>(l2))
    std::printf(
        "note: 4n = %zu bytes is less than twice the L2 (%d bytes): the copy and the "
        "kernels may run partly from the L2\n",
        4 * n, l2);
  cuda_check(cudaMemcpy(g.get(), host_g.data(), 4 * n, cudaMemcpyHostToDevice), "upload g");
  cuda_check(cudaMemcpy(e0.get(), host_e.data(), 4 * n, cudaMemcpyHostToDevice), "upload e");
  check(k::zero_async(out_f.get(), 4 * n, stream_v), "zero_async");
  check(k::zero_async(payload.get(), payload_bytes, stream_v), "zero_async");
  check(k::zero_async(workspace.get(), workspace_bytes, stream_v), "zero_async");

  Timer timer(stream, o.timeout_s);
  timer.sync("upload");

  float* const gp = g.as<float>();
  float* const xp = x.as<float>();
  float* const outp = out_f.as<float>();
  std::uint8_t* const pay = payload.as<std::uint8_t>();
  auto* const st = status.as<k::DecodeStatus>();

  auto d2d = [&](void* dst, const void* src, std::size_t bytes) {
    cuda_check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream),
               "cudaMemcpyAsync");
  };
  auto restore_x_from = [&](const DeviceBuffer& src) {
    const void* from = src.get();
    return [&d2d, xp, from, n] { d2d(xp, from, 4 * n); };
  };
  auto nothing = [] {};
  auto zero_status = [&] { check(k::zero_async(st, sizeof(k::DecodeStatus), stream_v), "zero"); };
  auto status_ok = [&]() -> std::string {
    k::DecodeStatus s{};
    cuda_check(cudaMemcpy(&s, st, sizeof s, cudaMemcpyDeviceToHost), "read decode status");
    if (s.code == k::kDecodeOk) return {};
    return "decoder rejected the encoder's payload: DecodeError " + std::to_string(s.code) +
           ", detail " + std::to_string(s.detail);
  };

  auto chunk_encode = [&](const k::ChunkCodec& c, const float* gf, float* residual, int parts,
                          std::size_t stride) {
    k::ChunkEncode a;
    a.codec = c;
    a.x = xp;
    a.g = gf;
    a.residual = residual;
    a.n = n;
    a.parts = parts;
    a.out = pay;
    a.stride = stride;
    a.seed = 1;
    a.phase = 0;  // kPhaseWorker
    a.workspace = workspace.get();
    a.workspace_bytes = workspace_bytes;
    check(k::chunk_encode(a, stream_v), "chunk_encode");
  };
  auto topk_encode = [&](const float* gf, float* residual, bool sampled) {
    k::TopkEncode a;
    a.x = xp;
    a.g = gf;
    a.residual = residual;
    a.n = n;
    a.k = topk;
    a.sampled = sampled;
    a.seed = 1;
    a.out = pay;
    a.workspace = workspace.get();
    a.workspace_bytes = workspace_bytes;
    check(k::topk_encode(a, stream_v), "topk_encode");
  };

  // Exact top-k of g: indices strictly increasing, values g[i], and the multiset of their
  // magnitudes the k largest of |g| (ties may pick any of the equal elements).
  auto verify_topk_exact = [&]() -> std::string {
    std::vector<std::uint8_t> p(topk_bytes);
    cuda_check(cudaMemcpy(p.data(), pay, topk_bytes, cudaMemcpyDeviceToHost), "read payload");
    std::uint32_t magic = 0;
    std::memcpy(&magic, p.data(), 4);
    if (magic != tw::kWireMagic) return "payload header: bad magic";
    std::vector<std::uint32_t> idx(topk);
    std::vector<float> val(topk);
    std::memcpy(idx.data(), p.data() + tw::kHeaderBytes, 4 * topk);
    std::memcpy(val.data(), p.data() + tw::kHeaderBytes + 4 * topk, 4 * topk);
    std::vector<float> sel(topk);
    for (std::size_t i = 0; i < topk; ++i) {
      if (idx[i] >= n || (i && idx[i] <= idx[i - 1]))
        return "indices not strictly increasing below n at position " + std::to_string(i);
      if (std::memcmp(&val[i], &host_g[idx[i]], 4) != 0)
        return "value at position " + std::to_string(i) + " is not x[index]";
      sel[i] = std::fabs(val[i]);
    }
    std::vector<float> mag(n);
    for (std::size_t i = 0; i < n; ++i) mag[i] = std::fabs(host_g[i]);
    std::nth_element(mag.begin(), mag.begin() + static_cast<long>(topk - 1), mag.end(),
                     std::greater<float>());
    std::sort(mag.begin(), mag.begin() + static_cast<long>(topk), std::greater<float>());
    std::sort(sel.begin(), sel.end(), std::greater<float>());
    if (!std::equal(sel.begin(), sel.end(), mag.begin()))
      return "the selected magnitudes are not the k largest of |x|";
    return {};
  };

  std::vector<Case> cases;
  const double fn = static_cast<double>(n);
  const double fk = static_cast<double>(topk);
  if (wanted("onebit")) {
    for (int parts : {1, parts8}) {
      const std::size_t stride = parts == 1 ? onebit1_bytes : onebit8_stride;
      cases.push_back({"onebit_ef_encode_p" + std::to_string(parts),
                       "onebit",
                       "onebit EF encode, x = e + g, signs, residual into x; " +
                           std::to_string(parts) + " chunk(s)",
                       3 * 4 * fn + fn / 8,
                       fn,
                       nothing,
                       restore_x_from(e0),
                       [&, parts, stride] { chunk_encode(onebit, gp, xp, parts, stride); },
                       {}});
    }
    cases.push_back(
        {"onebit_decode", "onebit", "onebit decode (chunk_decode, 1 chunk)", fn / 8 + 4 * fn, fn,
         [&] {
           d2d(xp, e0.get(), 4 * n);
           chunk_encode(onebit, nullptr, nullptr, 1, onebit1_bytes);
           zero_status();
         },
         nothing,
         [&] {
           check(
               k::chunk_decode(onebit, pay, onebit1_bytes, onebit1_bytes, n, 1, outp, st, stream_v),
               "chunk_decode");
         },
         status_ok});
  }
  if (wanted("qsgd")) {
    cases.push_back({"qsgd4_ef_encode",
                     "qsgd",
                     "qsgd:4 contractive EF encode (bucket 512), residual into x",
                     3 * 4 * fn + fn / 2 + 4 * std::ceil(fn / 512),
                     fn,
                     nothing,
                     restore_x_from(e0),
                     [&] { chunk_encode(qsgd, gp, xp, 1, qsgd_bytes); },
                     {}});
    cases.push_back(
        {"qsgd4_decode", "qsgd", "qsgd:4 decode (chunk_decode, 1 chunk)",
         fn / 2 + 4 * std::ceil(fn / 512) + 4 * fn, fn,
         [&] {
           d2d(xp, e0.get(), 4 * n);
           chunk_encode(qsgd, nullptr, nullptr, 1, qsgd_bytes);
           zero_status();
         },
         nothing,
         [&] {
           check(k::chunk_decode(qsgd, pay, qsgd_bytes, qsgd_bytes, n, 1, outp, st, stream_v),
                 "chunk_decode");
         },
         status_ok});
  }
  if (wanted("topk")) {
    cases.push_back({"topk_exact_encode", "topk",
                     "top-k exact encode, k = density n (selection + packing)", 4 * fn + 8 * fk, fn,
                     nothing, restore_x_from(g), [&] { topk_encode(nullptr, nullptr, false); },
                     verify_topk_exact});
    cases.push_back({"topk_exact_ef_encode",
                     "topk",
                     "top-k exact EF encode: x = e + g written back, residual into x",
                     3 * 4 * fn + 8 * fk,
                     fn,
                     nothing,
                     restore_x_from(e0),
                     [&] { topk_encode(gp, xp, false); },
                     {}});
    cases.push_back({"topk_sampled_encode",
                     "topk",
                     "top-k sampled encode (DGC threshold)",
                     4 * fn + 8 * fk,
                     fn,
                     nothing,
                     restore_x_from(g),
                     [&] { topk_encode(nullptr, nullptr, true); },
                     {}});
    cases.push_back({"topk_decode_average_p1", "topk",
                     "top-k decode_average, P = 1 (zero + scatter)", 8 * fk + 4 * fn, fn,
                     [&] {
                       d2d(xp, g.get(), 4 * n);
                       topk_encode(nullptr, nullptr, false);
                       zero_status();
                     },
                     nothing,
                     [&] {
                       check(k::topk_decode_average(pay, topk_bytes, topk_bytes, 1, n, topk, outp,
                                                    st, stream_v),
                             "topk_decode_average");
                     },
                     status_ok});
  }
  if (wanted("ef")) {
    cases.push_back({"ef_accumulate",
                     "ef",
                     "element-wise e += g",
                     3 * 4 * fn,
                     fn,
                     nothing,
                     restore_x_from(e0),
                     [&] { check(k::ef_accumulate(xp, gp, n, stream_v), "ef_accumulate"); },
                     {}});
  }

  // PowerSGD rank 4 on x viewed as rows x cols (row-major), restored from g before each run.
  void* blas = nullptr;
  DeviceBuffer pbuf, qbuf;
  if (wanted("powersgd") && (rows < rank || cols < rank)) {
    std::printf("powersgd: skipped, n = %zu is too small for %zu rows of rank %zu\n", n, rows,
                rank);
  } else if (wanted("powersgd")) {
    pbuf = DeviceBuffer(4 * rows * rank, "P");
    qbuf = DeviceBuffer(4 * cols * rank, "Q");
    check(k::blas_create(&blas), "blas_create");
    const double mn = static_cast<double>(rows) * static_cast<double>(cols);
    float* const pp = pbuf.as<float>();
    float* const qp = qbuf.as<float>();
    auto init_q = [&, qp, cols] {
      check(k::lowrank_random_init(qp, cols, rank, 1, 0, 0, stream_v), "lowrank_random_init");
    };
    auto encode = [&, pp, qp, rows, cols] {
      check(k::lowrank_project(blas, xp, rows, cols, qp, rank, pp, stream_v), "lowrank_project");
      check(k::lowrank_orthonormalize(pp, rows, rank, stream_v), "lowrank_orthonormalize");
      check(k::lowrank_back_project(blas, xp, rows, cols, pp, rank, qp, stream_v),
            "lowrank_back_project");
    };
    auto decode = [&, pp, qp, rows, cols] {
      check(k::lowrank_reconstruct(blas, pp, qp, rows, cols, rank, outp, stream_v),
            "lowrank_reconstruct");
      check(k::subtract(xp, outp, rows * cols, stream_v), "subtract");
    };
    const std::string shape = std::to_string(rows) + "x" + std::to_string(cols);
    cases.push_back({"powersgd4_encode",
                     "powersgd",
                     "powersgd:4 encode " + shape + ": P = M Q, orthonormalize, Q = M^T P",
                     2 * 4 * mn,
                     mn,
                     init_q,
                     restore_x_from(g),
                     encode,
                     {}});
    cases.push_back({"powersgd4_decode",
                     "powersgd",
                     "powersgd:4 decode " + shape + ": out = P Q^T, M -= out",
                     4 * 4 * mn,
                     mn,
                     [=] {
                       init_q();
                       encode();
                     },
                     restore_x_from(g),
                     decode,
                     {}});
    cases.push_back({"powersgd4_encode_decode",
                     "powersgd",
                     "powersgd:4 encode + decode " + shape + " (the goal's copy passes)",
                     6 * 4 * mn,
                     mn,
                     init_q,
                     restore_x_from(g),
                     [=] {
                       encode();
                       decode();
                     },
                     {}});
  }
  struct BlasGuard {
    void** h;
    ~BlasGuard() {
      if (*h) k::blas_destroy(*h);
    }
  } blas_guard{&blas};

  auto flush_l2 = [&] {
    if (o.flush) check(k::zero_async(flush.get(), flush_bytes, stream_v), "flush L2");
  };

  // Runs one case: setup, warm-up, timed runs, verify. Throws Failure on any error.
  auto measure = [&](const Case& c) {
    if (c.setup) c.setup();
    auto prep = [&] {
      c.prep();
      flush_l2();
    };
    for (int i = 0; i < o.warmup; ++i) timer.time(prep, c.body, c.name);
    std::vector<double> ms;
    for (int i = 0; i < o.iters; ++i) ms.push_back(timer.time(prep, c.body, c.name));
    timer.sync(c.name);
    cuda_check(cudaGetLastError(), c.name.c_str());
    if (c.verify) {
      const std::string bad = c.verify();
      if (!bad.empty()) throw Failure("verification failed: " + bad);
    }
    return summarize(ms);
  };

  // The baseline, before and after the kernels (clocks drift): the median of both sets.
  Case memcpy_case{"memcpy_d2d", "memcpy", "cudaMemcpyAsync device to device", 2 * 4 * fn, fn,
                   nothing,      nothing,  [&] { d2d(outp, gp, 4 * n); },      {}};
  std::printf(
      "device %d, n = %zu floats (%.0f MiB per tensor), %d runs after %d warm-up, L2 "
      "flush %s\n",
      o.device, n, 4 * fn / 1048576, o.iters, o.warmup, o.flush ? "on" : "off");
  std::fflush(stdout);
  const Stats copy_before = measure(memcpy_case);

  struct Result {
    const Case* c;
    Stats s;
    std::string error;
  };
  std::vector<Result> results;
  for (const Case& c : cases) {
    std::printf("  %-26s ...", c.name.c_str());
    std::fflush(stdout);
    Result r{&c, {}, {}};
    try {
      r.s = measure(c);
      std::printf(" %.3f ms\n", r.s.median_ms);
    } catch (const Failure& e) {
      r.error = e.what();
      std::printf(" FAILED: %s\n", r.error.c_str());
      // Clear a non-sticky error; a sticky one makes the rest fail too, each with its reason.
      cudaGetLastError();
      try {
        timer.sync(c.name + " (after failure)");
      } catch (const Failure&) {
      }
    }
    std::fflush(stdout);
    results.push_back(std::move(r));
  }
  const Stats copy_after = measure(memcpy_case);
  std::vector<double> both = copy_before.runs_ms;
  both.insert(both.end(), copy_after.runs_ms.begin(), copy_after.runs_ms.end());
  const Stats copy = summarize(both);
  const double copy_s = copy.median_ms / 1e3;
  const double copy_gbps = 2 * 4 * fn / copy_s / 1e9;

  out["n"] = n;
  out["iters"] = o.iters;
  out["warmup"] = o.warmup;
  out["topk_k"] = topk;
  out["topk_density"] = o.density;
  out["powersgd_shape"] = {rows, cols};
  out["l2_flush_bytes"] = o.flush ? flush_bytes : 0;
  out["timing"] =
      "CUDA events around each run on one stream; before each run (untimed) the inputs are "
      "restored and the L2 is flushed; medians and minima over iters runs after warmup runs";
  out["baseline"] = {{"name", "cudaMemcpyAsync_d2d"},
                     {"bytes_moved", 2 * 4 * fn},
                     {"median_ms", copy.median_ms},
                     {"min_ms", copy.min_ms},
                     {"median_ms_before", copy_before.median_ms},
                     {"median_ms_after", copy_after.median_ms},
                     {"GBps", copy_gbps}};

  std::printf("\n%-26s %9s %9s %10s %12s %12s\n", "case", "median ms", "min ms", "GB/s",
              "bw vs copy", "copy passes");
  std::printf("%-26s %9.3f %9.3f %10.1f %12.2f %12.2f\n", "memcpy_d2d (baseline)", copy.median_ms,
              copy.min_ms, copy_gbps, 1.0, 1.0);
  json rows_json = json::array();
  rows_json.push_back({{"name", "memcpy_d2d"},
                       {"what", memcpy_case.what},
                       {"bytes_moved", 2 * 4 * fn},
                       {"median_ms", copy.median_ms},
                       {"min_ms", copy.min_ms},
                       {"max_ms", copy.max_ms},
                       {"GBps", copy_gbps},
                       {"bandwidth_vs_copy", 1.0},
                       {"copy_passes", 1.0}});
  bool failed = false;
  auto find = [&](const std::string& name) -> const Result* {
    for (const Result& r : results)
      if (r.c->name == name && r.error.empty()) return &r;
    return nullptr;
  };
  for (const Result& r : results) {
    json row = {{"name", r.c->name}, {"what", r.c->what}, {"bytes_moved", r.c->bytes}};
    if (!r.error.empty()) {
      failed = true;
      row["error"] = r.error;
      std::printf("%-26s FAILED: %s\n", r.c->name.c_str(), r.error.c_str());
    } else {
      const double s = r.s.median_ms / 1e3;
      const double gbps = r.c->bytes / s / 1e9;
      // The copy of the same number of elements: n, or the PowerSGD matrix's rows * cols.
      const double copy_same_ms = copy.median_ms * r.c->elements / fn;
      const double passes = r.s.median_ms / copy_same_ms;
      row["median_ms"] = r.s.median_ms;
      row["min_ms"] = r.s.min_ms;
      row["max_ms"] = r.s.max_ms;
      row["GBps"] = gbps;
      row["bandwidth_vs_copy"] = gbps / copy_gbps;
      row["copy_passes"] = passes;
      std::printf("%-26s %9.3f %9.3f %10.1f %12.2f %12.2f\n", r.c->name.c_str(), r.s.median_ms,
                  r.s.min_ms, gbps, gbps / copy_gbps, passes);
    }
    rows_json.push_back(row);
  }
  out["results"] = rows_json;

  // The goals. Top-k against torch.topk is measured by bench/torch_topk.py.
  json goals = json::object();
  auto goal = [&](const char* key, const char* case_name, const char* measure_what, double target,
                  bool at_least) {
    json gj = {{"case", case_name},
               {"measure", measure_what},
               {"goal", target},
               {"direction", at_least ? ">=" : "<="}};
    const Result* r = find(case_name);
    if (!r) {
      gj["measured"] = nullptr;
      gj["pass"] = nullptr;
      std::printf("goal %-40s not measured\n", key);
    } else {
      const double s = r->s.median_ms / 1e3;
      const double bw = r->c->bytes / s / 1e9 / copy_gbps;
      const double passes = r->s.median_ms / (copy.median_ms * r->c->elements / fn);
      const double m = std::string(measure_what) == "bandwidth_vs_copy" ? bw : passes;
      const bool pass = at_least ? m >= target : m <= target;
      gj["measured"] = m;
      gj["pass"] = pass;
      std::printf("goal %-40s %.3f (%s %.2f): %s\n", key, m, at_least ? ">=" : "<=", target,
                  pass ? "PASS" : "FAIL");
    }
    goals[key] = gj;
  };
  std::printf("\n");
  goal("onebit_ef_encode_bandwidth_vs_copy", "onebit_ef_encode_p1", "bandwidth_vs_copy", 0.85,
       true);
  goal("powersgd4_encode_decode_copy_passes", "powersgd4_encode_decode", "copy_passes", 6.0, false);
  goals["topk_exact_time_vs_torch_topk"] = {
      {"goal", 0.33},
      {"direction", "<="},
      {"measured", nullptr},
      {"pass", nullptr},
      {"measured_by", "bench/torch_topk.py (bench/results/topk_vs_torch_*.json)"}};
  out["goals"] = goals;
  write_json(o.json_path, out);
  if (failed) std::printf("\nsome kernels failed (see above); exit status 1\n");
  return failed ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  std::string n_text = "64M";
  po::options_description desc(
      "thinwire-bench-codec-device: CUDA kernels vs cudaMemcpyAsync D2D (CUDA events)\nOptions");
  // clang-format off
  desc.add_options()
    ("help,h", "this help")
    ("n", po::value<std::string>(&n_text)->default_value("64M"),
     "floats per tensor (K, M, G: binary multiples); 64M = 256 MiB, larger than any L2")
    ("iters", po::value<int>(&o.iters)->default_value(kMinIters),
     "timed runs per kernel (at least 20; smaller values are raised to 20)")
    ("warmup", po::value<int>(&o.warmup)->default_value(3), "untimed runs first")
    ("json", po::value<std::string>(&o.json_path), "write the results to FILE")
    ("device", po::value<int>(&o.device)->default_value(0), "CUDA device")
    ("methods", po::value<std::string>(&o.methods)->default_value("all"),
     "comma-separated: all, onebit, qsgd, topk, ef, powersgd (the copy is always measured)")
    ("rows", po::value<std::size_t>(&o.rows)->default_value(8192),
     "PowerSGD matrix rows (cols = n / rows)")
    ("density", po::value<double>(&o.density)->default_value(0.01), "top-k k = density * n")
    ("timeout", po::value<double>(&o.timeout_s)->default_value(120),
     "seconds to wait for one run before giving up (exit 3)")
    ("no-flush", "do not flush the L2 before each run");
  // clang-format on
  po::variables_map vm;
  try {
    po::store(po::parse_command_line(argc, argv, desc), vm);
    po::notify(vm);
    o.n = parse_count(n_text);
  } catch (const std::exception& e) {
    std::cerr << "thinwire-bench-codec-device: " << e.what() << "\n" << desc << "\n";
    return 2;
  }
  if (vm.count("help")) {
    std::cout << desc << "\n";
    return 0;
  }
  o.flush = !vm.count("no-flush");
  if (o.iters < kMinIters) {
    std::printf("--iters %d raised to %d (the medians need at least %d runs)\n", o.iters, kMinIters,
                kMinIters);
    o.iters = kMinIters;
  }
  o.warmup = std::max(o.warmup, 0);
  if (o.n == 0 || o.n >= (std::size_t{1} << 32)) {
    std::cerr << "thinwire-bench-codec-device: --n must be in [1, 2^32) (top-k indices are u32)\n";
    return 2;
  }
  if (!(o.density > 0 && o.density <= 1)) {
    std::cerr << "thinwire-bench-codec-device: --density must be in (0, 1]\n";
    return 2;
  }
  if (!(o.timeout_s > 0)) {
    std::cerr << "thinwire-bench-codec-device: --timeout must be positive\n";
    return 2;
  }
  // The rest of the options, checked before looking for a device, so that a typo is an error
  // on a machine without one too.
  if (o.rows == 0 || o.device < 0) {
    std::cerr << "thinwire-bench-codec-device: --rows must be >= 1 and --device >= 0\n";
    return 2;
  }
  try {
    method_groups(o.methods);
  } catch (const Failure& e) {
    std::cerr << "thinwire-bench-codec-device: " << e.what() << "\n";
    return 2;
  }

  json out = thinwire::bench::provenance(argc, argv);
  try {
    std::string why;
    const int devices = k::device_count(&why);
    std::string skip;
    if (devices <= 0)
      skip = "no CUDA device: " + (why.empty() ? std::string("device_count() = 0") : why);
    else if (k::emulated())
      skip = "the kernels are the CPU emulation";
    if (skip.empty() && o.device >= devices) {
      std::fprintf(stderr,
                   "thinwire-bench-codec-device: --device %d does not exist (%d device(s))\n",
                   o.device, devices);
      return 2;
    }
    if (!skip.empty()) {
      std::printf("thinwire-bench-codec-device: skipped: %s\n", skip.c_str());
      out["skipped"] = true;
      out["reason"] = skip;
      out["n"] = o.n;
      out["iters"] = o.iters;
      write_json(o.json_path, out);
      return 0;
    }
    check(k::set_device(o.device), "set_device");
    std::string name;
    check(k::device_name(o.device, &name), "device_name");
    out["device"] = name;
    out["device_index"] = o.device;
    out["device_info"] = device_info(o.device);
    out["skipped"] = false;
    std::printf("%s\n", name.c_str());
    return run(o, out);
  } catch (const Failure& e) {
    std::fprintf(stderr, "thinwire-bench-codec-device: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "thinwire-bench-codec-device: %s\n", e.what());
    return 1;
  }
}
