// Which algorithm carries a large f32 sum over MPI: thinwire's point-to-point ring or MPI's
// own allreduce (THINWIRE_MPI_ALLREDUCE=auto|ring|mpi).
//
// Why both: the ring polls each peer, so a timeout names the ranks that never answered, and
// with THINWIRE_MPI_SEGMENT_BYTES it avoids Open MPI's TCP rendezvous stalls (see
// MpiTransport::post); its summation order is fixed, so runs are bitwise reproducible. MPI's
// allreduce can use what the library knows of the machine (shared memory, hierarchy,
// offload). Which is faster depends on the fabric and the size, so `auto` times both on the
// first calls of each size class (powers of two) and keeps the faster, as Horovod's
// autotuner does for its fusion parameters. The ring is the default: on every setup measured
// here it was as fast or faster, and a choice made from timings can differ between runs,
// and with it the summation order and the last bits of the results.
//
// This class only keeps the schedule and the decisions; MpiTransport runs the calls, agrees
// the timings (slowest rank) and checks that MPI's route gives every rank the same bits.
#pragma once

#include <cstddef>
#include <map>

namespace thinwire::detail {

enum class SumRoute { ring, mpi };

class SumRouteChooser {
 public:
  enum class Mode { automatic = 0, ring = 1, mpi = 2 };
  // Calls per size class before the choice: one warm-up of each route, then kTimedRounds
  // timed calls of each, alternating so that drifting load hits both alike.
  static constexpr int kTimedRounds = 2;
  static constexpr int kExplorationCalls = 2 * (1 + kTimedRounds);
  // MPI's route must beat the ring by this factor to be kept: the ring's timeouts name the
  // silent ranks, worth a few percent.
  static constexpr double kMpiMustBeFaster = 0.97;
  // Calls of MPI's route per size class whose result bits are compared across ranks.
  static constexpr int kVerifiedCalls = 3;

  explicit SumRouteChooser(Mode mode) : mode_(mode) {}
  // THINWIRE_MPI_ALLREDUCE; throws Error(invalid_argument) naming the variable otherwise.
  static Mode mode_from_env();
  static const char* name(Mode m);
  static const char* name(SumRoute r);
  Mode mode() const { return mode_; }

  struct Plan {
    SumRoute route = SumRoute::ring;
    bool verify = false;  // compare the result's bits across ranks (MPI's route only)
  };
  // The route for the next sum of `bytes` (every rank asks with the same sizes in the same
  // order, so every rank gets the same plan).
  Plan next(std::size_t bytes) const;
  // After the call planned by next(): this rank's seconds. Returns true when the size class
  // has all its exploration timings: the caller then agrees them across ranks and calls
  // decide().
  bool record(std::size_t bytes, const Plan& plan, double seconds);
  struct Timings {
    double ring_s = 0, mpi_s = 0;  // best timed call of each route on this rank
  };
  Timings timings(std::size_t bytes) const;
  // With the timings maxed over ranks: keeps the faster route for the size class.
  SumRoute decide(std::size_t bytes, const Timings& slowest_rank);
  // MPI's route gave ranks different bits: every sum takes the ring from now on.
  void reject_mpi() { mpi_rejected_ = true; }
  bool mpi_rejected() const { return mpi_rejected_; }
  // The route a size class has settled on, or nothing yet (tests, logs).
  bool settled(std::size_t bytes, SumRoute* route) const;
  // Size class of `bytes`: floor(log2(bytes)).
  static int size_class(std::size_t bytes);

 private:
  struct ClassState {
    int calls = 0;  // exploration calls made
    int verified = 0;
    bool settled = false;
    SumRoute route = SumRoute::ring;
    double best[2] = {0, 0};  // per route, timed calls only; 0 = none yet
  };
  const ClassState* find(std::size_t bytes) const;

  Mode mode_;
  bool mpi_rejected_ = false;  // MPI's route broke identical bits once: never again
  std::map<int, ClassState> classes_;
};

}  // namespace thinwire::detail
