// Reducer: per-model state and the per-step pipeline
//   validate tensors -> agree (status, step, specs, dtypes) -> f32 gradients -> route each
//   layer -> run the algorithms -> write results back -> statistics.
#include "thinwire/reducer.hpp"

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <optional>
#include <string_view>
#include <unordered_map>

#include "common/bytes.hpp"
#include "common/fail.hpp"
#include "common/half.hpp"
#include "common/hash.hpp"
#include "common/logging.hpp"
#include "common/timer.hpp"
#include "compress/low_rank.hpp"
#include "launch.hpp"
#include "model/auto_policy.hpp"
#include "reducer/dgc.hpp"
#include "reducer/non_finite.hpp"
#include "reducer/reducer_impl.hpp"
#include "reducer/step.hpp"
#include "thinwire/version.hpp"

namespace thinwire {
namespace detail {

namespace {

void to_f32(const TensorView& v, float* out) {
  const auto* in = static_cast<const std::uint16_t*>(v.data());
  const std::size_t n = v.numel();
  if (v.dtype() == DType::f16)
    for (std::size_t i = 0; i < n; ++i) out[i] = f16_to_f32(in[i]);
  else
    for (std::size_t i = 0; i < n; ++i) out[i] = bf16_to_f32(in[i]);
}

void from_f32(const float* in, const TensorView& v) {
  auto* out = static_cast<std::uint16_t*>(v.data());
  const std::size_t n = v.numel();
  if (v.dtype() == DType::f16)
    for (std::size_t i = 0; i < n; ++i) out[i] = f32_to_f16(in[i]);
  else
    for (std::size_t i = 0; i < n; ++i) out[i] = f32_to_bf16(in[i]);
}

// Transport failures say which collective failed; add which step and which layers it was
// moving, so a log line from any rank says what the job was doing.
template <typename F>
void with_context(F&& body, const std::function<std::string()>& context) {
  try {
    body();
  } catch (const Error& e) {
    if (e.code() != ErrorCode::timeout && e.code() != ErrorCode::transport_error) throw;
    throw Error(e.code(), cat(e.what(), " [", context(), "]"));
  }
}

std::string layer_list(const std::vector<StepLayer*>& layers) {
  std::string s;
  for (std::size_t i = 0; i < layers.size() && i < 3; ++i)
    s += cat(i ? ", '" : "'", *layers[i]->name, "'");
  if (layers.size() > 3) s += cat(" and ", layers.size() - 3, " more");
  return s;
}

const char* route_name(const StepLayer& sl) {
  switch (sl.route) {
    case Route::dense:
      return "dense";
    case Route::low_rank:
      return "powersgd";
    default:
      return to_string(sl.plan->config.method);
  }
}

}  // namespace

ReducerImpl::ReducerImpl(Communicator comm, std::vector<Layer> layers, Config config,
                         LocalStatus pending)
    : comm_(std::move(comm)),
      transport_(comm_.host_transport()),
      layers_(std::move(layers)),
      config_(config) {
  // Every local problem is reported through the agreement exchange, so that a bad spec or
  // layer on one rank fails every rank instead of leaving the others in a collective.
  LocalStatus status = std::move(pending);
  try {
    if (auto env = status.ok ? Config::from_env() : std::nullopt) {
      if (*env != config_)
        TW_LOG(info, "THINWIRE_COMPRESSION='", env->to_string(), "' overrides the program's spec '",
               config_.to_string(), "'");
      config_ = *env;
    }
  } catch (const Error& e) {
    status = LocalStatus::failure(e.code(), e.what());
  }
  for (std::size_t i = 0; i < layers_.size() && status.ok; ++i) {
    const Layer& l = layers_[i];
    std::size_t n = 1;
    // The element count times the widest element (8 bytes on the wire) must fit in 64 bits: a
    // count that fits while its byte size wraps let a tensor's size in bytes read as 0.
    constexpr std::size_t kMaxElements = std::numeric_limits<std::size_t>::max() / 8;
    for (std::int64_t d : l.shape) {
      if (d < 0 || !mul_ok(n, static_cast<std::size_t>(d), &n) || n > kMaxElements) {
        status = LocalStatus::failure(
            ErrorCode::invalid_argument,
            cat("layer ", i, " '", l.describe(),
                "': dimensions must be >= 0 and their product at most 2^61 - 1 elements"));
        break;
      }
    }
    if (status.ok && (config_.method == Method::topk || config_.family == Method::topk) &&
        n > std::numeric_limits<std::uint32_t>::max())
      status =
          LocalStatus::failure(ErrorCode::unsupported,
                               cat("layer '", l.describe(),
                                   "': topk indices are 32-bit; split layers above 2^32 elements"));
  }
  // A layer's name is how errors, logs, statistics and auto's choices tell it apart; two under
  // one name (module names given for parameters, say) would leave those ambiguous. Horovod
  // refuses duplicate parameter names the same way.
  if (status.ok) {
    std::unordered_map<std::string_view, std::size_t> first_named;
    for (std::size_t i = 0; i < layers_.size(); ++i) {
      const auto [first, fresh] = first_named.emplace(layers_[i].name, i);
      if (!fresh) {
        status = LocalStatus::failure(ErrorCode::invalid_argument,
                                      cat("layers ", first->second, " and ", i, " are both named '",
                                          layers_[i].name, "': layer names must be unique"));
        break;
      }
    }
  }

  if (status.ok) {
    // adaptive:<family> starts every layer at the family's uniform default.
    if (config_.method == Method::adaptive)
      adaptive_ = std::make_unique<LgrecoPolicy>(config_, layers_);
    plans_.reserve(layers_.size());
    for (std::size_t i = 0; i < layers_.size(); ++i)
      plans_.push_back(plan_for(
          i, adaptive_ ? adaptive_->config_of(adaptive_->candidates().default_index) : config_));
    warm_plans_.resize(layers_.size());
  }
  for (std::size_t i = 0; i < layers_.size(); ++i) spec_hashes_.push_back(spec_hash(i));
  stats_.bytes_sent +=
      check_agreement(transport_, "construction", status, 0, spec_hashes_, [&](std::size_t i) {
        return describe(i, nullptr);
      }).bytes_sent;
  states_.resize(layers_.size());
  stats_.layers.resize(layers_.size());
  for (std::size_t i = 0; i < layers_.size(); ++i) {
    stats_.layers[i].name = layers_[i].name;
    stats_.layers[i].numel = plans_[i].numel;
    stats_.layers[i].spec = plans_[i].spec;
    if (plans_[i].route == Route::dense && !plans_[i].why_dense.empty())
      TW_LOG(info, "layer '", layers_[i].name, "' goes uncompressed: ", plans_[i].why_dense);
  }
  TW_LOG(info, "reducer: ", layers_.size(), " layers, spec '", config_.to_string(), "', ",
         comm_.size(), " ranks");
  if (config_.method == Method::automatic) model::apply_auto(*this);
}

Compressor* ReducerImpl::codec_for(const Config& config) {
  auto& codec = codecs_[config.to_string()];
  if (!codec) codec = make_codec(config);
  return codec.get();
}

LayerPlan ReducerImpl::plan_for(std::size_t i, const Config& config) {
  LayerPlan plan = make_plan(layers_[i], config);
  plan.codec = codec_for(config);
  return plan;
}

std::uint64_t layer_spec_hash(const Layer& layer, const std::string& spec) {
  Hasher h;
  h.str(layer.name).u64(layer.shape.size());
  for (std::int64_t d : layer.shape) h.u64(static_cast<std::uint64_t>(d));
  h.str(spec).str(THINWIRE_VERSION_STRING);
  return h.value();
}

std::uint64_t ReducerImpl::spec_hash(std::size_t i) const {
  return layer_spec_hash(layers_[i], i < plans_.size() ? plans_[i].spec : config_.to_string());
}

void ReducerImpl::set_layer_config(std::size_t i, const Config& config) {
  if (i >= layers_.size())
    fail_with(ErrorCode::invalid_argument, "reducer", comm_.rank(), "set_layer_config(", i,
              "): only ", layers_.size(), " layers");
  LayerPlan plan = plan_for(i, config);
  // Error memories carry over only where they still mean the same thing. PowerSGD's
  // warm-start Q keeps its first columns when only the rank changes; new columns are drawn
  // from the shared seed, so every rank holds the same Q.
  const LayerPlan& old = plans_[i];
  std::vector<float>& q = states_[i].q;
  if (plan.route != old.route) {
    q.clear();
  } else if (plan.rank != old.rank && !q.empty()) {
    std::vector<float> fresh(plan.cols * plan.rank);
    low_rank::random_init(fresh.data(), plan.cols, plan.rank, plan.config.seed,
                          static_cast<std::uint32_t>(i), (std::uint64_t{1} << 63) | step_);
    const std::size_t keep = plan.rank < old.rank ? plan.rank : old.rank;
    for (std::size_t row = 0; row < plan.cols; ++row)
      for (std::size_t j = 0; j < keep; ++j) fresh[row * plan.rank + j] = q[row * old.rank + j];
    q = std::move(fresh);
  }
  plans_[i] = std::move(plan);
  spec_hashes_[i] = spec_hash(i);
  stats_.layers[i].spec = plans_[i].spec;
}

std::string ReducerImpl::describe(std::size_t i, const std::vector<TensorView>* grads) const {
  std::string s = cat("layer '", layers_[i].describe(), "' spec '",
                      i < plans_.size() ? plans_[i].spec : config_.to_string(), "'");
  if (grads && i < grads->size()) s += cat(" dtype ", to_string((*grads)[i].dtype()));
  return s;
}

LocalStatus ReducerImpl::check_tensors(const std::vector<TensorView>& grads, int* device) const {
  *device = -1;
  if (grads.size() != layers_.size())
    return LocalStatus::failure(
        ErrorCode::invalid_argument,
        cat("allreduce() got ", grads.size(), " tensors for ", layers_.size(), " layers"));
  for (std::size_t i = 0; i < grads.size(); ++i) {
    const TensorView& v = grads[i];
    if (v.numel() != plans_[i].numel)
      return LocalStatus::failure(ErrorCode::invalid_argument,
                                  cat("layer ", i, " '", layers_[i].describe(), "': expected ",
                                      plans_[i].numel, " elements, got a tensor of ", v.numel()));
    if (v.numel() && !v.data())
      return LocalStatus::failure(ErrorCode::invalid_argument,
                                  cat("layer ", i, " '", layers_[i].name, "': null data pointer"));
    if (v.dtype() != DType::f32 && v.dtype() != DType::f16 && v.dtype() != DType::bf16)
      return LocalStatus::failure(
          ErrorCode::invalid_argument,
          cat("layer ", i, " '", layers_[i].name, "': unknown dtype code ", int(v.dtype())));
  }
  // Every layer its own memory: dense layers are summed where they are, and compressed ones
  // keep per-layer error memories, so two layers over the same bytes (a tied weight passed
  // twice) would silently give wrong results.
  std::vector<std::size_t> order;
  for (std::size_t i = 0; i < grads.size(); ++i)
    if (grads[i].numel()) order.push_back(i);
  const auto begin = [&](std::size_t i) {
    return reinterpret_cast<std::uintptr_t>(grads[i].data());
  };
  std::sort(order.begin(), order.end(),
            [&](std::size_t a, std::size_t b) { return begin(a) < begin(b); });
  for (std::size_t k = 1; k < order.size(); ++k) {
    const std::size_t a = order[k - 1], b = order[k];
    if (begin(a) + grads[a].bytes() > begin(b) && grads[a].device() == grads[b].device())
      return LocalStatus::failure(
          ErrorCode::invalid_argument,
          cat("layers ", std::min(a, b), " '", layers_[std::min(a, b)].name, "' and ",
              std::max(a, b), " '", layers_[std::max(a, b)].name,
              "' share memory: each layer needs a gradient buffer of its own (a weight tied "
              "between modules is one layer)"));
  }
  // Placement: all host tensors, or all on one CUDA device.
  bool any_device = false;
  for (const TensorView& v : grads) any_device = any_device || !v.is_host();
  if (!any_device) return {};
  const int d = grads.empty() ? -1 : grads[0].device();
  for (std::size_t i = 0; i < grads.size(); ++i)
    if (grads[i].device() != d)
      return LocalStatus::failure(
          ErrorCode::invalid_argument,
          cat("layer ", i, " '", layers_[i].name, "' is on ",
              grads[i].is_host() ? std::string("the host") : cat("CUDA device ", grads[i].device()),
              " but layer 0 is on ", d < 0 ? std::string("the host") : cat("CUDA device ", d),
              ": one allreduce() takes tensors in one place"));
  std::string why;
  const int count = kernels::device_count(&why);
  if (count == 0)
    return LocalStatus::failure(ErrorCode::unsupported,
                                cat("layer 0 '", layers_[0].name, "' is a tensor on CUDA device ",
                                    d, ", but no CUDA device is usable here: ", why));
  if (d >= count)
    return LocalStatus::failure(ErrorCode::invalid_argument,
                                cat("layer 0 '", layers_[0].name, "' claims CUDA device ", d,
                                    ", but this process sees ", count, " device(s)"));
  for (std::size_t i = 0; i < grads.size(); ++i) {
    if (!grads[i].numel()) continue;
    int owner = -1;
    const std::string err = kernels::pointer_device(grads[i].data(), &owner);
    if (!err.empty() || owner != d)
      return LocalStatus::failure(ErrorCode::invalid_argument,
                                  cat("layer ", i, " '", layers_[i].name,
                                      "': the pointer given as CUDA device ", d, " memory is ",
                                      !err.empty() ? cat("not known to CUDA (", err, ")")
                                      : owner < 0  ? std::string("host memory")
                                                   : cat("memory of device ", owner)));
  }
  *device = d;
  return {};
}

LocalStatus ReducerImpl::check_finite(const std::vector<std::size_t>& first,
                                      bool* non_finite) const {
  // nan=error|skip: look before encoding, so that a bad value never enters an error memory
  // or a payload, and tell every rank through the control exchange.
  *non_finite = false;
  for (std::size_t i = 0; i < first.size(); ++i) {
    const NanPolicy policy = plans_[i].config.nan;
    if (policy == NanPolicy::propagate || first[i] == kAllFinite) continue;
    if (policy == NanPolicy::skip) {
      *non_finite = true;
      continue;
    }
    return LocalStatus::failure(
        ErrorCode::invalid_argument,
        cat("layer ", i, " '", layers_[i].name, "' has a non-finite gradient (",
            "NaN or infinity) at element ", first[i],
            "; nan=error stops here, nan=skip would drop the step"));
  }
  return {};
}

bool ReducerImpl::host_only_features() const {
  if (adaptive_) return true;
  for (const LayerPlan& plan : plans_)
    if (runs_on_host_only(plan.config)) return true;
  return false;
}

DevicePipeline& ReducerImpl::device_pipeline(int device) {
  if (device_ && device_->device() != device)
    fail_with(ErrorCode::invalid_argument, "reducer", comm_.rank(),
              "this Reducer reduced tensors on ", "CUDA device ", device_->device(),
              " before; now they are on device ", device, " (use one Reducer per device)");
  if (!device_) device_ = std::make_unique<DevicePipeline>(*this, device);
  return *device_;
}

void ReducerImpl::sync_host_state() const {
  if (device_ && device_->holds_state()) device_->download_state();
}

void ReducerImpl::allreduce(const std::vector<TensorView>& grads) {
  if (!auto_trial_.active()) return reduce(grads);
  // Switching specs between device steps would move every state through the host; the trial
  // is for host tensors (device tensors keep the model's choice).
  for (const TensorView& g : grads)
    if (!g.is_host()) {
      TW_LOG(info, "auto: the choice is not tried against dense on device tensors; kept");
      put_layers_under(auto_trial_.chosen());
      auto_trial_.cancel();
      return reduce(grads);
    }
  put_layers_under(auto_trial_.next_specs());
  Timer t;
  reduce(grads);
  if (auto_trial_.record(t.seconds(), last_skipped_)) finish_auto_trial();
}

void ReducerImpl::put_layers_under(const std::vector<Config>& specs) {
  bool synced = false;
  for (std::size_t i = 0; i < specs.size() && i < plans_.size(); ++i)
    if (specs[i] != plans_[i].config || plans_[i].spec != specs[i].to_string()) {
      if (!synced && device_) {  // as recalibrate(): plans and their states may change
        sync_host_state();
        device_->invalidate();
        synced = true;
      }
      set_layer_config(i, specs[i]);
    }
}

void ReducerImpl::finish_auto_trial() {
  std::array<double, 4> slowest = auto_trial_.timed();
  with_context(
      [&] {
        transport_.allreduce(slowest.data(), slowest.size(), ElementType::f64, ReduceOp::max);
      },
      [&] { return cat("step ", step_, ": auto's trial, gathering the step times"); });
  const bool keep = model::AutoTrial::keep_chosen(slowest);
  put_layers_under(keep ? auto_trial_.chosen() : auto_trial_.dense());
  TW_LOG(info, "auto trial on real steps (slowest rank's best of 2): dense ",
         std::min(slowest[0], slowest[2]), " s, choice ", std::min(slowest[1], slowest[3]), " s; ",
         keep ? "keeping the choice" : "going dense");
}

void ReducerImpl::reduce(const std::vector<TensorView>& grads_in) {
  Timer total;
  PhaseTimes times;
  int device = -1;
  LocalStatus status = check_tensors(grads_in, &device);
  // Device steps run with the tensors' device current, and leave the caller's as it was.
  std::optional<DeviceGuard> guard;
  if (status.ok && device >= 0) {
    try {
      guard.emplace(device, comm_.rank());
    } catch (const Error& e) {
      status = LocalStatus::failure(e.code(), e.what());
    }
  }
  // Device tensors under features that run on the host only (adaptive, DGC, clipping) are
  // staged through host memory and reduced by the host pipeline.
  std::vector<std::vector<std::uint8_t>> staged_bytes;
  std::vector<TensorView> staged;
  const std::vector<TensorView>* grads = &grads_in;
  bool non_finite = false;
  NanPolicy sum_check = NanPolicy::propagate;
  // Everything local that can go wrong goes into the control exchange, so every rank fails.
  try {
    if (status.ok && device >= 0 && host_only_features()) {
      device_pipeline(device).stage_in(grads_in, staged_bytes, staged);
      grads = &staged;
    }
    const bool on_device = status.ok && grads == &grads_in && device >= 0;
    if (status.ok) {
      if (!on_device) sync_host_state();  // a host step after device steps
      std::vector<std::size_t> first(layers_.size(), kAllFinite);
      if (on_device) {
        first = device_pipeline(device).begin(grads_in);
      } else {
        // A read of every gradient that the sum does not check: local work before the
        // payload, counted as encode.
        ScopedTimer t(&times.encode);
        sum_check = dense_sum_check(plans_, adaptive_ != nullptr);
        for (std::size_t i = 0; i < layers_.size(); ++i)
          if (plans_[i].config.nan != NanPolicy::propagate && !checked_in_sum(plans_[i], sum_check))
            first[i] = first_non_finite((*grads)[i]);
      }
      status = check_finite(first, &non_finite);
    }
  } catch (const Error& e) {
    status = LocalStatus::failure(e.code(), e.what());
  }
  const bool on_device = status.ok && grads == &grads_in && device >= 0;
  std::vector<std::uint64_t> hashes(layers_.size());
  for (std::size_t i = 0; i < layers_.size(); ++i)
    hashes[i] = Hasher()
                    .u64(spec_hashes_[i])
                    .u64(i < grads->size() ? static_cast<std::uint64_t>((*grads)[i].dtype()) : 0xff)
                    .u64(on_device ? 1 : 0)
                    .value();
  AgreementResult agreed;
  {
    ScopedTimer t(&times.comm);
    with_context(
        [&] {
          agreed = check_agreement(
              transport_, "step", status, step_, hashes,
              [&](std::size_t i) {
                return describe(i, grads) + (on_device ? " on a CUDA device" : " in host memory");
              },
              non_finite ? kFlagSkipStep : 0u);
        },
        [&] { return cat("step ", step_, ": control exchange before any payload"); });
  }
  stats_.bytes_sent += agreed.bytes_sent;
  last_skipped_ = (agreed.flags & kFlagSkipStep) != 0;
  if (last_skipped_) {
    // Some rank saw a non-finite gradient under nan=skip: every rank drops the step the
    // same way, zero gradients and untouched error memories, and stays in step.
    if (on_device) {
      device_->zero(grads_in);
    } else {
      for (const TensorView& v : *grads)
        if (v.numel()) std::memset(v.data(), 0, v.bytes());
      if (grads != &grads_in) device_->stage_out(staged_bytes, grads_in);
    }
    count_skipped_step(times, "a rank had a non-finite gradient");
    stats_.seconds_total += total.seconds();
    return;
  }
  run_step(*grads, on_device, sum_check, times);  // propagate unless a host step set it
  if (grads != &grads_in) device_->stage_out(staged_bytes, grads_in);
  stats_.seconds_total += total.seconds();
}

void ReducerImpl::run_step(const std::vector<TensorView>& grads, bool on_device,
                           NanPolicy sum_check, PhaseTimes& times) {
  const int p = comm_.size();
  std::vector<StepLayer> step_layers(layers_.size());
  std::vector<StepLayer*> by_route[4];
  StepContext ctx{transport_, comm_.rank(), p, step_, &times};
  {
    ScopedTimer t(&times.encode);
    bool clip = false;
    std::vector<StepLayer*> all;
    for (std::size_t i = 0; i < layers_.size(); ++i) {
      StepLayer& sl = step_layers[i];
      LayerState& state = states_[i];
      sl.index = static_cast<std::uint32_t>(i);
      sl.name = &layers_[i].name;
      sl.plan = &plans_[i];
      sl.state = &state;
      sl.n = plans_[i].numel;
      sl.dtype = grads[i].dtype();
      if (sl.n == 0 || on_device) continue;  // nothing to move / the device pipeline's part
      if (sl.dtype == DType::f32) {
        sl.g = static_cast<float*>(grads[i].data());
      } else {
        state.gradient32.resize(sl.n);
        to_f32(grads[i], state.gradient32.data());
        sl.g = state.gradient32.data();
      }
      clip = clip || plans_[i].config.clip > 0.0;
      all.push_back(&sl);
    }
    if (on_device) device_->prepare(grads, step_layers, times);
    // DGC's local clipping comes first: error feedback accumulates clipped gradients.
    if (clip) clip_gradients(all, p);
  }
  if (adaptive_ && adaptive_->due(step_)) adapt(step_layers, ctx);
  {
    ScopedTimer t(&times.encode);
    for (std::size_t i = 0; i < layers_.size(); ++i) {
      StepLayer& sl = step_layers[i];
      const LayerPlan& plan = plans_[i];
      LayerState& state = states_[i];
      if (sl.n == 0) continue;
      sl.route = plan.route;
      sl.check_in_sum = checked_in_sum(plan, sum_check);
      if (plan.route != Route::dense && step_ < plan.config.warmup) {
        sl.route = Route::dense;  // warm-up: uncompressed, error memories untouched
      } else if (plan.route != Route::dense && plan.config.ef == ErrorFeedback::econtrol &&
                 !state.econtrol_started) {
        sl.route = Route::dense;
        sl.feedback = StepFeedback::econtrol_first;
      } else if (plan.route != Route::dense) {
        sl.feedback = plan.config.ef == ErrorFeedback::ef         ? StepFeedback::ef
                      : plan.config.ef == ErrorFeedback::econtrol ? StepFeedback::econtrol
                                                                  : StepFeedback::none;
      }
      if (sl.route == Route::topk && step_ < plan.config.dgc_warmup) {
        // DGC's density warm-up: this step's density, a function of the step alone.
        LayerPlan& warm = warm_plans_[i];
        warm = plan;
        warm.config.density =
            dgc_warmup_density(plan.config.density, plan.config.dgc_warmup, step_);
        warm.codec = codec_for(warm.config);
        sl.plan = &warm;
      }
      by_route[static_cast<int>(sl.route)].push_back(&sl);
    }
  }

  const std::pair<Route, Algorithm*> algorithms[] = {{Route::dense, &dense_},
                                                     {Route::topk, &sparse_},
                                                     {Route::two_phase, &two_phase_},
                                                     {Route::low_rank, &low_rank_}};
  for (const auto& entry : algorithms) {
    // Not a structured binding: clang < 16 cannot capture those in the lambdas below.
    const Route route = entry.first;
    Algorithm* const algorithm = entry.second;
    const std::vector<StepLayer*>& layers = by_route[static_cast<int>(route)];
    with_context(
        [&] {
          if (on_device)
            device_->run_route(route, layers);
          else
            algorithm->run(layers, ctx);
        },
        [&] {
          return cat("step ", step_, ": ", to_string(route), " route, layers ", layer_list(layers));
        });
    // The dense route runs first, so a skip here leaves every error memory untouched.
    if (route == Route::dense && sum_check != NanPolicy::propagate &&
        non_finite_in_sum(step_layers, grads, sum_check, times))
      return;
  }

  {
    ScopedTimer t(&times.decode);
    if (on_device) {
      with_context([&] { device_->finish(grads, step_layers); },
                   [&] { return cat("step ", step_, ": waiting for the device"); });
    } else {
      for (StepLayer& sl : step_layers)  // DGC: ordinary momentum where the layer went dense
        if (sl.n && sl.route == Route::dense && sl.plan->config.dgc) dgc_dense_momentum(sl);
      for (std::size_t i = 0; i < layers_.size(); ++i)
        if (step_layers[i].n && grads[i].dtype() != DType::f32)
          from_f32(step_layers[i].g, grads[i]);
      if (device_) device_->invalidate();  // host states_ moved on
    }
  }

  ++step_;
  ++stats_.steps;
  stats_.seconds_encode += times.encode;
  stats_.seconds_comm += times.comm;
  stats_.seconds_decode += times.decode;
  for (std::size_t i = 0; i < layers_.size(); ++i) {
    const StepLayer& sl = step_layers[i];
    LayerStats& ls = stats_.layers[i];
    ls.spec = plans_[i].spec;
    ls.route = sl.n ? route_name(sl) : "empty";
    ls.bytes_sent += sl.bytes_sent;
    ls.bytes_dense += allreduce_bytes(4 * sl.n, p);
    ls.sq_error += sl.sq_error;
    ls.sq_norm += sl.sq_norm;
    ls.last_sq_error = sl.sq_error;
    ls.last_sq_norm = sl.sq_norm;
    stats_.bytes_sent += sl.bytes_sent;
    stats_.bytes_dense += allreduce_bytes(4 * sl.n, p);
  }
  TW_LOG(trace, "step ", step_ - 1, ": encode ", times.encode, " s, comm ", times.comm,
         " s, decode ", times.decode, " s");
}

bool ReducerImpl::non_finite_in_sum(const std::vector<StepLayer>& step_layers,
                                    const std::vector<TensorView>& grads, NanPolicy sum_check,
                                    const PhaseTimes& times) {
  // Every rank holds the same answer (the average's bits, or the ring's notes), so every
  // rank takes the same branch without another exchange.
  const StepLayer* hit = nullptr;
  for (const StepLayer& sl : step_layers)
    if (sl.check_in_sum && sl.non_finite_at != kAllFinite) {
      hit = &sl;  // one checked average per step: at most one layer holds its answer
      break;
    }
  if (!hit) return false;
  const std::string where =
      hit->non_finite_rank >= 0
          ? cat("layer ", hit->index, " '", *hit->name, "' has a non-finite gradient (NaN or ",
                "infinity) on rank ", hit->non_finite_rank, " at element ", hit->non_finite_at)
          : cat("layer ", hit->index, " '", *hit->name, "' has a non-finite average (NaN or ",
                "infinity) at element ", hit->non_finite_at,
                ": a rank's gradient was, or the sum overflowed");
  if (sum_check == NanPolicy::error)
    fail_with(ErrorCode::invalid_argument, "reducer", comm_.rank(), where,
              "; nan=error stops here, nan=skip would drop the step (found while averaging the ",
              "dense layers, after their payload moved; no compressed layer was touched)");
  for (const TensorView& v : grads)
    if (v.numel()) std::memset(v.data(), 0, v.bytes());
  count_skipped_step(times, where);
  return true;
}

void ReducerImpl::count_skipped_step(const PhaseTimes& times, const std::string& why) {
  last_skipped_ = true;
  TW_LOG(warn, "step ", step_, " skipped: ", why, " (nan=skip)");
  ++step_;
  ++stats_.steps;
  ++stats_.skipped_steps;
  // Its time so far: the check before the step (encode), the control exchange and, when the
  // dense sum found it, that sum.
  stats_.seconds_encode += times.encode;
  stats_.seconds_comm += times.comm;
  stats_.seconds_decode += times.decode;
}

void ReducerImpl::adapt(std::vector<StepLayer>& step_layers, StepContext& ctx) {
  std::uint64_t bytes = 0;
  with_context(
      [&] {
        ScopedTimer t(&ctx.times->encode);  // mostly the local measurements
        adaptive_->decide(step_layers, ctx, &bytes);
      },
      [&] { return cat("step ", step_, ": adaptive statistics exchange"); });
  stats_.bytes_sent += bytes;
  const std::vector<std::size_t>& choice = adaptive_->choices();
  for (std::size_t i = 0; i < layers_.size(); ++i) {
    const Config& c = adaptive_->config_of(choice[i]);
    if (c == plans_[i].config) continue;
    TW_LOG(info, "adaptive: step ", step_, " layer '", layers_[i].name, "' ", plans_[i].spec,
           " -> ", c.to_string());
    set_layer_config(i, c);
  }
}

}  // namespace detail

Reducer::Reducer(Communicator comm, std::vector<Layer> layers, Config config)
    : impl_(std::make_unique<detail::ReducerImpl>(std::move(comm), std::move(layers), config)) {}

namespace {
std::unique_ptr<detail::ReducerImpl> impl_for_spec(Communicator comm, std::vector<Layer> layers,
                                                   const std::string& spec) {
  Config config;
  detail::LocalStatus pending;
  try {
    config = Config::parse(spec);
  } catch (const Error& e) {
    pending = detail::LocalStatus::failure(e.code(), e.what());
  }
  return std::make_unique<detail::ReducerImpl>(std::move(comm), std::move(layers), config,
                                               std::move(pending));
}
}  // namespace

Reducer::Reducer(Communicator comm, std::vector<Layer> layers, const std::string& spec)
    : impl_(impl_for_spec(std::move(comm), std::move(layers), spec)) {}
Reducer::~Reducer() = default;
Reducer::Reducer(Reducer&&) noexcept = default;
Reducer& Reducer::operator=(Reducer&&) noexcept = default;

void Reducer::allreduce(const std::vector<TensorView>& grads) {
  impl_->allreduce(grads);
}

Stats Reducer::stats() const {
  return impl_->stats_;
}

bool Reducer::last_step_skipped() const {
  return impl_->last_skipped_;
}

void Reducer::save_state(std::ostream& out) const {
  impl_->sync_host_state();
  impl_->save_state(out);
}
void Reducer::load_state(std::istream& in) {
  impl_->sync_host_state();
  impl_->load_state(in);
  if (impl_->device_) impl_->device_->invalidate();
}

void Reducer::recalibrate() {
  if (impl_->config_.method != Method::automatic) return;
  impl_->sync_host_state();
  if (impl_->device_) impl_->device_->invalidate();  // plans and their states may change
  detail::model::apply_auto(*impl_);
}

void Reducer::reset_stats() {
  detail::ReducerImpl& r = *impl_;
  const Stats fresh_layers = r.stats_;
  r.stats_ = Stats();
  r.stats_.layers = fresh_layers.layers;
  for (LayerStats& l : r.stats_.layers) {
    l.bytes_sent = l.bytes_dense = 0;
    l.sq_error = l.sq_norm = l.last_sq_error = l.last_sq_norm = 0.0;
  }
}

const std::vector<Layer>& Reducer::layers() const {
  return impl_->layers_;
}
std::string Reducer::layer_spec(std::size_t i) const {
  if (i >= impl_->plans_.size())
    detail::fail_with(ErrorCode::invalid_argument, "reducer", impl_->comm_.rank(), "layer_spec(", i,
                      "): only ", impl_->plans_.size(), " layers");
  return impl_->plans_[i].spec;
}
const Config& Reducer::config() const {
  return impl_->config_;
}
const Communicator& Reducer::communicator() const {
  return impl_->comm_;
}
std::size_t Reducer::step() const {
  return impl_->step_;
}

}  // namespace thinwire
