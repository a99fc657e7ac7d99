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

// The exponent field of `bits` plus its lowest bit: it carries into the bit above the field
// (carry_bit) exactly when the field is all ones, a NaN or an infinity. And and add only, so
// OR-ed over a block it vectorizes even for SSE2.
template <typename Bits>
constexpr Bits exponent_carry(Bits bits, Bits exponent) {
  return static_cast<Bits>((bits & exponent) + (exponent & (~exponent + 1u)));
}
template <typename Bits>
constexpr Bits carry_bit(Bits exponent) {
  return static_cast<Bits>(exponent + (exponent & (~exponent + 1u)));
}
constexpr std::uint32_t kF32Exponent = 0x7f800000u;

// Whether any element of p[0, n) has all its `exponent` bits set.
template <typename Bits>
bool any_with_exponent(const Bits* p, std::size_t n, Bits exponent) {
  Bits any = 0;
  for (std::size_t i = 0; i < n; ++i) any |= exponent_carry<Bits>(p[i], exponent);
  return (any & carry_bit(exponent)) != 0;
}

// Elements per block of the scans: a block is tested as a whole and searched only when it
// holds a non-finite element; a fused loop (ring_add.hpp) tests a block while it is in L1.
// Blocks of 256 measured faster there than of 1024 or 16384 on the development VM.
constexpr std::size_t kNonFiniteBlock = 256;

// Index of the first element of p[0, n) whose `exponent` bits are all set, or kAllFinite.
template <typename Bits>
std::size_t first_with_exponent(const Bits* p, std::size_t n, Bits exponent) {
  for (std::size_t i = 0; i < n; i += kNonFiniteBlock) {
    const std::size_t m = n - i < kNonFiniteBlock ? n - i : kNonFiniteBlock;
    if (!any_with_exponent(p + i, m, exponent)) continue;
    for (std::size_t j = i; j < i + m; ++j)
      if ((p[j] & exponent) == exponent) return j;
  }
  return kAllFinite;
}

// Index of the first NaN or infinity of x[0, n), or kAllFinite.
inline std::size_t first_non_finite_f32(const float* x, std::size_t n) {
  static_assert(sizeof(float) == sizeof(std::uint32_t), "IEEE binary32 floats");
  return first_with_exponent<AliasU32>(reinterpret_cast<const AliasU32*>(x), n, kF32Exponent);
}

// Runs `body(begin, end)` over [0, n) block by block and returns the index of the first NaN
// or infinity of what it wrote to `out` (kAllFinite if none), testing each block while it is
// in cache: a check of the outputs that costs no pass of its own.
template <typename Body>
std::size_t run_then_check_blocks(const float* out, std::size_t n, Body&& body) {
  std::size_t first = kAllFinite;
  for (std::size_t i = 0; i < n; i += kNonFiniteBlock) {
    const std::size_t m = n - i < kNonFiniteBlock ? n - i : kNonFiniteBlock;
    body(i, i + m);
    if (first == kAllFinite) {
      const std::size_t at = first_non_finite_f32(out + i, m);
      if (at != kAllFinite) first = i + at;
    }
  }
  return first;
}

}  // namespace thinwire::detail
