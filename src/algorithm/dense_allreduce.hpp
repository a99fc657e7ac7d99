// Dense: uncompressed layers (method none, small layers, warm-up, EControl's first step),
// one f32 allreduce of the average (sum divided by the ranks) over their concatenation.
// Layers whose non-finite check rides on the sum (StepLayer::check_in_sum) go in a checked
// average of their own when the step has both kinds.
//
// Over MPI, layers of kInPlaceMinBytes or more are handed to the transport where they are
// and only runs of smaller layers are packed. thinwire's ring sends and sums them in place;
// MPI's own allreduce packs them inside the transport, timed with it for
// THINWIRE_MPI_ALLREDUCE=auto. So a step of many large layers no longer copies every gradient
// in and the average out (on the development VM a 2-rank step of a 48-layer, 60 MiB mix took
// 26 ms instead of 39-43 ms). A framework's transport gets every layer packed into one
// buffer. The concatenation, and with it every bit of the result, is the same either way.
#pragma once

#include <cstddef>
#include <vector>

#include "algorithm/algorithm.hpp"
#include "transport/average.hpp"

namespace thinwire::detail {

class DenseAllreduce final : public Algorithm {
 public:
  // Below this a layer is packed with its neighbours rather than sent as messages of its own:
  // copying 64 KiB in and back out takes about 18-23 us at the development VM's copy rates
  // (0.55-0.7 ns per element), no more than one message's latency on 2 emulated hosts
  // (15-185 us in the validation runs).
  static constexpr std::size_t kInPlaceMinBytes = 64 * 1024;

  void run(const std::vector<StepLayer*>& layers, StepContext& ctx) override;

 private:
  void reduce(const std::vector<StepLayer*>& layers, bool checked, StepContext& ctx);

  std::vector<float> buffer_;   // packed layers
  std::vector<float> scratch_;  // a transport's own packing of the spans
  std::vector<F32Span> spans_;
};

}  // namespace thinwire::detail
