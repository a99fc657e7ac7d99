#include "device/device_pipeline.hpp"

#include <limits>
#include <set>

#include "common/fail.hpp"
#include "common/half.hpp"
#include "compress/wire_format.hpp"
#include "launch.hpp"
#include "reducer/non_finite.hpp"
#include "reducer/reducer_impl.hpp"
#include "transport/communicator_state.hpp"
#include "transport/device_transport.hpp"

namespace thinwire::detail {

namespace {

// What a decoder's status code means, for the Error every rank raises.
std::string describe_status(const kernels::DecodeStatus& s) {
  switch (s.code) {
    case kernels::kDecodeBadMagic:
      return cat("bad magic or version (0x", std::hex, s.detail, ")");
    case kernels::kDecodeBadMethod:
      return cat("method byte ", s.detail);
    case kernels::kDecodeBadN:
      return cat("n = ", s.detail, " differs from the layer's");
    case kernels::kDecodeBadParam:
      return cat("param = ", s.detail, " differs from the spec's");
    case kernels::kDecodeBadAux:
      return cat("bucket = ", s.detail, " differs from the spec's");
    case kernels::kDecodeBadBody:
      return cat("body of ", s.detail, " bytes, not the size the spec gives");
    case kernels::kDecodeBadIndex:
      return cat("index at position ", s.detail, " is out of range or not increasing");
    case kernels::kDecodeBadCode:
      return cat("code at element ", s.detail, " is out of range");
    default:
      return cat("status code ", s.code, " (detail ", s.detail, ")");
  }
}

}  // namespace

DevicePipeline::DevicePipeline(ReducerImpl& reducer, int device)
    : r_(reducer), device_(device), rank_(reducer.comm_.rank()), stream_(reducer.comm_.rank()) {
  const std::string err = kernels::blas_create(&blas_);
  check_device(err, "creating the cuBLAS handle", rank_);
  states_.resize(r_.layers_.size());
  gradient32_.resize(r_.layers_.size());
}

DevicePipeline::~DevicePipeline() {
  // The Communicator's device transport outlives this Reducer: leave it no dangling stream.
  if (transport_ && transport_->stream() == stream_.get()) transport_->set_stream(nullptr);
  if (blas_) kernels::blas_destroy(blas_);
}

std::vector<std::size_t> DevicePipeline::begin(const std::vector<TensorView>& grads) {
  std::set<void*> streams;
  for (const TensorView& v : grads) streams.insert(v.stream());
  for (void* s : streams) stream_.wait_for(s, rank_);

  const std::size_t layers = grads.size();
  std::vector<std::size_t> first(layers, kAllFinite);
  bool look = false;
  for (std::size_t i = 0; i < layers; ++i)
    look = look || r_.plans_[i].config.nan != NanPolicy::propagate;
  if (!look) return first;
  first_.reserve(layers * sizeof(std::uint64_t), rank_);
  host_first_.reserve(layers * sizeof(std::uint64_t), rank_);
  auto* host = host_first_.as<std::uint64_t>();
  auto* dev = first_.as<std::uint64_t>();
  for (std::size_t i = 0; i < layers; ++i) host[i] = std::numeric_limits<std::uint64_t>::max();
  check_device(kernels::copy_async(dev, host, layers * sizeof(std::uint64_t), stream_.get()),
               "copy", rank_);
  for (std::size_t i = 0; i < layers; ++i) {
    if (r_.plans_[i].config.nan == NanPolicy::propagate || grads[i].numel() == 0) continue;
    check_device(kernels::first_non_finite(grads[i].data(), grads[i].dtype(), grads[i].numel(),
                                           dev + i, stream_.get()),
                 "first_non_finite", rank_);
  }
  check_device(kernels::copy_async(host, dev, layers * sizeof(std::uint64_t), stream_.get()),
               "copy", rank_);
  stream_.synchronize(rank_);
  for (std::size_t i = 0; i < layers; ++i)
    if (host[i] < grads[i].numel()) first[i] = static_cast<std::size_t>(host[i]);
  return first;
}

void DevicePipeline::zero(const std::vector<TensorView>& grads) {
  for (const TensorView& v : grads)
    check_device(kernels::zero_async(v.data(), v.bytes(), stream_.get()), "zero", rank_);
  stream_.synchronize(rank_);
}

void DevicePipeline::prepare(const std::vector<TensorView>& grads, std::vector<StepLayer>& layers,
                             PhaseTimes& times) {
  if (!step_drained_) stream_.synchronize(rank_);  // the last step ended in an error
  step_drained_ = false;
  if (!device_current_) upload_state();
  const std::size_t n_layers = layers.size();
  status_.reserve(n_layers * sizeof(kernels::DecodeStatus), rank_);
  stats_.reserve(2 * n_layers * sizeof(double), rank_);
  check_device(
      kernels::zero_async(status_.get(), n_layers * sizeof(kernels::DecodeStatus), stream_.get()),
      "zero", rank_);
  check_device(kernels::zero_async(stats_.get(), 2 * n_layers * sizeof(double), stream_.get()),
               "zero", rank_);
  for (std::size_t i = 0; i < n_layers; ++i) {
    StepLayer& sl = layers[i];
    if (sl.n == 0) continue;
    if (sl.dtype == DType::f32) {
      sl.g = static_cast<float*>(grads[i].data());
    } else {
      sl.g = gradient32_[i].resize(sl.n, rank_);
      check_device(kernels::half_to_float(static_cast<const std::uint16_t*>(grads[i].data()), sl.g,
                                          sl.n, sl.dtype == DType::bf16, stream_.get()),
                   "half_to_float", rank_);
    }
  }
  transport_ = &r_.comm_.state()->device_transport(device_);
  transport_->set_stream(stream_.get());
  ctx_ = DeviceStep{};
  ctx_.transport = transport_;
  ctx_.stream = stream_.get();
  ctx_.blas = blas_;
  ctx_.rank = rank_;
  ctx_.size = r_.comm_.size();
  ctx_.step = r_.step_;
  ctx_.times = &times;
  ctx_.status = status_.get();
  ctx_.stats = stats_.as<double>();
  ctx_.states = &states_;
}

void DevicePipeline::run_route(Route route, const std::vector<StepLayer*>& layers) {
  switch (route) {
    case Route::dense:
      algorithms_.dense(layers, ctx_);
      break;
    case Route::topk:
      algorithms_.topk(layers, ctx_);
      break;
    case Route::two_phase:
      algorithms_.two_phase(layers, ctx_);
      break;
    case Route::low_rank:
      algorithms_.low_rank(layers, ctx_);
      break;
  }
}

void DevicePipeline::finish(const std::vector<TensorView>& grads, std::vector<StepLayer>& layers) {
  const std::size_t n_layers = layers.size();
  for (std::size_t i = 0; i < n_layers; ++i) {
    const StepLayer& sl = layers[i];
    if (sl.n == 0 || sl.dtype == DType::f32) continue;
    check_device(kernels::float_to_half(sl.g, static_cast<std::uint16_t*>(grads[i].data()), sl.n,
                                        sl.dtype == DType::bf16, stream_.get()),
                 "float_to_half", rank_);
  }
  host_status_.reserve(n_layers * sizeof(kernels::DecodeStatus), rank_);
  host_stats_.reserve(2 * n_layers * sizeof(double), rank_);
  check_device(kernels::copy_async(host_status_.get(), status_.get(),
                                   n_layers * sizeof(kernels::DecodeStatus), stream_.get()),
               "copy", rank_);
  check_device(kernels::copy_async(host_stats_.get(), stats_.get(), 2 * n_layers * sizeof(double),
                                   stream_.get()),
               "copy", rank_);
  // The step's collectives complete within the deadline, or the transport aborts and says so.
  transport_->synchronize("the step's collectives");
  stream_.synchronize(rank_);
  step_drained_ = true;
  device_current_ = true;

  const auto* status = host_status_.as<kernels::DecodeStatus>();
  for (std::size_t i = 0; i < n_layers; ++i) {
    const kernels::DecodeStatus& s = status[i];
    if (s.code == kernels::kDecodeOk) continue;
    const char* method = to_string(layers[i].plan->config.method);
    if (s.code == kernels::kDecodePoisoned)
      fail_with(ErrorCode::invalid_argument, "codec", rank_, "rank ", s.from_rank, " rejected a ",
                method, " payload it serves for layer '", r_.layers_[i].name,
                "', so every rank stops this step (", describe_status({s.code, 0, 0}),
                ": server's code ", s.detail, ")");
    fail_with(ErrorCode::invalid_argument, "codec", rank_, "corrupt ", method,
              " payload from rank ", s.from_rank, " for layer '", r_.layers_[i].name,
              "': ", describe_status(s));
  }
  const double* stats = host_stats_.as<double>();
  for (std::size_t i = 0; i < n_layers; ++i) {
    StepLayer& sl = layers[i];
    if (sl.n == 0 || sl.route == Route::dense) continue;
    sl.sq_error = stats[2 * i];
    sl.sq_norm = stats[2 * i + 1];
  }
}

void DevicePipeline::stage_in(const std::vector<TensorView>& grads,
                              std::vector<std::vector<std::uint8_t>>& host,
                              std::vector<TensorView>& views) {
  std::set<void*> streams;
  for (const TensorView& v : grads) streams.insert(v.stream());
  for (void* s : streams) stream_.wait_for(s, rank_);
  host.resize(grads.size());
  views.clear();
  for (std::size_t i = 0; i < grads.size(); ++i) {
    const TensorView& v = grads[i];
    host[i].resize(v.bytes());
    check_device(kernels::copy_async(host[i].data(), v.data(), v.bytes(), stream_.get()), "copy",
                 rank_);
    views.push_back(TensorView::host(host[i].data(), v.numel(), v.dtype()));
  }
  stream_.synchronize(rank_);
}

void DevicePipeline::stage_out(const std::vector<std::vector<std::uint8_t>>& host,
                               const std::vector<TensorView>& grads) {
  for (std::size_t i = 0; i < grads.size(); ++i)
    check_device(
        kernels::copy_async(grads[i].data(), host[i].data(), grads[i].bytes(), stream_.get()),
        "copy", rank_);
  stream_.synchronize(rank_);
}

namespace {

void upload(DeviceFloats& dev, const std::vector<float>& host, void* stream, int rank) {
  if (host.empty()) {
    dev.clear();
    return;
  }
  check_device(kernels::copy_async(dev.resize(host.size(), rank), host.data(),
                                   host.size() * sizeof(float), stream),
               "uploading state", rank);
}

void download(const DeviceFloats& dev, std::vector<float>& host, void* stream, int rank) {
  host.resize(dev.size());
  check_device(kernels::copy_async(host.data(), dev.data(), dev.size() * sizeof(float), stream),
               "downloading state", rank);
}

}  // namespace

void DevicePipeline::upload_state() {
  for (std::size_t i = 0; i < states_.size(); ++i) {
    LayerState& s = r_.states_[i];
    DeviceLayerState& d = states_[i];
    if (!s.onebit_error.empty()) {  // the host keeps 1-bit memories factored: upload e itself
      s.error.resize(s.onebit_error.size());
      s.onebit_error.materialize(s.error.data());
      s.onebit_error.clear();
    }
    upload(d.error, s.error, stream_.get(), rank_);
    upload(d.h, s.h, stream_.get(), rank_);
    upload(d.global, s.global, stream_.get(), rank_);
    upload(d.server_error, s.server_error, stream_.get(), rank_);
    upload(d.q, s.q, stream_.get(), rank_);
  }
  stream_.synchronize(rank_);  // the host vectors may change once this returns
  device_current_ = true;
}

void DevicePipeline::download_state() {
  if (!device_current_) return;
  DeviceGuard guard(device_, rank_);  // also called outside a step (checkpoints)
  for (std::size_t i = 0; i < states_.size(); ++i) {
    LayerState& s = r_.states_[i];
    const DeviceLayerState& d = states_[i];
    s.onebit_error.clear();
    download(d.error, s.error, stream_.get(), rank_);
    download(d.h, s.h, stream_.get(), rank_);
    download(d.global, s.global, stream_.get(), rank_);
    download(d.server_error, s.server_error, stream_.get(), rank_);
    download(d.q, s.q, stream_.get(), rank_);
  }
  stream_.synchronize(rank_);
}

void DevicePipeline::invalidate() {
  device_current_ = false;
}

}  // namespace thinwire::detail
