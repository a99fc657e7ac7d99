// The average over ranks of f32 values, as dense layers need it (sum, then divide by the
// number of ranks). Dividing inside the collective costs a pass over 1/P of the data
// (each rank divides the part of the sum it finishes) instead of a pass over all of it.
#pragma once

#include <cstddef>

#include "thinwire/transport.hpp"

namespace thinwire::detail {

// In place, every rank with the same bits: those of allreduce(sum) then data[i] / size().
// MpiTransport (also behind the communicator's guard) divides inside its collective; any
// other transport (a framework's) sums with allreduce() and then divides here.
void allreduce_average_f32(Transport& t, float* data, std::size_t count);

// out[i] = in[i] / divisor; `in` may be `out`.
inline void divide_f32(float* out, const float* in, std::size_t n, float divisor) {
  for (std::size_t i = 0; i < n; ++i) out[i] = in[i] / divisor;
}

}  // namespace thinwire::detail
