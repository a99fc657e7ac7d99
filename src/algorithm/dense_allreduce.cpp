#include "algorithm/dense_allreduce.hpp"

#include <cstring>

#include "common/timer.hpp"
#include "reducer/error_feedback.hpp"
#include "transport/average.hpp"

namespace thinwire::detail {

void DenseAllreduce::run(const std::vector<StepLayer*>& layers, StepContext& ctx) {
  if (layers.empty()) return;
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
    // The average: the transport divides the sum inside the collective (each rank 1/P of it).
    ScopedTimer t(&ctx.times->comm);
    allreduce_average_f32(ctx.transport, buf, total);
  }
  {
    ScopedTimer t(&ctx.times->decode);
    std::size_t off = 0;
    for (StepLayer* sl : layers) {
      const float* src = buf + off;
      if (sl->n && sl->g != src) std::memcpy(sl->g, src, sl->n * sizeof(float));
      off += sl->n;
      sl->bytes_sent = allreduce_bytes(4 * sl->n, ctx.size);
      finish(*sl);
    }
  }
}

}  // namespace thinwire::detail
