// Many Philox uniforms at once on the host: one block per four elements, several blocks per
// vector (SSE2: 4, AVX2: 8). Bit-identical to RandomStream::uniform().
#pragma once

#include <cstddef>
#include <cstdint>

#include "common/philox.hpp"

namespace thinwire::detail {

// out[j] = rng.uniform(first + j) for j in [0, count).
void fill_uniforms(const RandomStream& rng, std::uint64_t first, std::size_t count, float* out);

}  // namespace thinwire::detail
