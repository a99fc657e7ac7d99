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

// How many payloads the timings of average_topk stand for the ranks' (measure_rates' probe and
// thinwire-bench-codec's BM_topk_average): enough that the entries outweigh the zeroing and
// scheduling noise does not decide their rate.
constexpr int kTopkTimingPayloads = 16;

// A top-k payload of k entries over n elements (a whole wire payload: header, indices, values)
// with every index moved by `shift` (mod n), its indices still strictly increasing: the entries
// that wrap around come first. For timings: the ranks' payloads touch different entries, and
// one payload added repeatedly finds its entries in cache after the first round.
std::vector<std::uint8_t> shifted_topk_payload(const std::vector<std::uint8_t>& payload,
                                               std::size_t k, std::size_t n, std::size_t shift);

}  // namespace thinwire::detail
