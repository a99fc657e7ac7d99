// Reducer: compressed allreduce of a model's gradients, one call per training step.
#pragma once

#include <cstddef>
#include <iosfwd>
#include <memory>
#include <string>
#include <vector>

#include "thinwire/communicator.hpp"
#include "thinwire/config.hpp"
#include "thinwire/export.hpp"
#include "thinwire/layer.hpp"
#include "thinwire/stats.hpp"
#include "thinwire/tensor_view.hpp"

namespace thinwire {

namespace detail {
class ReducerImpl;
}

class THINWIRE_API Reducer {
 public:
  // Collective. THINWIRE_COMPRESSION, when set, replaces `config`. Ranks exchange a hash of
  // (layer names, shapes, specs, library version); a difference throws Error(mismatch) on
  // every rank naming the first differing layer.
  Reducer(Communicator comm, std::vector<Layer> layers, Config config);
  // The same with the spec as text (Config::parse). Collective like the rest of construction:
  // a spec that does not parse on one rank raises Error(invalid_argument) on every rank,
  // naming that rank, where parsing before the constructor would leave the other ranks
  // waiting in it until THINWIRE_TIMEOUT_S.
  Reducer(Communicator comm, std::vector<Layer> layers, const std::string& spec);
  ~Reducer();
  Reducer(Reducer&&) noexcept;
  Reducer& operator=(Reducer&&) noexcept;

  // Collective, in place: grads[i] is layer i's gradient. On return every rank holds the
  // same bits: the average over ranks of what was transmitted (decoded), with error
  // feedback applied. A bad tensor on any rank throws Error on every rank.
  void allreduce(const std::vector<TensorView>& grads);

  // With nan=skip: whether the last allreduce() dropped its step because some rank had a
  // non-finite gradient. The gradients were then set to zero on every rank and no error
  // memory changed; skip the optimizer step too.
  bool last_step_skipped() const;

  // This rank's compression state (error memories, EControl estimates, PowerSGD factors,
  // step counter; a versioned, checksummed binary format). load_state() restores it into a
  // Reducer built with the same layers, specs, number of ranks and rank; anything else
  // raises Error. An `auto` Reducer takes the saved spec of each layer when it is one of its
  // candidates (recalibrate() then chooses again). Not collective: every rank saves and loads
  // its own state. save_state(path) writes PATH.tmp and renames it over PATH once complete, so
  // a failed write (a full disk: Error(invalid_argument)) leaves an earlier checkpoint intact.
  void save_state(std::ostream& out) const;
  void load_state(std::istream& in);
  void save_state(const std::string& path) const;
  void load_state(const std::string& path);

  // Collective, for spec `auto`: measures the link and the kernels again and re-chooses each
  // layer's spec (as at construction: a compressed choice with a small predicted gain is tried
  // against dense on the next 6 steps), from the next step on. Does nothing for other specs.
  void recalibrate();

  Stats stats() const;
  void reset_stats();

  const std::vector<Layer>& layers() const;
  // The spec in force for layer i, canonical form.
  std::string layer_spec(std::size_t i) const;
  const Config& config() const;
  const Communicator& communicator() const;
  // Completed allreduce() calls.
  std::size_t step() const;

 private:
  std::unique_ptr<detail::ReducerImpl> impl_;
};

}  // namespace thinwire
