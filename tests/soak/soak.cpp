// Soak test: many steps of every method on small layers, all Reducers alive at once, to
// show that nothing accumulates. Checks every step that all ranks hold identical bits, and
// at the end that resident memory did not grow by more than --rss-limit-kb after the
// warm-up (a tenth of the steps). Leaks are found by the leak checker of a sanitizer build
// (tests/sanitize) running this program. Prints one line per rank with its RSS.
//   mpiexec -n 3 thinwire_soak --steps 10000 [--rss-limit-kb 1024]
#include <mpi.h>

#include <boost/program_options.hpp>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "test_support.hpp"
#include "thinwire/thinwire.hpp"

namespace po = boost::program_options;
using namespace thinwire;

namespace {

const char* const kMethods[] = {"none",
                                "topk:0.05",
                                "topk:0.05,select=sampled",
                                "onebit",
                                "qsgd:4",
                                "powersgd:2",
                                "topk:0.05,ef=econtrol",
                                "topk:0.05,select=sampled,ef=econtrol",
                                "onebit,ef=econtrol",
                                "qsgd:4,ef=econtrol",
                                "powersgd:2,ef=econtrol"};

// Resident set size of this process in kB (VmRSS of /proc/self/status).
long rss_kb() {
  std::ifstream status("/proc/self/status");
  std::string key;
  long value = 0;
  while (status >> key) {
    if (key == "VmRSS:" && status >> value) return value;
    status.ignore(1 << 12, '\n');
  }
  return -1;
}

// Runs the soak; returns this rank's number of failures. The Communicator and Reducers are
// gone when it returns, before MPI_Finalize.
int run(int me, int p, long steps, long rss_limit_kb) {
  // Two layers compressed, one (below min_numel) dense.
  const std::vector<Layer> layers = {{"w1", {64, 32}}, {"b1", {32}}, {"w2", {32, 48}}};
  Communicator comm = Communicator::from_mpi(MPI_COMM_WORLD);
  std::vector<std::unique_ptr<Reducer>> reducers;
  for (const char* m : kMethods)
    reducers.push_back(std::make_unique<Reducer>(comm, layers, Config::parse(m)));

  const long warmup = steps / 10;
  long rss_start = 0;
  int failures = 0;
  std::vector<std::vector<float>> g(layers.size());
  for (long step = 0; step < steps; ++step) {
    if (step == warmup) rss_start = rss_kb();
    std::vector<std::vector<float>> input;
    for (std::size_t l = 0; l < layers.size(); ++l)
      input.push_back(
          test::seeded_normal(77, me, l, static_cast<std::uint64_t>(step), layers[l].numel()));
    for (std::size_t m = 0; m < reducers.size(); ++m) {
      g = input;
      reducers[m]->allreduce(test::views(g));
      if (!test::identical_on_all_ranks(g, MPI_COMM_WORLD)) {
        if (me == 0)
          std::fprintf(stderr, "soak: %s: ranks differ at step %ld\n", kMethods[m], step);
        ++failures;
      }
    }
  }
  const long rss_end = rss_kb();
  for (std::size_t m = 0; m < reducers.size(); ++m)
    if (reducers[m]->step() != static_cast<std::size_t>(steps)) ++failures;

  long growth = rss_end - rss_start, max_growth = 0;
  MPI_Allreduce(&growth, &max_growth, 1, MPI_LONG, MPI_MAX, MPI_COMM_WORLD);
  for (int r = 0; r < p; ++r) {
    if (r == me)
      std::printf(
          "soak: rank %d: %ld steps x %zu methods; RSS %ld kB at step %ld, %ld kB at the "
          "end (%+ld kB)\n",
          me, steps, reducers.size(), rss_start, warmup, rss_end, growth);
    std::fflush(stdout);
    MPI_Barrier(MPI_COMM_WORLD);
  }
  if (rss_limit_kb > 0 && max_growth > rss_limit_kb) {
    if (me == 0)
      std::fprintf(stderr, "soak: RSS grew by %ld kB, more than the %ld kB allowed\n", max_growth,
                   rss_limit_kb);
    ++failures;
  }
  return failures;
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int me = 0, p = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &me);
  MPI_Comm_size(MPI_COMM_WORLD, &p);

  long steps = 300, rss_limit_kb = 1024;
  po::options_description options("thinwire_soak");
  options.add_options()("help", "this text")("steps", po::value<long>(&steps)->default_value(300),
                                             "steps of every method")(
      "rss-limit-kb", po::value<long>(&rss_limit_kb)->default_value(1024),
      "largest allowed RSS growth after the warm-up, kB (0: report only)");
  po::variables_map vm;
  try {
    po::store(po::parse_command_line(argc, argv, options), vm);
    po::notify(vm);
  } catch (const po::error& e) {
    if (me == 0) std::cerr << e.what() << "\n" << options;
    MPI_Finalize();
    return 2;
  }
  if (vm.count("help") || steps < 10) {
    if (me == 0) std::cout << options;
    MPI_Finalize();
    return vm.count("help") ? 0 : 2;
  }

  int failures = run(me, p, steps, rss_limit_kb);
  MPI_Allreduce(MPI_IN_PLACE, &failures, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  if (me == 0) std::printf("soak: %s\n", failures ? "FAILED" : "ok");
  MPI_Finalize();
  return failures ? 1 : 0;
}
