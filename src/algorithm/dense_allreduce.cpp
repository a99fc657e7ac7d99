#include "algorithm/dense_allreduce.hpp"

#include <cstring>

#include "common/timer.hpp"
#include "reducer/error_feedback.hpp"

namespace thinwire::detail {

void DenseAllreduce::run(const std::vector<StepLayer*>& layers, StepContext& ctx) {
  if (layers.empty()) return;
  const float p = static_cast<float>(ctx.size);
  std::size_t total = 0;
  for (StepLayer* sl : layers) total += sl->n;

  // One f32 layer needs no packing: reduce it where it is.
  const bool in_place = layers.size() == 1;
  float* buf = nullptr;
  {
    ScopedTimer t(&ctx.times->encode);
    for (StepLayer* sl : layers) prepare_input(*sl);
    if (in_place) {
      buf = layers[0]->x;
    } else {
      buffer_.resize(total);
      buf = buffer_.data();
      std::size_t off = 0;
      for (StepLayer* sl : layers) {
        if (sl->n) std::memcpy(buf + off, sl->x, sl->n * sizeof(float));
        off += sl->n;
      }
    }
    for (StepLayer* sl : layers) after_encode(*sl);
  }
  {
    ScopedTimer t(&ctx.times->comm);
    ctx.transport.allreduce(buf, total, ElementType::f32, ReduceOp::sum);
  }
  {
    ScopedTimer t(&ctx.times->decode);
    std::size_t off = 0;
    for (StepLayer* sl : layers) {
      float* g = sl->g;
      const float* src = buf + off;
      for (std::size_t i = 0; i < sl->n; ++i) g[i] = src[i] / p;
      off += sl->n;
      sl->bytes_sent = allreduce_bytes(4 * sl->n, ctx.size);
      finish(*sl);
    }
  }
}

}  // namespace thinwire::detail
