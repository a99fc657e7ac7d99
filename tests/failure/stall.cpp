// A training loop in which one rank stops participating: at step 5 it sleeps ("sleep") or
// exits ("exit"), or it never joins ("late": it sleeps before Communicator::from_mpi). The
// survivors must raise Error(timeout) within THINWIRE_TIMEOUT_S plus a little, naming the
// missing rank, and every later call must fail at once. Each survivor prints one RAISED
// line; rank 0 then ends the job with MPI_Abort, as a trainer would.
#include <mpi.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <thinwire/thinwire.hpp>
#include <vector>

namespace {

// Rank 0 waits for the other survivors to report, then ends the job; the others wait to be
// killed by its MPI_Abort.
[[noreturn]] void end_job(int me, int victim, const std::string& marker_dir) {
  const std::string marker = marker_dir + "/raised." + std::to_string(me);
  if (FILE* f = std::fopen(marker.c_str(), "w")) std::fclose(f);
  if (me == 0) {
    for (int i = 0; i < 100; ++i) {
      int seen = 0;
      for (int r = 0; r < victim; ++r)
        if (access((marker_dir + "/raised." + std::to_string(r)).c_str(), F_OK) == 0) ++seen;
      if (seen == victim) break;
      usleep(50000);
    }
    MPI_Abort(MPI_COMM_WORLD, 3);
  }
  sleep(600);
  std::_Exit(1);
}

double since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  const std::string mode = argc > 1 ? argv[1] : "sleep";
  const std::string spec = argc > 2 ? argv[2] : "topk:0.1";
  const std::string marker_dir = argc > 3 ? argv[3] : "/tmp";
  int me = 0, p = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &me);
  MPI_Comm_size(MPI_COMM_WORLD, &p);
  const int victim = p - 1;
  if (mode == "late" && me == victim) sleep(600);
  const auto joined = std::chrono::steady_clock::now();
  std::optional<thinwire::Communicator> maybe_comm;
  try {
    maybe_comm = thinwire::Communicator::from_mpi(MPI_COMM_WORLD);
  } catch (const thinwire::Error& e) {
    std::printf(
        "RAISED rank=%d step=-1 code=%s after=%.2f broken=1 second=none second_after=0 what=%s\n",
        me, thinwire::to_string(e.code()), since(joined), e.what());
    std::fflush(stdout);
    end_job(me, victim, marker_dir);
  }
  thinwire::Communicator& comm = *maybe_comm;
  thinwire::Reducer reducer(comm, {{"fc.weight", {64, 64}}, {"fc.bias", {64}}},
                            thinwire::Config::parse(spec));
  std::vector<float> w(4096, 0.5f), b(64, 0.25f);
  for (int step = 0; step < 10; ++step) {
    if (step == 5 && me == victim) {
      if (mode == "exit") std::_Exit(0);
      sleep(600);
    }
    const auto start = std::chrono::steady_clock::now();
    try {
      reducer.allreduce({thinwire::TensorView::host(w.data(), w.size()),
                         thinwire::TensorView::host(b.data(), b.size())});
    } catch (const thinwire::Error& e) {
      const double waited =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      // The communicator is broken now: the next call must fail at once.
      const auto again = std::chrono::steady_clock::now();
      std::string second = "none", second_what;
      try {
        reducer.allreduce({thinwire::TensorView::host(w.data(), w.size()),
                           thinwire::TensorView::host(b.data(), b.size())});
      } catch (const thinwire::Error& e2) {
        second = thinwire::to_string(e2.code());
        second_what = e2.what();
      }
      const double second_s =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - again).count();
      std::printf(
          "RAISED rank=%d step=%d code=%s after=%.2f broken=%d second=%s second_after=%.3f "
          "what=%s\n",
          me, step, thinwire::to_string(e.code()), waited, comm.broken() ? 1 : 0, second.c_str(),
          second_s, e.what());
      std::printf("SECOND rank=%d what=%s\n", me, second_what.c_str());
      std::fflush(stdout);
      end_job(me, victim, marker_dir);
    }
  }
  std::printf("FINISHED rank=%d without error\n", me);
  MPI_Finalize();
  return 0;
}
