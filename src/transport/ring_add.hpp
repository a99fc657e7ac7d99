// The ring allreduce's addition (dst += src, or (dst + src) / divisor where a rank finishes
// its chunk of the sum), optionally testing its operands for NaN and infinity on the way.
#pragma once

#include <cstddef>

#include "common/non_finite_scan.hpp"

namespace thinwire::detail {

// The first non-finite element of each operand as it was before the addition (kAllFinite:
// none, or not tested).
struct RingAddFound {
  std::size_t dst = kAllFinite;
  std::size_t src = kAllFinite;
};

// dst[i] = dst[i] + src[i] over [0, n), divided by `divisor` unless it is 1 (a power of two
// is applied as a multiplication by its reciprocal: the same bits). With `test_dst` /
// `test_src`, also finds those operands' first non-finite elements, exactly.
//
// Why the test costs almost nothing: each block of the operands is tested inside the loop
// that adds the block before it, so the test's loads overlap that block's arithmetic and
// the block is in L1 when its own turn comes; a block that tests positive is searched
// before it is added. Testing a block and then adding it instead (the memory and the
// arithmetic then alternate) cost 11-20 % of a 16 MiB dense step over shared memory on the
// development VM, against 0-9 % this way.
RingAddFound ring_add_f32(float* dst, const float* src, std::size_t n, float divisor, bool test_dst,
                          bool test_src);

// Whether x / divisor == x * (1 / divisor) for every float x: divisor is a power of two
// whose reciprocal is a normal float.
bool divides_as_reciprocal(float divisor);

}  // namespace thinwire::detail
