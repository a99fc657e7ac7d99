// ||x - C(x)||^2 of one layer's input x under every candidate parameter of a family, for
// L-GreCo's statistics. Local to this rank; nothing is sent.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "compress/compressor.hpp"

namespace thinwire::detail {

// Top-k: for each k, the sum of x^2 over the entries outside the k largest |x| (exact top-k:
// what the topk codec drops). One sort of x^2, then suffix sums.
std::vector<double> topk_errors(const float* x, std::size_t n, const std::vector<std::size_t>& ks);

// qsgd (or any codec): the error its encode() reports, x split into p chunks as the
// two-phase route splits it (worker side; the server's re-compression is not counted).
double codec_error(Compressor& codec, const float* x, std::size_t n, int p, const EncodeKey& key,
                   std::vector<std::uint8_t>& scratch);

// PowerSGD: for each rank r, the error of the best rank-r approximation of x viewed as a
// rows x cols matrix, ||M||^2 - (sigma_1^2 + ... + sigma_r^2): what PowerSGD's warm-started
// power iteration converges to. The singular values come from a randomised subspace
// iteration (Halko, Martinsson & Tropp 2011) with max(ranks) + 8 columns and two power
// iterations, in double precision, seeded by `seed` (local, no communication). The captured
// energy never exceeds the true top-r energy, so the estimate errs on the high side (by
// under 1 % on the tests' matrices with a flat noise tail).
std::vector<double> low_rank_errors(const float* x, std::size_t rows, std::size_t cols,
                                    const std::vector<std::size_t>& ranks, std::uint64_t seed);

}  // namespace thinwire::detail
