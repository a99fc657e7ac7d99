#include "algorithm/sparse_allgather.hpp"

#include "common/bytes.hpp"
#include "common/timer.hpp"
#include "compress/topk_average.hpp"
#include "compress/topk_codec.hpp"
#include "reducer/dgc.hpp"
#include "reducer/error_feedback.hpp"

namespace thinwire::detail {

void SparseAllgather::run(const std::vector<StepLayer*>& layers, StepContext& ctx) {
  if (layers.empty()) return;
  const int p = ctx.size;
  std::vector<std::size_t> offset(layers.size() + 1, 0);
  for (std::size_t l = 0; l < layers.size(); ++l)
    offset[l + 1] = offset[l] + layers[l]->plan->codec->encoded_bytes(layers[l]->n);
  const std::size_t block = offset.back();
  send_.resize(block);
  recv_.resize(block * static_cast<std::size_t>(p));

  {
    ScopedTimer t(&ctx.times->encode);
    for (std::size_t l = 0; l < layers.size(); ++l) {
      StepLayer& sl = *layers[l];
      EncodeKey key{sl.plan->config.seed, ctx.step, sl.index, static_cast<std::uint32_t>(ctx.rank),
                    kPhaseWorker,         0,        sl.dtype};
      EncodeResult r;
      if (sl.feedback == StepFeedback::ef) {
        // x = g + e summed in the selection pass; e becomes the residual. DGC's momentum
        // correction feeds the velocity u = m u + g instead of g, then masks u where sent.
        sl.x = error_memory(sl);
        sl.want_residual = true;
        const Config& c = sl.plan->config;
        const float* input =
            c.dgc ? dgc_momentum(sl.state->momentum, sl.g, static_cast<float>(c.momentum), sl.n)
                  : sl.g;
        std::uint8_t* out = send_.data() + offset[l];
        r = static_cast<TopkCodec&>(*sl.plan->codec).encode_ef(sl.x, input, sl.n, key, out);
        if (c.dgc)
          dgc_mask(sl.state->momentum.data(), out + kHeaderBytes, (r.bytes - kHeaderBytes) / 8);
      } else {
        prepare_input(sl);
        r = sl.plan->codec->encode(sl.x, sl.n, key, send_.data() + offset[l],
                                   sl.want_residual ? sl.x : nullptr);
      }
      sl.sq_error = r.sq_error;
      sl.sq_norm = r.sq_norm;
      sl.bytes_sent = allgather_bytes(r.bytes, p);
      after_encode(sl);
    }
  }
  {
    ScopedTimer t(&ctx.times->comm);
    ctx.transport.allgather(send_.data(), recv_.data(), block);
  }
  ScopedTimer t(&ctx.times->decode);
  std::vector<TopkCodec::View> views(static_cast<std::size_t>(p));
  for (std::size_t l = 0; l < layers.size(); ++l) {
    StepLayer& sl = *layers[l];
    const auto& codec = static_cast<const TopkCodec&>(*sl.plan->codec);
    const std::size_t size = offset[l + 1] - offset[l];
    // Validate all P payloads before writing anything.
    for (int r = 0; r < p; ++r)
      views[r] = codec.parse(recv_.data() + static_cast<std::size_t>(r) * block + offset[l], size,
                             sl.n, PayloadSource{*sl.name, r, ctx.rank});
    average_topk(views.data(), p, sl.g, sl.n, touched_);
    finish(sl);
  }
}

}  // namespace thinwire::detail
