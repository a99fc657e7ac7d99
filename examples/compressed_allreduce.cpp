// thinwire demo: compressed allreduce of a small transformer/MLP model's gradients.
//
// Every rank builds the same synthetic gradients for each step: a fixed low-rank "signal" per
// layer (the same on all ranks, so there is something for error feedback and PowerSGD to
// find) plus noise that depends on the rank and the step, all deterministic from --seed. For
// each compression method the program computes the exact average (MPI_Allreduce in double of
// the same gradients), runs thinwire's Reducer on the gradients, and reports on rank 0 what
// went over the wire, how far the result is from the exact average, how long the Reducer
// took and whether every rank holds the same bits.
//
// Written only against the public API: #include <thinwire/thinwire.hpp>.
//
//   mpirun -np 4 ./compressed_allreduce [--steps 20] [--methods none,topk:0.01,...] [--json f]
#include <mpi.h>

#include <algorithm>
#include <cinttypes>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <boost/program_options.hpp>
#include <thinwire/thinwire.hpp>

namespace po = boost::program_options;

namespace {

constexpr const char* kDefaultMethods =
    "none,topk:0.01,onebit,qsgd:4,powersgd:4,topk:0.01,ef=econtrol";
constexpr int kSignalRank = 4;  // rank of the per-layer signal matrix
constexpr double kNoise = 0.5;  // noise standard deviation, relative to signal entries ~ 1

// ---- deterministic random numbers ---------------------------------------------------------------
std::uint64_t splitmix64(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

struct Rng {
  std::uint64_t state;
  explicit Rng(std::uint64_t seed) : state(splitmix64(seed)) {}
  std::uint64_t next() { return splitmix64(state += 0x9e3779b97f4a7c15ull); }
  // Uniform in [-1, 1).
  double symmetric() { return static_cast<double>(next() >> 11) * 0x1.0p-52 - 1.0; }
};

std::uint64_t key(std::uint64_t a, std::uint64_t b, std::uint64_t c, std::uint64_t d) {
  return splitmix64(splitmix64(splitmix64(a) ^ b) ^ c) ^ d;
}

// ---- the model ----------------------------------------------------------------------------------
std::vector<thinwire::Layer> model_layers() {
  // One transformer block (d_model 1024, MLP 2048) and a 512-way classifier head: square,
  // tall, wide and short matrices, bias vectors and a LayerNorm, 5.8M floats (23 MB) in all.
  return {
      {"block.attn.out_proj.weight", {1024, 1024}},
      {"block.attn.out_proj.bias", {1024}},
      {"block.ln.weight", {1024}},
      {"block.ln.bias", {1024}},
      {"block.mlp.fc1.weight", {2048, 1024}},
      {"block.mlp.fc1.bias", {2048}},
      {"block.mlp.fc2.weight", {1024, 2048}},
      {"block.mlp.fc2.bias", {1024}},
      {"head.weight", {512, 1024}},
      {"head.bias", {512}},
  };
}

// The per-layer signal: U * V^T of rank kSignalRank for matrices, a fixed vector otherwise.
struct Signal {
  std::size_t rows = 0, cols = 0;
  std::vector<float> u, v;  // rows x r and cols x r
};

std::vector<Signal> make_signals(const std::vector<thinwire::Layer>& layers, std::uint64_t seed) {
  std::vector<Signal> out;
  for (std::size_t l = 0; l < layers.size(); ++l) {
    Signal s;
    s.rows = layers[l].rows();
    s.cols = layers[l].cols();
    const int r = s.cols > 1 ? kSignalRank : 1;
    Rng rng(key(seed, 0xfeed, l, 0));
    // Entries of U V^T have variance about 1: U, V uniform with variance 1/sqrt(r) each.
    const double scale = std::sqrt(3.0) / std::pow(static_cast<double>(r), 0.25);
    s.u.resize(s.rows * r);
    s.v.resize(s.cols * r);
    for (float& x : s.u) x = static_cast<float>(scale * rng.symmetric());
    for (float& x : s.v) x = static_cast<float>(scale * rng.symmetric());
    out.push_back(std::move(s));
  }
  return out;
}

// Gradient of layer l on `rank` at `step`: signal + rank/step-dependent noise.
void make_gradient(const Signal& s, std::size_t l, std::uint64_t seed, int rank, int step,
                   float* g) {
  const int r = static_cast<int>(s.u.size() / s.rows);
  Rng rng(key(seed, static_cast<std::uint64_t>(rank) + 1, static_cast<std::uint64_t>(step), l));
  const double noise = kNoise * std::sqrt(3.0);  // uniform noise with standard deviation kNoise
  for (std::size_t i = 0; i < s.rows; ++i) {
    const float* ui = &s.u[i * r];
    float* gi = g + i * s.cols;
    for (std::size_t j = 0; j < s.cols; ++j) {
      const float* vj = &s.v[j * r];
      float acc = 0.f;
      for (int k = 0; k < r; ++k) acc += ui[k] * vj[k];
      gi[j] = acc + static_cast<float>(noise * rng.symmetric());
    }
  }
}

// ---- helpers ------------------------------------------------------------------------------------
std::uint64_t hash_bytes(const void* data, std::size_t bytes) {
  // FNV-1a over 64-bit words, then the tail bytes.
  const auto* p = static_cast<const unsigned char*>(data);
  std::uint64_t h = 0xcbf29ce484222325ull;
  std::size_t i = 0;
  for (; i + 8 <= bytes; i += 8) {
    std::uint64_t w;
    std::memcpy(&w, p + i, 8);
    h = (h ^ w) * 0x100000001b3ull;
  }
  for (; i < bytes; ++i) h = (h ^ p[i]) * 0x100000001b3ull;
  return splitmix64(h);
}

double rel_error(const std::vector<double>& a, const std::vector<double>& ref) {
  double num = 0.0, den = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const double d = a[i] - ref[i];
    num += d * d;
    den += ref[i] * ref[i];
  }
  return den > 0.0 ? std::sqrt(num / den) : std::sqrt(num);
}

// "none,topk:0.01,ef=econtrol" -> {"none", "topk:0.01,ef=econtrol"}: an item with '=' is a
// key of the method before it.
std::vector<std::string> split_methods(const std::string& list) {
  std::vector<std::string> out;
  std::stringstream ss(list);
  std::string item;
  while (std::getline(ss, item, ',')) {
    item.erase(0, item.find_first_not_of(" \t"));
    item.erase(item.find_last_not_of(" \t") + 1);
    if (item.empty()) continue;
    if (item.find('=') != std::string::npos && !out.empty())
      out.back() += "," + item;
    else
      out.push_back(item);
  }
  return out;
}

std::string json_escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '"' || c == '\\') o += '\\';
    if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      o += buf;
    } else {
      o += c;
    }
  }
  return o;
}

