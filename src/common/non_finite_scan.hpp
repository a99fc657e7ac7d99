// Finding NaN and infinity by their bits (an element is non-finite when all its exponent
// bits are set): no floating-point compares, blocks tested with OR-reductions that the
// compiler vectorizes. Shared by the Reducer's check before a step and the transports'
// checks that ride on a dense sum's own passes (transport/average.hpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace thinwire::detail {

constexpr std::size_t kAllFinite = static_cast<std::size_t>(-1);

// The scans read float memory as integers, possibly right after a loop wrote it as floats:
// may_alias keeps the compiler from reordering those reads before the writes.
#if defined(__GNUC__) || defined(__clang__)
using AliasU32 = std::uint32_t __attribute__((may_alias));
using AliasU16 = std::uint16_t __attribute__((may_alias));
#else
using AliasU32 = std::uint32_t;
using AliasU16 = std::uint16_t;
#endif

// Elements per block of the scans: a block is tested as a whole and searched only when it
// holds a non-finite element, and a fused loop tests a block while it is in L1.
constexpr std::size_t kNonFiniteBlock = 64;

// Index of the first element of p[0, n) whose `exponent` bits are all set, or kAllFinite.
template <typename Bits>
std::size_t first_with_exponent(const Bits* p, std::size_t n, Bits exponent) {
  std::size_t i = 0;
  for (; i + kNonFiniteBlock <= n; i += kNonFiniteBlock) {
    Bits any = 0;
    for (std::size_t j = 0; j < kNonFiniteBlock; ++j)
      any |= static_cast<Bits>((p[i + j] & exponent) == exponent);
    if (any) break;
  }
  for (; i < n; ++i)
    if ((p[i] & exponent) == exponent) return i;
  return kAllFinite;
}

// Index of the first NaN or infinity of x[0, n), or kAllFinite.
inline std::size_t first_non_finite_f32(const float* x, std::size_t n) {
  static_assert(sizeof(float) == sizeof(std::uint32_t), "IEEE binary32 floats");
  return first_with_exponent<AliasU32>(reinterpret_cast<const AliasU32*>(x), n, 0x7f800000u);
}

// Runs `body(begin, end)` over [0, n) in chunks of a few blocks and returns the index of the
// first NaN or infinity of `x` (kAllFinite if none), testing each chunk of x while it is in
// cache: before the body runs on it (check_then_run_blocks: the inputs, which the body may
// overwrite) or after (run_then_check_blocks: what the body wrote). A check that costs no
// pass of its own.
template <bool kAfterBody, typename Body>
std::size_t run_blocks_checking(const float* x, std::size_t n, Body&& body) {
  std::size_t first = kAllFinite;
  constexpr std::size_t kChunk = 16 * kNonFiniteBlock;
  for (std::size_t i = 0; i < n; i += kChunk) {
    const std::size_t m = n - i < kChunk ? n - i : kChunk;
    if (kAfterBody) body(i, i + m);
    if (first == kAllFinite) {
      const std::size_t at = first_non_finite_f32(x + i, m);
      if (at != kAllFinite) first = i + at;
    }
    if (!kAfterBody) body(i, i + m);
  }
  return first;
}
template <typename Body>
std::size_t check_then_run_blocks(const float* x, std::size_t n, Body&& body) {
  return run_blocks_checking<false>(x, n, body);
}
template <typename Body>
std::size_t run_then_check_blocks(const float* out, std::size_t n, Body&& body) {
  return run_blocks_checking<true>(out, n, body);
}

}  // namespace thinwire::detail
