// The average over ranks of f32 values, as dense layers need it (sum, then divide by the
// number of ranks). Dividing inside the collective costs a pass over 1/P of the data
// (each rank divides the part of the sum it finishes) instead of a pass over all of it.
//
// The checked variant also looks for NaN and infinity, for the nan= policy of dense layers,
// in passes the average makes anyway: thinwire's ring reads every rank's gradient once in
// its additions (each rank its own, and at the first step its left neighbour's first chunk
// as it arrived), so it tests the gradients there and names the rank that held the value;
// every other route (MPI's allreduce, small sums, a framework's transport) divides the whole
// result on every rank and tests the average as it writes it. Either way the ranks learn
// the same answer without a collective of its own (the ring passes it along with its
// allgather), and a non-finite value is found only after the payload has moved.
//
// A step's dense layers are one such average over their concatenation. thinwire's ring can
// read and write the layers where they are (allreduce_average_f32_spans); every other route
// needs them packed into one buffer first, and the result copied back.
#pragma once

#include <cstddef>
#include <vector>

#include "common/non_finite_scan.hpp"
#include "thinwire/transport.hpp"
#include "transport/ring_add.hpp"

namespace thinwire::detail {

// The first NaN or infinity a checked average found (every rank gets the same value).
struct NonFiniteSum {
  std::size_t index = kAllFinite;  // element of the buffer; kAllFinite: none found
  int rank = -1;                   // the rank whose gradient held it; -1: found in the average
  bool found() const { return index != kAllFinite; }
  // The first by element index, then by rank (-1, the average, last).
  void keep_first(std::size_t at, int who);
};

// In place, every rank with the same bits: those of allreduce(sum) then data[i] / size().
// MpiTransport (also behind the communicator's guard) divides inside its collective; any
// other transport (a framework's) sums with allreduce() and then divides here.
void allreduce_average_f32(Transport& t, float* data, std::size_t count);

// The same average, with the same bits, and where the first non-finite element was (of the
// gradients on thinwire's ring, else of the average; see above). One rank: its gradient.
NonFiniteSum allreduce_average_f32_checked(Transport& t, float* data, std::size_t count);

// Part of a buffer that exists only as the concatenation of its parts.
struct F32Span {
  float* data = nullptr;
  std::size_t count = 0;
};

// Whether allreduce_average_f32_spans() takes a concatenation of `count` elements as its
// parts (the MPI transport, for a sum large enough for its ring or MPI's allreduce), rather
// than needing them packed: the caller then packs only parts too small to be worth a message
// of their own.
bool average_takes_spans(Transport& t, std::size_t count);

// allreduce_average_f32[_checked] of the concatenation of `spans`, written back into them:
// the same bits, and a NonFiniteSum index into the concatenation. On thinwire's ring every
// span travels and is summed where it is, MPI's route packs them inside its timed call (see
// sum_route.hpp); otherwise the spans are packed into `scratch` and copied back (one span is
// reduced where it is).
NonFiniteSum allreduce_average_f32_spans(Transport& t, const std::vector<F32Span>& spans,
                                         bool check, std::vector<float>& scratch);

// out[i] = in[i] / divisor; `in` may be `out`. (A power of two multiplies by its exact
// reciprocal instead: the same bits, at the cost of a multiplication.)
inline void divide_f32(float* out, const float* in, std::size_t n, float divisor) {
  if (divides_as_reciprocal(divisor)) {
    const float reciprocal = 1.0f / divisor;
    for (std::size_t i = 0; i < n; ++i) out[i] = in[i] * reciprocal;
    return;
  }
  for (std::size_t i = 0; i < n; ++i) out[i] = in[i] / divisor;
}

// divide_f32, testing the quotients as they are written: the first non-finite one's index,
// or kAllFinite.
inline std::size_t divide_f32_checked(float* out, const float* in, std::size_t n, float divisor) {
  return run_then_check_blocks(out, n, [&](std::size_t begin, std::size_t end) {
    divide_f32(out + begin, in + begin, end - begin, divisor);
  });
}

}  // namespace thinwire::detail
