// DevicePipeline: the Reducer's step on CUDA device tensors.
//
// The same pipeline as the host's (reducer/reducer.cpp, algorithm/*.cpp), with every
// element-wise pass, encode and decode a kernel (kernels/launch.hpp) on one stream of the
// Reducer's and payloads moving over the Communicator's device transport (NCCL, or staged
// through pinned host memory over MPI). Payloads are the host backend's wire format, byte for
// byte where DESIGN.md says so.
//
// Within a step the host waits for the device twice: after the non-finite check (its result
// goes into the control exchange before any payload) and at the end, when the decoders'
// status slots and the error statistics are read and the step's collectives are known to
// have completed within the deadline. A decoder that rejects a payload records it in its
// layer's slot and writes nothing; every rank sees the same gathered bytes, so every rank
// raises the same Error at the end of the step.
//
// Error-feedback state (e, h, H, server error, Q) lives on the device while device steps
// run; the host copies in LayerState are brought up to date on demand (checkpoints, a host
// step, re-calibration) and uploaded again after a checkpoint is loaded.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "device/device_memory.hpp"
#include "reducer/step.hpp"
#include "thinwire/tensor_view.hpp"

namespace thinwire::detail {

class ReducerImpl;
class DeviceTransport;

// What one layer carries from step to step on the device (LayerState's device twin).
struct DeviceLayerState {
  DeviceFloats error, h, global, server_error, q;
  DeviceFloats input;  // scratch: EControl's compressor input
};

// The per-step context the device algorithms share.
struct DeviceStep {
  DeviceTransport* transport = nullptr;
  void* stream = nullptr;
  void* blas = nullptr;
  int rank = 0, size = 1;
  std::uint64_t step = 0;
  PhaseTimes* times = nullptr;
  // Per layer (by StepLayer::index): the decoders' status slot, and {sq_error, sq_norm}.
  void* status = nullptr;   // kernels::DecodeStatus[layers]
  double* stats = nullptr;  // [2 * layers]
  std::vector<DeviceLayerState>* states = nullptr;
};

// The device algorithms (device_algorithms.cpp), one per route, as the host's Algorithm
// classes. Each keeps its buffers across steps.
class DeviceAlgorithms {
 public:
  void dense(const std::vector<StepLayer*>& layers, DeviceStep& ctx);
  void topk(const std::vector<StepLayer*>& layers, DeviceStep& ctx);
  void two_phase(const std::vector<StepLayer*>& layers, DeviceStep& ctx);
  void low_rank(const std::vector<StepLayer*>& layers, DeviceStep& ctx);

 private:
  DeviceBuffer send_, recv_, gather_send_, gather_recv_, workspace_, scratch_, p_, q_, q_local_;
  // low_rank(): the pointer arrays of the batched products (layers of one shape), written
  // into pinned memory once per step and copied to the device before the first product. The
  // step's end synchronises the stream before the next step writes them again.
  PinnedBuffer batch_host_;
  DeviceBuffer batch_device_;
};

// Its callers make the device current (ReducerImpl::allreduce holds a DeviceGuard for the
// whole step; download_state() takes its own, as checkpoints call it outside a step).
class DevicePipeline {
 public:
  DevicePipeline(ReducerImpl& reducer, int device);
  ~DevicePipeline();
  int device() const { return device_; }

  // Step start, before the control exchange: orders the reducer's stream after every
  // tensor's stream, and returns for each layer the index of its first non-finite element
  // (or kAllFinite) where the layer's nan policy looks (waits for the device).
  std::vector<std::size_t> begin(const std::vector<TensorView>& grads);
  // nan=skip dropped the step: zero gradients, state untouched.
  void zero(const std::vector<TensorView>& grads);

  // The step proper, after the control exchange agreed:
  // prepare() points each StepLayer's g at an f32 gradient on the device (converting
  // f16/bf16) and readies state and status slots; run_route() runs one route's algorithm;
  // finish() writes f16/bf16 results back, waits for the step (within the deadline), raises
  // what a decoder rejected and fills each StepLayer's error statistics.
  void prepare(const std::vector<TensorView>& grads, std::vector<StepLayer>& layers,
               PhaseTimes& times);
  void run_route(Route route, const std::vector<StepLayer*>& layers);
  void finish(const std::vector<TensorView>& grads, std::vector<StepLayer>& layers);

  // Staging for the features that run on the host only (adaptive, DGC, clip): copies the
  // tensors to host memory and back, on the reducer's stream.
  void stage_in(const std::vector<TensorView>& grads, std::vector<std::vector<std::uint8_t>>& host,
                std::vector<TensorView>& views);
  void stage_out(const std::vector<std::vector<std::uint8_t>>& host,
                 const std::vector<TensorView>& grads);

  // State: the device copy is current after a device step; these move it.
  void download_state();  // device -> ReducerImpl::states_ (the device copy stays current)
  void invalidate();      // host states changed (a checkpoint was loaded): upload at next step
  bool holds_state() const { return device_current_; }

 private:
  void upload_state();

  ReducerImpl& r_;
  int device_;
  int rank_;
  DeviceStream stream_;
  DeviceTransport* transport_ = nullptr;
  DeviceAlgorithms algorithms_;
  DeviceStep ctx_;
  void* blas_ = nullptr;
  std::vector<DeviceLayerState> states_;
  std::vector<DeviceFloats> gradient32_;  // f32 copies of f16/bf16 gradients
  DeviceBuffer status_, stats_, first_;
  PinnedBuffer host_status_, host_stats_, host_first_;
  bool device_current_ = false;  // the device holds the current state (host copies may lag)
  // False from prepare() until finish() waited for the step: a step that threw may have
  // left work (copies from pinned buffers the next step rewrites) on the stream.
  bool step_drained_ = true;
};

}  // namespace thinwire::detail
