#include "algorithm/dense_allreduce.hpp"

#include <cstring>

#include "common/timer.hpp"
#include "reducer/error_feedback.hpp"
#include "transport/average.hpp"

namespace thinwire::detail {

void DenseAllreduce::run(const std::vector<StepLayer*>& layers, StepContext& ctx) {
  std::vector<StepLayer*> checked, unchecked;
  for (StepLayer* sl : layers) (sl->check_in_sum ? checked : unchecked).push_back(sl);
  reduce(checked, true, ctx);
  reduce(unchecked, false, ctx);
}

void DenseAllreduce::reduce(const std::vector<StepLayer*>& layers, bool checked, StepContext& ctx) {
  if (layers.empty()) return;
  std::size_t total = 0;
  for (StepLayer* sl : layers) total += sl->n;

  // One f32 layer needs no packing: reduce it where it is.
  const bool in_place = layers.size() == 1;
  float* buf = nullptr;
  NonFiniteSum found;
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
    if (checked)
      found = allreduce_average_f32_checked(ctx.transport, buf, total);
    else
      allreduce_average_f32(ctx.transport, buf, total);
  }
  {
    ScopedTimer t(&ctx.times->decode);
    std::size_t off = 0;
    for (StepLayer* sl : layers) {
      const float* src = buf + off;
      if (sl->n && sl->g != src) std::memcpy(sl->g, src, sl->n * sizeof(float));
      if (found.found() && found.index >= off && found.index - off < sl->n) {
        sl->non_finite_at = found.index - off;
        sl->non_finite_rank = found.rank;
      }
      off += sl->n;
      sl->bytes_sent = allreduce_bytes(4 * sl->n, ctx.size);
      finish(*sl);
    }
  }
}

}  // namespace thinwire::detail
