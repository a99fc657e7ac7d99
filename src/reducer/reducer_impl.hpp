// ReducerImpl: the state and pipeline behind thinwire::Reducer (reducer.cpp), its
// checkpoint format (state_io.cpp).
#pragma once

#include <cstdint>
#include <iosfwd>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "adaptive/lgreco.hpp"
#include "algorithm/dense_allreduce.hpp"
#include "algorithm/low_rank_allreduce.hpp"
#include "algorithm/sparse_allgather.hpp"
#include "algorithm/two_phase.hpp"
#include "model/auto_trial.hpp"
#include "reducer/agreement.hpp"
#include "reducer/layer_plan.hpp"
#include "reducer/layer_state.hpp"
#include "thinwire/reducer.hpp"

#include "device/device_pipeline.hpp"

namespace thinwire::detail {

// The digest of a layer under a spec that the agreement exchange and checkpoints compare:
// name, shape, spec, library version.
std::uint64_t layer_spec_hash(const Layer& layer, const std::string& spec);

class ReducerImpl {
 public:
  // `pending`: a problem the caller found on this rank before construction (a spec that does
  // not parse), reported through the agreement exchange like the constructor's own.
  ReducerImpl(Communicator comm, std::vector<Layer> layers, Config config,
              LocalStatus pending = {});
  void allreduce(const std::vector<TensorView>& grads);

  // Puts layer i under `config` from the next step on (adaptive policies). Every rank must
  // make the same change before the same step: the per-step agreement checks it.
  void set_layer_config(std::size_t i, const Config& config);
  // set_layer_config for every layer whose spec differs from specs[i] (auto's choice, its
  // trial's arms); device state is synced and invalidated first where it would change.
  void put_layers_under(const std::vector<Config>& specs);

  void save_state(std::ostream& out) const;
  void load_state(std::istream& in);

  // Brings states_ up to date where device steps hold the current state.
  void sync_host_state() const;

  Communicator comm_;
  Transport& transport_;
  std::vector<Layer> layers_;
  Config config_;
  std::vector<LayerPlan> plans_;
  std::vector<std::uint64_t> spec_hashes_;  // per layer: name, shape, spec, version
  // mutable: a const checkpoint may first fetch the current state from the device.
  mutable std::vector<LayerState> states_;
  std::map<std::string, std::unique_ptr<Compressor>> codecs_;  // by spec
  DenseAllreduce dense_;
  SparseAllgather sparse_;
  TwoPhase two_phase_;
  LowRankAllreduce low_rank_;
  std::uint64_t step_ = 0;
  bool last_skipped_ = false;
  Stats stats_;
  std::unique_ptr<LgrecoPolicy> adaptive_;  // adaptive:<family> specs
  std::vector<LayerPlan> warm_plans_;       // this step's DGC warm-up density, per layer
  std::unique_ptr<DevicePipeline> device_;  // created by the first step on device tensors
  model::AutoTrial auto_trial_;             // auto: the choice against dense on real steps

 private:
  // Sizes, dtypes and placement (all host, or all on one usable CUDA device); *device = the
  // device index, or -1 for host tensors.
  LocalStatus check_tensors(const std::vector<TensorView>& grads, int* device) const;
  // The nan policies against each layer's first non-finite element (kAllFinite: none).
  LocalStatus check_finite(const std::vector<std::size_t>& first, bool* non_finite) const;
  // Features that run on the host only: device tensors are staged through host memory.
  bool host_only_features() const;
  DevicePipeline& device_pipeline(int device);
  // One step: checks, control exchange, then run_step() (allreduce() adds auto's trial).
  void reduce(const std::vector<TensorView>& grads);
  // The end of auto's trial: the slowest rank's times decide, on every rank alike.
  void finish_auto_trial();
  // The step after the control exchange, on host or device tensors. `sum_check`: the nan
  // policy dense-plan layers take on their average (non_finite.hpp's dense_sum_check;
  // NanPolicy::propagate: they were checked before the step).
  void run_step(const std::vector<TensorView>& grads, bool on_device, NanPolicy sum_check,
                PhaseTimes& times);
  // After the dense route of a step whose dense layers were checked in their sum: false when
  // the average was finite. Otherwise nan=skip drops the step (gradients zeroed; no error
  // memory has been touched yet) and returns true; nan=error throws on every rank alike (f32
  // dense layers then hold the average, f16/bf16 ones their gradient: it is not written back).
  bool non_finite_in_sum(const std::vector<StepLayer>& step_layers,
                         const std::vector<TensorView>& grads, NanPolicy sum_check,
                         const PhaseTimes& times);
  // Counts a step that nan=skip dropped (its gradients already zeroed) in Stats, with the time
  // it took, and logs `why`.
  void count_skipped_step(const PhaseTimes& times, const std::string& why);
  std::string describe(std::size_t i, const std::vector<TensorView>* grads) const;
  Compressor* codec_for(const Config& config);
  std::uint64_t spec_hash(std::size_t i) const;
  // The plan of layer i under `config`, with its codec.
  LayerPlan plan_for(std::size_t i, const Config& config);
  // L-GreCo's decision at this step, applied to every layer whose choice changed.
  void adapt(std::vector<StepLayer>& step_layers, StepContext& ctx);
};

}  // namespace thinwire::detail
