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

  // Which layers stay where they are: one alone always; over MPI every large one.
  const bool spans = layers.size() > 1 && average_takes_spans(ctx.transport, total);
  auto in_place = [&](const StepLayer& sl) {
    return layers.size() == 1 || (spans && sl.n * sizeof(float) >= kInPlaceMinBytes);
  };
  NonFiniteSum found;
  {
    ScopedTimer t(&ctx.times->encode);
    for (StepLayer* sl : layers) prepare_input(*sl);
    // The concatenation as spans: in-place layers, and runs of packed ones in buffer_.
    std::size_t packed = 0;
    for (StepLayer* sl : layers) packed += in_place(*sl) ? 0 : sl->n;
    buffer_.resize(packed);
    spans_.clear();
    float* next = buffer_.data();
    bool after_packed = false;  // the last span is a run of packed layers
    for (StepLayer* sl : layers) {
      if (sl->n == 0) continue;
      const bool keep = in_place(*sl);
      if (keep) {
        spans_.push_back({sl->x, sl->n});
      } else {
        std::memcpy(next, sl->x, sl->n * sizeof(float));
        if (after_packed)
          spans_.back().count += sl->n;
        else
          spans_.push_back({next, sl->n});
        next += sl->n;
      }
      after_packed = !keep;
    }
    for (StepLayer* sl : layers) after_encode(*sl);
  }
  {
    // The average: the transport divides the sum inside the collective (each rank 1/P of it).
    ScopedTimer t(&ctx.times->comm);
    found = allreduce_average_f32_spans(ctx.transport, spans_, checked, scratch_);
  }
  {
    ScopedTimer t(&ctx.times->decode);
    std::size_t off = 0;
    const float* next = buffer_.data();
    for (StepLayer* sl : layers) {
      const float* src = sl->x;
      if (sl->n && !in_place(*sl)) {
        src = next;
        next += sl->n;
      }
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
