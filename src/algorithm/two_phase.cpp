#include "algorithm/two_phase.hpp"

#include <algorithm>
#include <cstring>
#include <string>

#include "common/bytes.hpp"
#include "common/fail.hpp"
#include "common/timer.hpp"
#include "reducer/error_feedback.hpp"

namespace thinwire::detail {

namespace {

// A poisoned allgather block: magic, message length, message (truncated to the block). A
// healthy block starts with a payload header, whose magic differs.
constexpr std::uint32_t kPoisonMagic = 0x58505754u;  // "TWPX"
constexpr std::size_t kPoisonHeader = 8;

void write_poison(std::uint8_t* out, std::size_t block, const std::string& message) {
  std::memset(out, 0, block);
  if (block < kPoisonHeader) return;  // cannot happen: a block holds at least one payload
  const std::size_t len = std::min(message.size(), block - kPoisonHeader);
  store_le<std::uint32_t>(out, kPoisonMagic);
  store_le<std::uint32_t>(out + 4, static_cast<std::uint32_t>(len));
  std::memcpy(out + kPoisonHeader, message.data(), len);
}

// Every rank runs this on the same gathered bytes, so all raise the same error.
void raise_if_poisoned(const std::uint8_t* in, std::size_t block, int server, int me) {
  if (block < kPoisonHeader || load_le<std::uint32_t>(in) != kPoisonMagic) return;
  const std::size_t len =
      std::min<std::size_t>(load_le<std::uint32_t>(in + 4), block - kPoisonHeader);
  fail_with(ErrorCode::invalid_argument, "codec", me, "rank ", server,
            " rejected a chunk it serves, so every rank stops this step: ",
            std::string(reinterpret_cast<const char*>(in + kPoisonHeader), len));
}

}  // namespace

// 1-bit with error feedback: x = g + e, encode, e <- x - C(x) in one pass over the layer,
// with e kept factored (OnebitErrorMemory); the same payloads and memory as prepare_input()
// then OnebitCodec::encode() with the residual.
void TwoPhase::encode_onebit_ef(StepLayer& sl, const StepContext& ctx, std::uint8_t* out,
                                std::size_t stride) {
  LayerState& s = *sl.state;
  if (s.onebit_error.empty() && !s.error.empty()) {  // memory left by the generic path
    s.onebit_error.assign(s.error.data(), s.error.size());
    s.error = std::vector<float>();
  }
  bounds_.resize(static_cast<std::size_t>(ctx.size) + 1);
  for (int j = 0; j <= ctx.size; ++j)
    bounds_[static_cast<std::size_t>(j)] = chunk_begin(sl.n, j, ctx.size);
  const EncodeKey key{
      sl.plan->config.seed, ctx.step, sl.index, static_cast<std::uint32_t>(ctx.rank),
      kPhaseWorker,         0,        sl.dtype};
  const EncodeResult r = s.onebit_error.encode(
      sl.g, sl.n, bounds_.data(), static_cast<std::size_t>(ctx.size), key, out, stride);
  sl.sq_error = r.sq_error;
  sl.sq_norm = r.sq_norm;
}

void TwoPhase::run(const std::vector<StepLayer*>& layers, StepContext& ctx) {
  if (layers.empty()) return;
  const int p = ctx.size, me = ctx.rank;
  const auto rank_u = static_cast<std::uint32_t>(me);
  std::vector<std::size_t> slot(layers.size() + 1, 0);  // offsets of each layer's slot in a block
  for (std::size_t l = 0; l < layers.size(); ++l)
    slot[l + 1] = slot[l] + two_phase_slot_bytes(*layers[l]->plan->codec, layers[l]->n, p);
  const std::size_t block = slot.back();
  const std::size_t pu = static_cast<std::size_t>(p);
  send_.assign(block * pu, 0);
  recv_.resize(block * pu);
  gather_send_.assign(block, 0);
  gather_recv_.resize(block * pu);

  // Phase 1: every rank compresses its P chunks.
  {
    ScopedTimer t(&ctx.times->encode);
    for (std::size_t l = 0; l < layers.size(); ++l) {
      StepLayer& sl = *layers[l];
      if (sl.feedback == StepFeedback::ef && sl.plan->codec->method() == Method::onebit) {
        encode_onebit_ef(sl, ctx, send_.data() + slot[l], block);
        sl.bytes_sent = 2 * allgather_bytes(slot[l + 1] - slot[l], p);
        continue;
      }
      prepare_input(sl);
      double err = 0, norm = 0;
      for (int j = 0; j < p; ++j) {
        const std::size_t b = chunk_begin(sl.n, j, p), e = chunk_begin(sl.n, j + 1, p);
        EncodeKey key{sl.plan->config.seed, ctx.step, sl.index, rank_u, kPhaseWorker, b, sl.dtype};
        const EncodeResult r =
            sl.plan->codec->encode(sl.x + b, e - b, key, send_.data() + j * block + slot[l],
                                   sl.want_residual ? sl.x + b : nullptr);
        err += r.sq_error;
        norm += r.sq_norm;
      }
      sl.sq_error = err;
      sl.sq_norm = norm;
      sl.bytes_sent = 2 * allgather_bytes(slot[l + 1] - slot[l], p);
      after_encode(sl);
    }
  }
  {
    ScopedTimer t(&ctx.times->comm);
    ctx.transport.alltoall(send_.data(), recv_.data(), block);
  }
  // Phase 2: serve chunk `me` of every layer. A corrupt chunk is seen by its server alone:
  // throwing here would leave every other rank waiting in the allgather below until
  // THINWIRE_TIMEOUT_S. The server takes part with a poisoned block that carries its error
  // instead, and every rank raises that error after the allgather.
  std::string poison;
  {
    ScopedTimer t(&ctx.times->decode);
    try {
      for (std::size_t l = 0; l < layers.size(); ++l) {
        const StepLayer& sl = *layers[l];
        const std::size_t len = chunk_begin(sl.n, me + 1, p) - chunk_begin(sl.n, me, p);
        for (int r = 0; r < p; ++r)
          sl.plan->codec->validate(recv_.data() + r * block + slot[l], slot[l + 1] - slot[l], len,
                                   PayloadSource{*sl.name, r, me});
      }
    } catch (const Error& e) {
      // The message without its "thinwire codec error [rank R]: " prefix: every rank adds
      // its own when it raises it.
      poison = e.what();
      const std::size_t at = poison.find("]: ");
      if (at != std::string::npos) poison.erase(0, at + 3);
    }
    for (std::size_t l = 0; l < layers.size() && poison.empty(); ++l) {
      StepLayer& sl = *layers[l];
      const std::size_t b = chunk_begin(sl.n, me, p), len = chunk_begin(sl.n, me + 1, p) - b;
      const std::size_t size = slot[l + 1] - slot[l];
      // The first version assigned, the others added, then one pass for the average and the
      // server's error: with a zeroing and a divide pass more, the decode phase of 2-host
      // onebit steps took 1.5x as long at 4 and 16 MiB, 1.15x at 64 MiB (EPYC VM). "+ 0.0f"
      // gives the sum's zeros the sign that 0.0f + v0 + v1 ... (the reference) gives them.
      average_.resize(len);
      for (int r = 0; r < p; ++r)
        sl.plan->codec->decode(recv_.data() + r * block + slot[l], size, len, average_.data(),
                               r == 0 ? DecodeMode::assign : DecodeMode::accumulate,
                               PayloadSource{*sl.name, r, me});
      const float fp = static_cast<float>(p);
      float* y = average_.data();
      // Server-side error feedback whenever the worker side has it.
      const bool server_ef = sl.plan->config.ef != ErrorFeedback::none;
      if (server_ef) {
        std::vector<float>& es = sl.state->server_error;
        if (es.size() != len) es.assign(len, 0.0f);
        for (std::size_t i = 0; i < len; ++i) y[i] = (y[i] + 0.0f) / fp + es[i];
      } else {
        for (std::size_t i = 0; i < len; ++i) y[i] = (y[i] + 0.0f) / fp;
      }
      EncodeKey key{sl.plan->config.seed, ctx.step, sl.index, rank_u, kPhaseServer, b, sl.dtype};
      sl.plan->codec->encode(y, len, key, gather_send_.data() + slot[l],
                             server_ef ? sl.state->server_error.data() : nullptr);
    }
    if (!poison.empty()) write_poison(gather_send_.data(), block, poison);
  }
  {
    ScopedTimer t(&ctx.times->comm);
    ctx.transport.allgather(gather_send_.data(), gather_recv_.data(), block);
  }
  // Every rank decodes the same P chunks, after checking all of them.
  ScopedTimer t(&ctx.times->decode);
  for (int j = 0; j < p; ++j) raise_if_poisoned(gather_recv_.data() + j * block, block, j, me);
  for (std::size_t l = 0; l < layers.size(); ++l) {
    StepLayer& sl = *layers[l];
    const std::size_t size = slot[l + 1] - slot[l];
    for (int j = 0; j < p; ++j) {
      const std::size_t b = chunk_begin(sl.n, j, p), e = chunk_begin(sl.n, j + 1, p);
      sl.plan->codec->validate(gather_recv_.data() + j * block + slot[l], size, e - b,
                               PayloadSource{*sl.name, j, me});
    }
  }
  for (std::size_t l = 0; l < layers.size(); ++l) {
    StepLayer& sl = *layers[l];
    const std::size_t size = slot[l + 1] - slot[l];
    for (int j = 0; j < p; ++j) {
      const std::size_t b = chunk_begin(sl.n, j, p), e = chunk_begin(sl.n, j + 1, p);
      sl.plan->codec->decode(gather_recv_.data() + j * block + slot[l], size, e - b, sl.g + b,
                             DecodeMode::assign, PayloadSource{*sl.name, j, me});
    }
    finish(sl);
  }
}

}  // namespace thinwire::detail