struct Row {
  std::string requested;
  std::string spec;  // in force (THINWIRE_COMPRESSION may override)
  double bytes_per_step = 0;
  double ratio = 0;
  double err_last = 0;
  double err_mean = 0;
  double ms_per_step = 0;
  bool identical = false;
};

// ---- one method ---------------------------------------------------------------------------------
Row run_method(const std::string& spec, const thinwire::Communicator& comm,
               const std::vector<thinwire::Layer>& layers, const std::vector<Signal>& signals,
               std::uint64_t seed, int steps) {
  const int rank = comm.rank(), size = comm.size();
  std::vector<std::size_t> offset(layers.size() + 1, 0);
  for (std::size_t l = 0; l < layers.size(); ++l) offset[l + 1] = offset[l] + layers[l].numel();
  const std::size_t total = offset.back();

  thinwire::Reducer reducer(comm, layers, thinwire::Config::parse(spec));

  std::vector<float> grad(total);
  std::vector<double> exact(total), exact_sum(total, 0.0), result_sum(total, 0.0),
      result_last(total);
  std::vector<thinwire::TensorView> views;
  for (std::size_t l = 0; l < layers.size(); ++l)
    views.push_back(thinwire::TensorView::host(grad.data() + offset[l], layers[l].numel()));

  double seconds = 0.0;
  bool identical = true;
  for (int step = 0; step < steps; ++step) {
    for (std::size_t l = 0; l < layers.size(); ++l)
      make_gradient(signals[l], l, seed, rank, step, grad.data() + offset[l]);

    // The reference: the exact average, in double.
    for (std::size_t i = 0; i < total; ++i) exact[i] = grad[i];
    MPI_Allreduce(MPI_IN_PLACE, exact.data(), static_cast<int>(total), MPI_DOUBLE, MPI_SUM,
                  MPI_COMM_WORLD);
    for (std::size_t i = 0; i < total; ++i) {
      exact[i] /= size;
      exact_sum[i] += exact[i];
    }

    MPI_Barrier(MPI_COMM_WORLD);
    const double t0 = MPI_Wtime();
    reducer.allreduce(views);
    seconds += MPI_Wtime() - t0;

    // Same bits on every rank? Compare the smallest and largest hash over the ranks.
    std::uint64_t h[2];
    h[0] = hash_bytes(grad.data(), total * sizeof(float));
    h[1] = ~h[0];
    MPI_Allreduce(MPI_IN_PLACE, h, 2, MPI_UINT64_T, MPI_MAX, MPI_COMM_WORLD);
    identical = identical && h[0] == ~h[1];

    for (std::size_t i = 0; i < total; ++i) result_sum[i] += grad[i];
    if (step == steps - 1)
      for (std::size_t i = 0; i < total; ++i) result_last[i] = grad[i];
  }

  double max_seconds = 0.0;
  MPI_Allreduce(&seconds, &max_seconds, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
  const thinwire::Stats stats = reducer.stats();

  Row row;
  row.requested = spec;
  row.spec = reducer.config().to_string();
  row.bytes_per_step =
      stats.steps ? static_cast<double>(stats.bytes_sent) / static_cast<double>(stats.steps) : 0.0;
  row.ratio = stats.compression_ratio();
  row.err_last = rel_error(result_last, exact);
  // The running means share the factor 1/steps, which cancels in the relative error.
  row.err_mean = rel_error(result_sum, exact_sum);
  row.ms_per_step = steps ? 1e3 * max_seconds / steps : 0.0;
  row.identical = identical;
  return row;
}

std::string human_bytes(double b) {
  char buf[32];
  if (b >= 1e6)
    std::snprintf(buf, sizeof buf, "%.2f MB", b / 1e6);
  else if (b >= 1e3)
    std::snprintf(buf, sizeof buf, "%.1f kB", b / 1e3);
  else
    std::snprintf(buf, sizeof buf, "%.0f B", b);
  return buf;
}

void print_row(const Row& r) {
  std::string method = r.spec;
  if (r.spec != thinwire::Config::parse(r.requested).to_string())
    method += " (THINWIRE_COMPRESSION)";
  std::printf("%-26s %14s %9.1fx %11.3e %11.3e %10.2f  %s\n", method.c_str(),
              human_bytes(r.bytes_per_step).c_str(), r.ratio, r.err_last, r.err_mean, r.ms_per_step,
              r.identical ? "yes" : "NO");
  std::fflush(stdout);
}

void write_json(const std::string& path, const std::vector<Row>& rows, int size, int steps,
                std::uint64_t seed, std::size_t total, const std::vector<thinwire::Layer>& layers,
                const std::string& command) {
  char host[MPI_MAX_PROCESSOR_NAME];
  int len = 0;
  MPI_Get_processor_name(host, &len);
  std::ofstream f(path);
  f << "{\n  \"program\": \"compressed_allreduce\",\n";
  f << "  \"thinwire_version\": \"" << THINWIRE_VERSION_STRING << "\",\n";
  f << "  \"command\": \"" << json_escape(command) << "\",\n";
  f << "  \"host\": \"" << json_escape(host) << "\",\n";
  f << "  \"ranks\": " << size << ",\n  \"steps\": " << steps << ",\n  \"seed\": " << seed << ",\n";
  f << "  \"numel\": " << total << ",\n  \"layers\": [";
  for (std::size_t l = 0; l < layers.size(); ++l)
    f << (l ? ", " : "") << "\"" << json_escape(layers[l].describe()) << "\"";
  f << "],\n  \"results\": [\n";
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const Row& r = rows[i];
    f << "    {\"method\": \"" << json_escape(r.spec) << "\", \"requested\": \""
      << json_escape(r.requested) << "\", \"bytes_sent_per_rank_per_step\": " << r.bytes_per_step
      << ", \"compression_ratio\": " << r.ratio << ", \"rel_error_last_step\": " << r.err_last
      << ", \"rel_error_running_mean\": " << r.err_mean << ", \"ms_per_step\": " << r.ms_per_step
      << ", \"identical_on_all_ranks\": " << (r.identical ? "true" : "false") << "}"
      << (i + 1 < rows.size() ? "," : "") << "\n";
  }
  f << "  ]\n}\n";
  if (!f) throw std::runtime_error("cannot write " + path);
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int world_rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);

  int steps = 20;
  std::string methods = kDefaultMethods;
  std::string json_path;
  std::uint64_t seed = 42;
  po::options_description opts(
      "compressed_allreduce: thinwire's compressed allreduce on a small transformer/MLP model's "
      "synthetic gradients\nOptions");
  opts.add_options()("help,h", "show this help")(
      "steps", po::value<int>(&steps)->default_value(steps), "training steps per method")(
      "methods", po::value<std::string>(&methods)->default_value(methods),
      "comma-separated compression specs; key=value items belong to the method before them")(
      "json", po::value<std::string>(&json_path), "also write the results to this JSON file")(
      "seed", po::value<std::uint64_t>(&seed)->default_value(seed), "seed of the gradients");
  po::variables_map vm;
  try {
    po::store(po::parse_command_line(argc, argv, opts), vm);
    po::notify(vm);
    if (steps < 1) throw po::error("--steps must be at least 1");
  } catch (const po::error& e) {
    if (world_rank == 0) std::cerr << "compressed_allreduce: " << e.what() << "\n\n" << opts;
    MPI_Finalize();
    return 2;
  }
  if (vm.count("help")) {
    if (world_rank == 0) std::cout << opts;
    MPI_Finalize();
    return 0;
  }

  try {
    thinwire::Communicator comm = thinwire::Communicator::from_mpi(MPI_COMM_WORLD);
    const int rank = comm.rank(), size = comm.size();
    const std::vector<std::string> specs = split_methods(methods);
    if (specs.empty())
      throw std::invalid_argument("--methods: no methods in '" + methods +
                                  "' (expected a list like none,topk:0.01,onebit)");
    for (const std::string& s : specs) thinwire::Config::parse(s);  // fail before any work

    const std::vector<thinwire::Layer> layers = model_layers();
    std::size_t total = 0;
    for (const thinwire::Layer& l : layers) total += l.numel();
    const std::vector<Signal> signals = make_signals(layers, seed);

    if (rank == 0) {
      char host[MPI_MAX_PROCESSOR_NAME];
      int len = 0;
      MPI_Get_processor_name(host, &len);
      std::printf(
          "thinwire %s demo: %d ranks on %s, %zu layers, %zu floats (%.1f MB f32) per "
          "step, %d steps per method, seed %" PRIu64 "\n",
          THINWIRE_VERSION_STRING, size, host, layers.size(), total, 4e-6 * total, steps, seed);
      std::printf(
          "gradients: per layer a fixed rank-%d signal (same on all ranks) + uniform "
          "noise (std %.2f) that depends on rank and step\n\n",
          kSignalRank, kNoise);
      std::printf(
          "columns:\n"
          "  method        compression spec in force (canonical form)\n"
          "  sent/rank     bytes this rank sent per step: Stats::bytes_sent / steps\n"
          "  ratio         bytes of a dense f32 ring allreduce / bytes sent: "
          "Stats::compression_ratio()\n"
          "  err last      ||result - exact average|| / ||exact average|| at the last step\n"
          "  err mean      the same for the mean of the results over all steps vs the mean of "
          "the exact\n"
          "                averages: error feedback makes what is dropped in one step arrive "
          "later\n"
          "  ms/step       time in Reducer::allreduce per step (after MPI_Barrier; slowest "
          "rank)\n"
          "  same bits     every rank held bit-identical results at every step\n\n");
      std::printf("%-26s %14s %10s %11s %11s %10s  %s\n", "method", "sent/rank", "ratio",
                  "err last", "err mean", "ms/step", "same bits");
      std::printf("%s\n", std::string(99, '-').c_str());
      std::fflush(stdout);
    }

    std::vector<Row> rows;
    for (const std::string& spec : specs) {
      rows.push_back(run_method(spec, comm, layers, signals, seed, steps));
      if (rank == 0) print_row(rows.back());
    }

    bool all_identical = true;
    for (const Row& r : rows) all_identical = all_identical && r.identical;
    if (rank == 0) {
      if (!json_path.empty()) {
        std::string command;
        for (int i = 0; i < argc; ++i) command += (i ? " " : "") + std::string(argv[i]);
        write_json(json_path, rows, size, steps, seed, total, layers, command);
        std::printf("\nresults written to %s\n", json_path.c_str());
      }
      if (!all_identical) std::printf("\nERROR: ranks ended with different bits\n");
    }
    MPI_Finalize();
    return all_identical ? 0 : 3;
  } catch (const thinwire::Error& e) {
    std::fprintf(stderr, "compressed_allreduce: rank %d: %s (code %s)\n", world_rank, e.what(),
                 thinwire::to_string(e.code()));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "compressed_allreduce: rank %d: error: %s\n", world_rank, e.what());
  }
  // thinwire raises its errors on every rank, but a local failure (e.g. writing the JSON file)
  // must not leave the other ranks waiting in a collective: end them all.
  std::fflush(stderr);
  MPI_Abort(MPI_COMM_WORLD, 1);
  return 1;
}
