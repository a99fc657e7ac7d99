// thinwire-bench-allgather: the MPI transport's allgather of small blocks in ceil(log2 P)
// rounds against the same transport's direct exchange (P-1 messages per rank) and against
// MPI_Allgather, measured in one run (MPI program).
//
//   mpirun -np 8 thinwire-bench-allgather [--sizes 256,1K,4K,32K] [--calls 200] [--trials 7]
//       [--json FILE]
//
// Each candidate runs `calls` allgathers back to back, as a training loop runs its per-step
// control exchange; a trial's time per call is the slowest rank's, and a size's result is the
// median over trials. Every call's gathered blocks are checked against what each rank sent.
// THINWIRE_MPI_LOG_ALLGATHER_MIN_RANKS picks the transport's mode: the rounds' communicator is
// built with it at 2, the direct one at 0 (never), whatever the environment says.
#include <mpi.h>

#include <algorithm>
#include <boost/program_options.hpp>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include <thinwire/thinwire.hpp>

#include "bench_common.hpp"
#include "bench_layers.hpp"
#include "json_path_check.hpp"
#include "median.hpp"
#include "transport/communicator_state.hpp"
#include "transport/mpi_transport.hpp"

namespace po = boost::program_options;
namespace tb = thinwire::bench;
using nlohmann::json;

namespace {

struct Options {
  std::vector<std::size_t> sizes;
  int calls = 200;
  int trials = 7;
  std::string json_path;
};

// A communicator whose MPI transport gathers small blocks in rounds from `min_ranks` ranks on.
thinwire::Communicator with_rounds_from(const char* min_ranks) {
  const char* before = std::getenv("THINWIRE_MPI_LOG_ALLGATHER_MIN_RANKS");
  const std::string saved = before ? before : "";
  setenv("THINWIRE_MPI_LOG_ALLGATHER_MIN_RANKS", min_ranks, 1);
  thinwire::Communicator c = thinwire::Communicator::from_mpi(MPI_COMM_WORLD);
  if (before)
    setenv("THINWIRE_MPI_LOG_ALLGATHER_MIN_RANKS", saved.c_str(), 1);
  else
    unsetenv("THINWIRE_MPI_LOG_ALLGATHER_MIN_RANKS");
  return c;
}

// The byte rank `r` sends at offset i of its block in call `call`.
unsigned char pattern(int r, std::size_t i, int call) {
  return static_cast<unsigned char>(r * 131 + i * 7 + call * 13);
}

class Bench {
 public:
  explicit Bench(const Options& o) : o_(o) {
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
  }

  json run(thinwire::detail::MpiTransport& rounds, thinwire::detail::MpiTransport& direct) {
    json results = json::array();
    if (rank_ == 0)
      std::printf(
          "# thinwire-bench-allgather: %d ranks, %d calls x %d trials per candidate\n"
          "# time per call: median over trials of the slowest rank's mean\n"
          "%10s %14s %14s %16s %16s %16s\n",
          size_, o_.calls, o_.trials, "bytes", "rounds us", "direct us", "MPI_Allgather us",
          "rounds/direct", "rounds/MPI");
    for (std::size_t bytes : o_.sizes) {
      std::vector<unsigned char> send(bytes), recv(bytes * static_cast<std::size_t>(size_));
      const bool in_rounds = thinwire::detail::MpiTransport::allgather_in_log_rounds(
          bytes, size_, rounds.log_allgather_min_ranks());
      auto thinwire_call = [&](thinwire::detail::MpiTransport& t) {
        return [&](int) { t.allgather(send.data(), recv.data(), bytes); };
      };
      auto mpi_call = [&](int) {
        MPI_Allgather(send.data(), static_cast<int>(bytes), MPI_BYTE, recv.data(),
                      static_cast<int>(bytes), MPI_BYTE, MPI_COMM_WORLD);
      };
      const double rounds_s = time_per_call(bytes, send, recv, thinwire_call(rounds));
      const double direct_s = time_per_call(bytes, send, recv, thinwire_call(direct));
      const double mpi_s = time_per_call(bytes, send, recv, mpi_call);
      if (rank_ == 0)
        std::printf("%10zu %14.1f %14.1f %16.1f %16.2f %16.2f\n", bytes, rounds_s * 1e6,
                    direct_s * 1e6, mpi_s * 1e6, rounds_s / direct_s, rounds_s / mpi_s);
      results.push_back({{"size_bytes", bytes},
                         {"ranks", size_},
                         {"in_rounds", in_rounds},
                         {"rounds_time_median_s", rounds_s},
                         {"direct_time_median_s", direct_s},
                         {"mpi_allgather_time_median_s", mpi_s},
                         {"rounds_over_direct", rounds_s / direct_s},
                         {"rounds_over_mpi_allgather", rounds_s / mpi_s}});
    }
    return results;
  }

