// Host kernels of top-k selection (AVX2 or SSE2 where available, scalar otherwise; see
// common/simd.hpp): the pass over a whole layer that collects the entries whose
// magnitude_key() reaches a bound.
#pragma once

#include <cstddef>
#include <cstdint>

#include "common/simd.hpp"
#include "compress/topk_select.hpp"

namespace thinwire::detail::topk {

// Entries (index and value) in index order, with room for `capacity` (>= 8) of them.
struct HitList {
  std::uint32_t* index = nullptr;
  float* value = nullptr;
  std::size_t size = 0, capacity = 0;
};

// Appends the entries of x[begin..n) (begin a multiple of 8) with key >= lo to `hits`, in
// blocks of 8. Before each block it stops, returning the block's start, when `hits` has
// fewer than 8 free entries; otherwise it returns n. With `below` it adds x^2 of the
// entries with key < lo to lane i % 8 of *below.
//
// `dense` says hits are expected in many blocks: the loop then packs every block without
// branching on it (cheaper than mispredicting a branch on one block in ten); otherwise it
// skips the blocks without hits.
std::size_t scan(const float* x, std::size_t begin, std::size_t n, std::uint32_t lo, bool dense,
                 HitList* hits, Lanes8* below);

// The same pass over x = e + g (the f32 sum, e first), which it writes into e[begin..stop).
std::size_t scan_ef(float* e, const float* g, std::size_t begin, std::size_t n, std::uint32_t lo,
                    bool dense, HitList* hits, Lanes8* below);

// e[i] += g[i] over [begin, n).
void add_into(float* e, const float* g, std::size_t begin, std::size_t n);

// Counts of key >> shift over x[0..n) into hist[0 .. 2^(31-shift)) (keys are < 2^31).
void histogram_high(const float* x, std::size_t n, int shift, std::uint32_t* hist);

}  // namespace thinwire::detail::topk
