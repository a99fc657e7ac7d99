#include "transport/sum_route.hpp"

#include <algorithm>

#include "common/env.hpp"
#include "common/fail.hpp"

namespace thinwire::detail {

SumRouteChooser::Mode SumRouteChooser::mode_from_env() {
  const std::string v = env_string("THINWIRE_MPI_ALLREDUCE", "ring");
  if (v == "auto") return Mode::automatic;
  if (v == "ring") return Mode::ring;
  if (v == "mpi") return Mode::mpi;
  fail_with(ErrorCode::invalid_argument, "environment", -1, "THINWIRE_MPI_ALLREDUCE='", v,
            "' is not one of auto, ring, mpi");
}

const char* SumRouteChooser::name(Mode m) {
  switch (m) {
    case Mode::automatic:
      return "auto";
    case Mode::ring:
      return "ring";
    case Mode::mpi:
      return "mpi";
  }
  return "?";
}

const char* SumRouteChooser::name(SumRoute r) {
  return r == SumRoute::ring ? "thinwire ring" : "MPI_Iallreduce";
}

int SumRouteChooser::size_class(std::size_t bytes) {
  int c = 0;
  while (bytes > 1) bytes >>= 1, ++c;
  return c;
}

const SumRouteChooser::ClassState* SumRouteChooser::find(std::size_t bytes) const {
  const auto it = classes_.find(size_class(bytes));
  return it == classes_.end() ? nullptr : &it->second;
}

SumRouteChooser::Plan SumRouteChooser::next(std::size_t bytes) const {
  if (mpi_rejected_ || mode_ == Mode::ring) return {SumRoute::ring, false};
  const ClassState* s = find(bytes);
  const int verified = s ? s->verified : 0;
  if (mode_ == Mode::mpi) return {SumRoute::mpi, verified < kVerifiedCalls};
  if (s && s->settled) return {s->route, s->route == SumRoute::mpi && verified < kVerifiedCalls};
  // Exploring: ring, MPI, ring, MPI, ...; the first of each is a warm-up.
  const int call = s ? s->calls : 0;
  if (call % 2 == 0) return {SumRoute::ring, false};
  return {SumRoute::mpi, true};
}

bool SumRouteChooser::record(std::size_t bytes, const Plan& plan, double seconds) {
  ClassState& s = classes_[size_class(bytes)];
  if (plan.verify) ++s.verified;
  if (mode_ != Mode::automatic || mpi_rejected_ || s.settled) return false;
  if (s.calls >= 2) {  // a timed call
    double& best = s.best[plan.route == SumRoute::mpi ? 1 : 0];
    best = best > 0 ? std::min(best, seconds) : seconds;
  }
  ++s.calls;
  return s.calls == kExplorationCalls;
}

SumRouteChooser::Timings SumRouteChooser::timings(std::size_t bytes) const {
  const ClassState* s = find(bytes);
  return s ? Timings{s->best[0], s->best[1]} : Timings{};
}

SumRoute SumRouteChooser::decide(std::size_t bytes, const Timings& slowest_rank) {
  ClassState& s = classes_[size_class(bytes)];
  s.settled = true;
  s.route = slowest_rank.mpi_s > 0 && slowest_rank.mpi_s < kMpiMustBeFaster * slowest_rank.ring_s
                ? SumRoute::mpi
                : SumRoute::ring;
  return s.route;
}

bool SumRouteChooser::settled(std::size_t bytes, SumRoute* route) const {
  if (mpi_rejected_ || mode_ != Mode::automatic) {
    *route = mpi_rejected_ || mode_ == Mode::ring ? SumRoute::ring : SumRoute::mpi;
    return true;
  }
  const ClassState* s = find(bytes);
  if (!s || !s->settled) return false;
  *route = s->route;
  return true;
}

}  // namespace thinwire::detail
