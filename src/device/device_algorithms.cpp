// The device algorithms: the host's DenseAllreduce, SparseAllgather, TwoPhase and
// LowRankAllreduce (algorithm/*.cpp) step for step, with kernels for the passes over the
// numbers and the device transport for the collectives. Comments here say only where the
// device differs; the host files say why each step is there.
#include <algorithm>
#include <map>
#include <tuple>

#include "algorithm/two_phase.hpp"
#include "common/bytes.hpp"
#include "common/timer.hpp"
#include "compress/topk_codec.hpp"
#include "device/device_pipeline.hpp"
#include "launch.hpp"
#include "reducer/layer_state.hpp"
#include "transport/device_transport.hpp"

namespace thinwire::detail {

namespace {

void ok(const std::string& err, const char* what, const DeviceStep& ctx) {
  check_device(err, what, ctx.rank);
}

DeviceLayerState& state_of(const StepLayer& sl, DeviceStep& ctx) {
  return (*ctx.states)[sl.index];
}
kernels::DecodeStatus* status_of(const StepLayer& sl, const DeviceStep& ctx) {
  return static_cast<kernels::DecodeStatus*>(ctx.status) + sl.index;
}
double* stats_of(const StepLayer& sl, const DeviceStep& ctx) {
  return ctx.stats + 2 * static_cast<std::size_t>(sl.index);
}
float eta_of(const StepLayer& sl) {
  return static_cast<float>(sl.plan->config.eta);
}

void copy_floats(float* dst, const float* src, std::size_t n, const DeviceStep& ctx) {
  ok(kernels::copy_async(dst, src, n * sizeof(float), ctx.stream), "copy", ctx);
}

// error_feedback.cpp's prepare_input(), after_encode() and finish() on the device.
void prepare_input(StepLayer& sl, DeviceStep& ctx) {
  DeviceLayerState& s = state_of(sl, ctx);
  const std::size_t n = sl.n;
  switch (sl.feedback) {
    case StepFeedback::none:
    case StepFeedback::econtrol_first:
      sl.x = sl.g;
      sl.want_residual = false;
      break;
    case StepFeedback::ef: {
      float* e = s.error.ensure(n, ctx.stream, ctx.rank);
      ok(kernels::ef_accumulate(e, sl.g, n, ctx.stream), "ef_accumulate", ctx);
      sl.x = e;
      sl.want_residual = true;
      break;
    }
    case StepFeedback::econtrol: {
      const float* e = s.error.ensure(n, ctx.stream, ctx.rank);
      const float* h = s.h.ensure(n, ctx.stream, ctx.rank);
      float* x = s.input.resize(n, ctx.rank);
      ok(kernels::econtrol_input(x, e, sl.g, h, eta_of(sl), n, ctx.stream), "econtrol_input", ctx);
      sl.x = x;
      sl.want_residual = true;
      break;
    }
  }
}

void after_encode(StepLayer& sl, DeviceStep& ctx) {
  DeviceLayerState& s = state_of(sl, ctx);
  const std::size_t n = sl.n;
  if (sl.feedback == StepFeedback::econtrol_first) {
    copy_floats(s.h.resize(n, ctx.rank), sl.g, n, ctx);
    s.error.ensure(n, ctx.stream, ctx.rank);
  } else if (sl.feedback == StepFeedback::econtrol) {
    ok(kernels::econtrol_after_encode(s.error.data(), s.h.data(), sl.g, sl.x, eta_of(sl), n,
                                      ctx.stream),
       "econtrol_after_encode", ctx);
  }
}

void finish(StepLayer& sl, DeviceStep& ctx) {
  DeviceLayerState& s = state_of(sl, ctx);
  if (sl.feedback == StepFeedback::econtrol_first) {
    copy_floats(s.global.resize(sl.n, ctx.rank), sl.g, sl.n, ctx);
    sl.state->econtrol_started = true;
  } else if (sl.feedback == StepFeedback::econtrol) {
    ok(kernels::econtrol_finish(s.global.ensure(sl.n, ctx.stream, ctx.rank), sl.g, sl.n,
                                ctx.stream),
       "econtrol_finish", ctx);
  }
}

// What an encoder reads and where its residual goes. Under error feedback the sum
// x = e + g is fused into the encoder's first pass and e becomes the residual (the host's
// encode_ef / OnebitErrorMemory); otherwise the input prepare_input() leaves.
struct EncoderInput {
  float* x;
  const float* g;
  float* residual;
};
EncoderInput encoder_input(StepLayer& sl, DeviceStep& ctx) {
  if (sl.feedback == StepFeedback::ef) {
    sl.x = state_of(sl, ctx).error.ensure(sl.n, ctx.stream, ctx.rank);
    sl.want_residual = true;
    return {sl.x, sl.g, sl.x};
  }
  prepare_input(sl, ctx);
  return {sl.x, nullptr, sl.want_residual ? sl.x : nullptr};
}

kernels::ChunkCodec chunk_codec(const Config& c) {
  kernels::ChunkCodec codec;
  codec.method = static_cast<std::uint8_t>(c.method);
  codec.bits = c.bits;
  codec.bucket = c.bucket;
  codec.contractive = c.ef != ErrorFeedback::none;
  return codec;
}

std::uint8_t* bytes_at(const DeviceBuffer& b, std::size_t offset) {
  return b.as<std::uint8_t>() + offset;
}

// low_rank(): a group of same-shaped layers reconstructs at most this many floats at once (or
// one layer), so that batching does not grow the scratch beyond max(this, the largest layer).
constexpr std::size_t kReconstructFloats = std::size_t{1} << 24;  // 64 MiB

}  // namespace

void DeviceAlgorithms::dense(const std::vector<StepLayer*>& layers, DeviceStep& ctx) {
  if (layers.empty()) return;
  const float p = static_cast<float>(ctx.size);
  std::size_t total = 0;
  for (StepLayer* sl : layers) total += sl->n;
  const bool in_place = layers.size() == 1;
  float* buf = nullptr;
  {
    ScopedTimer t(&ctx.times->encode);
    for (StepLayer* sl : layers) prepare_input(*sl, ctx);
    if (in_place) {
      buf = layers[0]->x;
    } else {
      send_.reserve(total * sizeof(float), ctx.rank);
      buf = send_.as<float>();
      std::size_t off = 0;
      for (StepLayer* sl : layers) {
        copy_floats(buf + off, sl->x, sl->n, ctx);
        off += sl->n;
      }
    }
    for (StepLayer* sl : layers) after_encode(*sl, ctx);
  }
  {
    ScopedTimer t(&ctx.times->comm);
    ctx.transport->allreduce(buf, total, ElementType::f32, ReduceOp::sum);
  }
  ScopedTimer t(&ctx.times->decode);
  std::size_t off = 0;
  for (StepLayer* sl : layers) {
    ok(kernels::divide(sl->g, buf + off, p, sl->n, ctx.stream), "divide", ctx);
    off += sl->n;
    sl->bytes_sent = allreduce_bytes(4 * sl->n, ctx.size);
    finish(*sl, ctx);
  }
}

void DeviceAlgorithms::topk(const std::vector<StepLayer*>& layers, DeviceStep& ctx) {
  if (layers.empty()) return;
  const std::size_t pu = static_cast<std::size_t>(ctx.size);
  std::vector<std::size_t> offset(layers.size() + 1, 0), ks(layers.size());
  std::size_t workspace = 0;
  for (std::size_t l = 0; l < layers.size(); ++l) {
    const StepLayer& sl = *layers[l];
    ks[l] = topk_count(sl.plan->config.density, sl.n);
    offset[l + 1] = offset[l] + sl.plan->codec->encoded_bytes(sl.n);
    workspace = std::max(workspace, kernels::topk_workspace_bytes(sl.n, ks[l]));
  }
  const std::size_t block = offset.back();
  send_.reserve(block, ctx.rank);
  recv_.reserve(block * pu, ctx.rank);
  workspace_.reserve(workspace, ctx.rank);
  {
    ScopedTimer t(&ctx.times->encode);
    for (std::size_t l = 0; l < layers.size(); ++l) {
      StepLayer& sl = *layers[l];
      const Config& c = sl.plan->config;
      kernels::TopkEncode a;
      const EncoderInput in = encoder_input(sl, ctx);
      a.x = in.x;
      a.g = in.g;
      a.residual = in.residual;
      a.n = sl.n;
      a.k = ks[l];
      a.sampled = c.select == Selection::sampled;
      a.seed = c.seed;
      a.step = ctx.step;
      a.layer = sl.index;
      a.rank = static_cast<std::uint32_t>(ctx.rank);
      a.dtype = sl.dtype;
      a.out = bytes_at(send_, offset[l]);
      a.stats = stats_of(sl, ctx);
      a.workspace = workspace_.get();
      a.workspace_bytes = workspace_.capacity();
      ok(kernels::topk_encode(a, ctx.stream), "topk_encode", ctx);
      sl.bytes_sent = allgather_bytes(offset[l + 1] - offset[l], ctx.size);
      after_encode(sl, ctx);
    }
  }
  {
    ScopedTimer t(&ctx.times->comm);
    ctx.transport->allgather(send_.get(), recv_.get(), block);
  }
  ScopedTimer t(&ctx.times->decode);
  for (std::size_t l = 0; l < layers.size(); ++l) {
    StepLayer& sl = *layers[l];
    ok(kernels::topk_decode_average(bytes_at(recv_, offset[l]), block, offset[l + 1] - offset[l],
                                    ctx.size, sl.n, ks[l], sl.g, status_of(sl, ctx), ctx.stream),
       "topk_decode_average", ctx);
    finish(sl, ctx);
  }
}

void DeviceAlgorithms::two_phase(const std::vector<StepLayer*>& layers, DeviceStep& ctx) {
  if (layers.empty()) return;
  const int p = ctx.size, me = ctx.rank;
  const std::size_t pu = static_cast<std::size_t>(p);
  std::vector<std::size_t> slot(layers.size() + 1, 0);
  std::size_t workspace = 0, scratch = 0;
  for (std::size_t l = 0; l < layers.size(); ++l) {
    const StepLayer& sl = *layers[l];
    const kernels::ChunkCodec codec = chunk_codec(sl.plan->config);
    slot[l + 1] = slot[l] + two_phase_slot_bytes(*sl.plan->codec, sl.n, p);
    const std::size_t len = chunk_begin(sl.n, me + 1, p) - chunk_begin(sl.n, me, p);
    workspace = std::max({workspace, kernels::chunk_workspace_bytes(codec, sl.n, p),
                          kernels::chunk_workspace_bytes(codec, len, 1)});
    scratch = std::max(scratch, len);
  }
  const std::size_t block = slot.back();
  send_.reserve(block * pu, ctx.rank);
  recv_.reserve(block * pu, ctx.rank);
  gather_send_.reserve(block, ctx.rank);
  gather_recv_.reserve(block * pu, ctx.rank);
  workspace_.reserve(workspace, ctx.rank);
  scratch_.reserve(scratch * sizeof(float), ctx.rank);
  // Slots are padded to the largest chunk: zero the padding, so the bytes on the wire are a
  // function of the payloads alone.
  ok(kernels::zero_async(send_.get(), block * pu, ctx.stream), "zero", ctx);
  ok(kernels::zero_async(gather_send_.get(), block, ctx.stream), "zero", ctx);

  {
    ScopedTimer t(&ctx.times->encode);
    for (std::size_t l = 0; l < layers.size(); ++l) {
      StepLayer& sl = *layers[l];
      const Config& c = sl.plan->config;
      kernels::ChunkEncode a;
      a.codec = chunk_codec(c);
      const EncoderInput in = encoder_input(sl, ctx);
      a.x = in.x;
      a.g = in.g;
      a.residual = in.residual;
      a.n = sl.n;
      a.parts = p;
      a.out = bytes_at(send_, slot[l]);
      a.stride = block;
      a.seed = c.seed;
      a.step = ctx.step;
      a.offset = 0;
      a.layer = sl.index;
      a.rank = static_cast<std::uint32_t>(me);
      a.phase = kPhaseWorker;
      a.dtype = sl.dtype;
      a.stats = stats_of(sl, ctx);
      a.workspace = workspace_.get();
      a.workspace_bytes = workspace_.capacity();
      ok(kernels::chunk_encode(a, ctx.stream), "chunk_encode", ctx);
      sl.bytes_sent = 2 * allgather_bytes(slot[l + 1] - slot[l], p);
      after_encode(sl, ctx);
    }
  }
  {
    ScopedTimer t(&ctx.times->comm);
    ctx.transport->alltoall(send_.get(), recv_.get(), block);
  }
  {
    // Serve chunk `me` of every layer. A rejected payload turns this rank's block for the
    // layer into a poison block that every rank decodes, so all raise the same error.
    ScopedTimer t(&ctx.times->decode);
    for (std::size_t l = 0; l < layers.size(); ++l) {
      StepLayer& sl = *layers[l];
      const Config& c = sl.plan->config;
      const std::size_t b = chunk_begin(sl.n, me, p), len = chunk_begin(sl.n, me + 1, p) - b;
      kernels::ChunkServe a;
      a.codec = chunk_codec(c);
      a.in = bytes_at(recv_, slot[l]);
      a.stride = block;
      a.size = slot[l + 1] - slot[l];
      a.p = p;
      a.len = len;
      a.server_error = c.ef != ErrorFeedback::none
                           ? state_of(sl, ctx).server_error.ensure(len, ctx.stream, ctx.rank)
                           : nullptr;
      a.scratch = scratch_.as<float>();
      a.out = bytes_at(gather_send_, slot[l]);
      a.seed = c.seed;
      a.step = ctx.step;
      a.offset = b;
      a.layer = sl.index;
      a.rank = static_cast<std::uint32_t>(me);
      a.dtype = sl.dtype;
      a.status = status_of(sl, ctx);
      a.workspace = workspace_.get();
      a.workspace_bytes = workspace_.capacity();
      ok(kernels::chunk_serve(a, ctx.stream), "chunk_serve", ctx);
    }
  }
  {
    ScopedTimer t(&ctx.times->comm);
    ctx.transport->allgather(gather_send_.get(), gather_recv_.get(), block);
  }
  ScopedTimer t(&ctx.times->decode);
  for (std::size_t l = 0; l < layers.size(); ++l) {
    StepLayer& sl = *layers[l];
    ok(kernels::chunk_decode(chunk_codec(sl.plan->config), bytes_at(gather_recv_, slot[l]), block,
                             slot[l + 1] - slot[l], sl.n, p, sl.g, status_of(sl, ctx), ctx.stream),
       "chunk_decode", ctx);
    finish(sl, ctx);
  }
}

// The host's LowRankAllreduce, with the products of layers of one shape (rows, cols, rank)
// batched into one cuBLAS call each. A "unit" is such a group, or a layer alone; each layer
// still sees its own operations in the host's order, and layers only move relative to one
// another (they share nothing but disjoint slices of P, Q and the scratch).
void DeviceAlgorithms::low_rank(const std::vector<StepLayer*>& layers, DeviceStep& ctx) {
  if (layers.empty()) return;
  const float fp = static_cast<float>(ctx.size);
  std::vector<std::size_t> p_off(layers.size() + 1, 0), q_off(layers.size() + 1, 0);
  std::size_t max_n = 0;
  for (std::size_t l = 0; l < layers.size(); ++l) {
    const LayerPlan& plan = *layers[l]->plan;
    p_off[l + 1] = p_off[l] + plan.rows * plan.rank;
    q_off[l + 1] = q_off[l] + plan.cols * plan.rank;
    max_n = std::max(max_n, layers[l]->n);
  }
  // Units in the order of their first layers. A unit of c layers reconstructs `chunk` of them
  // at a time, into as many slots of the scratch.
  std::vector<std::vector<std::size_t>> units;
  {
    std::map<std::tuple<std::size_t, std::size_t, std::size_t>, std::size_t> unit_of;
    for (std::size_t l = 0; l < layers.size(); ++l) {
      const LayerPlan& plan = *layers[l]->plan;
      const auto it =
          unit_of.emplace(std::make_tuple(plan.rows, plan.cols, plan.rank), units.size());
      if (it.second) units.emplace_back();
      units[it.first->second].push_back(l);
    }
  }
  std::vector<std::size_t> chunk(units.size());
  std::size_t scratch = max_n;
  for (std::size_t u = 0; u < units.size(); ++u) {
    const LayerPlan& plan = *layers[units[u][0]]->plan;
    const std::size_t n = std::max<std::size_t>(plan.rows * plan.cols, 1);
    chunk[u] = std::max<std::size_t>(std::min(units[u].size(), kReconstructFloats / n), 1);
    scratch = std::max(scratch, chunk[u] * plan.rows * plan.cols);
  }
  p_.reserve(p_off.back() * sizeof(float), ctx.rank);
  q_.reserve(q_off.back() * sizeof(float), ctx.rank);
  q_local_.reserve(q_off.back() * sizeof(float), ctx.rank);
  scratch_.reserve(scratch * sizeof(float), ctx.rank);
  float* const P = p_.as<float>();
  float* const Q = q_.as<float>();
  float* const q_local = q_local_.as<float>();
  float* const delta = scratch_.as<float>();
  // Slot of the i-th layer of unit u in the scratch.
  auto slot = [&](std::size_t u, std::size_t i) {
    const LayerPlan& plan = *layers[units[u][0]]->plan;
    return delta + (i % chunk[u]) * plan.rows * plan.cols;
  };
  auto econtrol_members = [&](const std::vector<std::size_t>& unit) {
    std::vector<std::size_t> members;
    for (std::size_t i = 0; i < unit.size(); ++i)
      if (layers[unit[i]]->feedback == StepFeedback::econtrol) members.push_back(i);
    return members;
  };

  // The pointer arrays of a unit of c >= 2 layers, from its offset in the table: x, Q state,
  // P slices, Q slices, scratch slots (c each), then for its e EControl layers (if e >= 2)
  // P slices, local Q slices and scratch slots (e each).
  enum Array { kX, kQState, kP, kQ, kDelta, kArrays };
  std::vector<std::size_t> table(units.size(), 0);
  std::vector<float*> host_table;
  float** device_table = nullptr;
  auto array = [&](std::size_t u, std::size_t which) {
    return device_table + table[u] + which * units[u].size();
  };
  auto econtrol_array = [&](std::size_t u, std::size_t which, std::size_t e) {
    return device_table + table[u] + kArrays * units[u].size() + which * e;
  };

  {
    ScopedTimer t(&ctx.times->encode);
    for (std::size_t l = 0; l < layers.size(); ++l) {
      StepLayer& sl = *layers[l];
      const LayerPlan& plan = *sl.plan;
      prepare_input(sl, ctx);
      DeviceFloats& q = state_of(sl, ctx).q;
      if (q.size() != plan.cols * plan.rank) {
        q.resize(plan.cols * plan.rank, ctx.rank);
        ok(kernels::lowrank_random_init(q.data(), plan.cols, plan.rank, plan.config.seed, sl.index,
                                        0, ctx.stream),
           "lowrank_random_init", ctx);
      } else {
        ok(kernels::lowrank_refresh_zero_columns(q.data(), plan.cols, plan.rank, plan.config.seed,
                                                 sl.index, ctx.step + 1, ctx.stream),
           "lowrank_refresh_zero_columns", ctx);
      }
    }
    // Every pointer is final now (x and the Q state were just settled): one table, one copy.
    for (std::size_t u = 0; u < units.size(); ++u) {
      const std::vector<std::size_t>& unit = units[u];
      if (unit.size() < 2) continue;
      table[u] = host_table.size();
      for (const std::size_t l : unit) host_table.push_back(layers[l]->x);
      for (const std::size_t l : unit) host_table.push_back(state_of(*layers[l], ctx).q.data());
      for (const std::size_t l : unit) host_table.push_back(P + p_off[l]);
      for (const std::size_t l : unit) host_table.push_back(Q + q_off[l]);
      for (std::size_t i = 0; i < unit.size(); ++i) host_table.push_back(slot(u, i));
      const std::vector<std::size_t> members = econtrol_members(unit);
      if (members.size() < 2) continue;
      for (const std::size_t i : members) host_table.push_back(P + p_off[unit[i]]);
      for (const std::size_t i : members) host_table.push_back(q_local + q_off[unit[i]]);
      for (const std::size_t i : members) host_table.push_back(slot(u, i));
    }
    if (!host_table.empty()) {
      const std::size_t bytes = host_table.size() * sizeof(float*);
      batch_host_.reserve(bytes, ctx.rank);
      batch_device_.reserve(bytes, ctx.rank);
      std::copy(host_table.begin(), host_table.end(), batch_host_.as<float*>());
      ok(kernels::copy_async(batch_device_.get(), batch_host_.get(), bytes, ctx.stream), "copy",
         ctx);
      device_table = batch_device_.as<float*>();
    }
    for (std::size_t u = 0; u < units.size(); ++u) {
      const std::vector<std::size_t>& unit = units[u];
      const LayerPlan& plan = *layers[unit[0]]->plan;
      if (unit.size() >= 2) {
        ok(kernels::lowrank_project_batched(ctx.blas, array(u, kX), plan.rows, plan.cols,
                                            array(u, kQState), plan.rank, array(u, kP), unit.size(),
                                            ctx.stream),
           "lowrank_project_batched", ctx);
      } else {
        const std::size_t l = unit[0];
        ok(kernels::lowrank_project(ctx.blas, layers[l]->x, plan.rows, plan.cols,
                                    state_of(*layers[l], ctx).q.data(), plan.rank, P + p_off[l],
                                    ctx.stream),
           "lowrank_project", ctx);
      }
    }
  }
  {
    ScopedTimer t(&ctx.times->comm);
    ctx.transport->allreduce(P, p_off.back(), ElementType::f32, ReduceOp::sum);
  }
  {
    ScopedTimer t(&ctx.times->encode);
    ok(kernels::divide(P, P, fp, p_off.back(), ctx.stream), "divide", ctx);
    for (std::size_t u = 0; u < units.size(); ++u) {
      const std::vector<std::size_t>& unit = units[u];
      const LayerPlan& plan = *layers[unit[0]]->plan;
      for (const std::size_t l : unit)
        ok(kernels::lowrank_orthonormalize(P + p_off[l], plan.rows, plan.rank, ctx.stream),
           "lowrank_orthonormalize", ctx);
      if (unit.size() >= 2) {
        ok(kernels::lowrank_back_project_batched(ctx.blas, array(u, kX), plan.rows, plan.cols,
                                                 array(u, kP), plan.rank, array(u, kQ), unit.size(),
                                                 ctx.stream),
           "lowrank_back_project_batched", ctx);
      } else {
        const std::size_t l = unit[0];
        ok(kernels::lowrank_back_project(ctx.blas, layers[l]->x, plan.rows, plan.cols, P + p_off[l],
                                         plan.rank, Q + q_off[l], ctx.stream),
           "lowrank_back_project", ctx);
      }
    }
    copy_floats(q_local, Q, q_off.back(), ctx);  // for EControl's own increment
  }
  {
    ScopedTimer t(&ctx.times->comm);
    ctx.transport->allreduce(Q, q_off.back(), ElementType::f32, ReduceOp::sum);
  }
  ScopedTimer t(&ctx.times->decode);
  ok(kernels::divide(Q, Q, fp, q_off.back(), ctx.stream), "divide", ctx);
  for (std::size_t u = 0; u < units.size(); ++u) {
    const std::vector<std::size_t>& unit = units[u];
    const LayerPlan& plan = *layers[unit[0]]->plan;
    for (const std::size_t l : unit) {
      StepLayer& sl = *layers[l];
      copy_floats(state_of(sl, ctx).q.data(), Q + q_off[l], plan.cols * plan.rank, ctx);
      sl.bytes_sent = allreduce_bytes(4 * plan.rows * plan.rank, ctx.size) +
                      allreduce_bytes(4 * plan.cols * plan.rank, ctx.size);
    }
    const std::vector<std::size_t> members = econtrol_members(unit);
    std::size_t e0 = 0;  // the first EControl member of the chunk, in `members`
    for (std::size_t c0 = 0; c0 < unit.size(); c0 += chunk[u]) {
      const std::size_t c1 = std::min(c0 + chunk[u], unit.size());
      if (c1 - c0 >= 2) {
        ok(kernels::lowrank_reconstruct_batched(ctx.blas, array(u, kP) + c0, array(u, kQ) + c0,
                                                plan.rows, plan.cols, plan.rank,
                                                array(u, kDelta) + c0, c1 - c0, ctx.stream),
           "lowrank_reconstruct_batched", ctx);
      } else {
        const std::size_t l = unit[c0];
        ok(kernels::lowrank_reconstruct(ctx.blas, P + p_off[l], Q + q_off[l], plan.rows, plan.cols,
                                        plan.rank, slot(u, c0), ctx.stream),
           "lowrank_reconstruct", ctx);
      }
      for (std::size_t i = c0; i < c1; ++i) {
        StepLayer& sl = *layers[unit[i]];
        float* const d = slot(u, i);
        ok(kernels::residual_norms(sl.x, d, sl.n, stats_of(sl, ctx), ctx.stream), "residual_norms",
           ctx);
        if (sl.feedback == StepFeedback::econtrol) {
          copy_floats(sl.g, d, sl.n, ctx);
          continue;  // the rest after its own increment, below
        }
        if (sl.want_residual)
          ok(kernels::subtract(sl.x, d, sl.n, ctx.stream), "subtract", ctx);  // e <- M - M_hat
        copy_floats(sl.g, d, sl.n, ctx);
        finish(sl, ctx);
      }
      // EControl: M_hat of this rank's own Q (before the allreduce) into the same slots.
      std::size_t e1 = e0;
      while (e1 < members.size() && members[e1] < c1) ++e1;
      const std::size_t e = members.size();
      if (e1 - e0 >= 2) {
        ok(kernels::lowrank_reconstruct_batched(
               ctx.blas, econtrol_array(u, 0, e) + e0, econtrol_array(u, 1, e) + e0, plan.rows,
               plan.cols, plan.rank, econtrol_array(u, 2, e) + e0, e1 - e0, ctx.stream),
           "lowrank_reconstruct_batched", ctx);
      } else if (e1 - e0 == 1) {
        const std::size_t l = unit[members[e0]];
        ok(kernels::lowrank_reconstruct(ctx.blas, P + p_off[l], q_local + q_off[l], plan.rows,
                                        plan.cols, plan.rank, slot(u, members[e0]), ctx.stream),
           "lowrank_reconstruct", ctx);
      }
      for (std::size_t k = e0; k < e1; ++k) {
        StepLayer& sl = *layers[unit[members[k]]];
        DeviceLayerState& s = state_of(sl, ctx);
        ok(kernels::econtrol_after_delta(s.error.data(), s.h.data(), sl.x, slot(u, members[k]),
                                         eta_of(sl), sl.n, ctx.stream),
           "econtrol_after_delta", ctx);
        finish(sl, ctx);
      }
      e0 = e1;
    }
  }
}

}  // namespace thinwire::detail