 private:
  // The median over trials of the slowest rank's mean time per call; every call's result is
  // checked (a wrong byte ends the program on every rank with exit status 1).
  template <typename Call>
  double time_per_call(std::size_t bytes, std::vector<unsigned char>& send,
                       std::vector<unsigned char>& recv, Call&& call) {
    auto fill = [&](int k) {
      for (std::size_t i = 0; i < bytes; ++i) send[i] = pattern(rank_, i, k);
    };
    auto check = [&](int k) {
      for (int r = 0; r < size_; ++r)
        for (std::size_t i = 0; i < bytes; ++i)
          if (recv[static_cast<std::size_t>(r) * bytes + i] != pattern(r, i, k)) {
            std::fprintf(stderr,
                         "thinwire-bench-allgather: rank %d got a wrong byte %zu from rank %d "
                         "(%zu-byte blocks)\n",
                         rank_, i, r, bytes);
            MPI_Abort(MPI_COMM_WORLD, 1);
          }
    };
    for (int k = 0; k < 10; ++k) fill(k), call(k), check(k);  // warm-up
    std::vector<double> trials;
    for (int t = 0; t < o_.trials; ++t) {
      MPI_Barrier(MPI_COMM_WORLD);
      double seconds = 0;
      // The pattern changes every call, so a stale block cannot pass; filling and checking are
      // outside the timed calls.
      for (int k = 0; k < o_.calls; ++k) {
        fill(k);
        const double t0 = MPI_Wtime();
        call(k);
        seconds += MPI_Wtime() - t0;
        check(k);
      }
      double per_call = seconds / o_.calls;
      MPI_Allreduce(MPI_IN_PLACE, &per_call, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
      trials.push_back(per_call);
    }
    return tb::median(trials);
  }

  const Options& o_;
  int rank_ = 0, size_ = 1;
};

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  Options o;
  std::string sizes = "256,1K,4K,32K";
  po::options_description opts(
      "thinwire-bench-allgather: small allgathers in rounds vs directly vs MPI_Allgather");
  opts.add_options()("help,h", "this help")(
      "sizes", po::value<std::string>(&sizes)->default_value(sizes),
      "block sizes in bytes per rank (K/M suffixes), each below 8K for rounds to apply")(
      "calls", po::value<int>(&o.calls)->default_value(o.calls), "calls per trial")(
      "trials", po::value<int>(&o.trials)->default_value(o.trials), "trials per candidate")(
      "json", po::value<std::string>(&o.json_path), "write the results to this JSON file");
  try {
    po::variables_map vm;
    po::store(po::parse_command_line(argc, argv, opts), vm);
    po::notify(vm);
    if (vm.count("help")) {
      if (rank == 0) std::cout << opts;
      MPI_Finalize();
      return 0;
    }
    if (o.calls < 1 || o.trials < 1) throw po::error("--calls and --trials must be >= 1");
    for (const std::string& s : tb::split_specs(sizes)) {
      const std::size_t b = tb::parse_size(s);
      if (b < 1 || b > (std::size_t{1} << 30))
        throw po::error("--sizes: " + s + " is not a block of 1 byte to 1 GiB");
      o.sizes.push_back(b);
    }
    if (o.sizes.empty()) throw po::error("--sizes: no sizes in '" + sizes + "'");
  } catch (const std::exception& e) {
    if (rank == 0) std::cerr << "thinwire-bench-allgather: " << e.what() << "\n\n" << opts;
    MPI_Finalize();
    return 2;
  }
  if (!tb::json_path_writable(o.json_path, "thinwire-bench-allgather", MPI_COMM_WORLD)) {
    MPI_Finalize();
    return 2;
  }
  json out = tb::provenance(argc, argv);
  {
    thinwire::Communicator rounds = with_rounds_from("2"), direct = with_rounds_from("0");
    auto& r = dynamic_cast<thinwire::detail::MpiTransport&>(rounds.state()->host.inner());
    auto& d = dynamic_cast<thinwire::detail::MpiTransport&>(direct.state()->host.inner());
    if (!(r.timeout_s() > 0)) {
      if (rank == 0)
        std::cerr << "thinwire-bench-allgather: THINWIRE_TIMEOUT_S=0 makes the transport call "
                     "MPI_Allgather for every allgather; set a deadline to compare its modes\n";
      MPI_Finalize();
      return 2;
    }
    out["baseline"] =
        "the same transport's direct exchange (P-1 messages per rank), and "
        "MPI_Allgather on MPI_COMM_WORLD";
    out["how"] =
        "per size and candidate: calls back to back after 10 warm-up calls, each "
        "call's blocks checked; a trial's time per call is the slowest rank's mean; "
        "the median over trials";
    out["timeout_s"] = r.timeout_s();
    out["results"] = Bench(o).run(r, d);
  }
  if (rank == 0 && !o.json_path.empty()) std::ofstream(o.json_path) << out.dump(2) << "\n";
  MPI_Finalize();
  return 0;
}
