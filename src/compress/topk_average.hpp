// The average of P top-k payloads as every rank computes it after their allgather.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "compress/topk_codec.hpp"

namespace thinwire::detail {

// `out` (n elements) zeroed, each payload's entries added in rank order, then each entry that
// any payload touched divided by P once, so that every rank holds the same bits. `touched` is
// scratch for a bitmap of n bits. The step's decode (SparseAllgather) and the cost model's
// kernel probe (measure_rates) both run this, so the probe times the passes a step pays,
// the division's second walk over the entries included.
void average_topk(const TopkCodec::View* views, int p, float* out, std::size_t n,
                  std::vector<std::uint64_t>& touched);

}  // namespace thinwire::detail
