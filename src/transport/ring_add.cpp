#include "transport/ring_add.hpp"

#include <cmath>

namespace thinwire::detail {

namespace {

enum class Op { add, divide, multiply };

template <Op op>
inline float combine(float d, float s, float factor) {
  if constexpr (op == Op::add) return d + s;
  if constexpr (op == Op::divide) return (d + s) / factor;
  return (d + s) * factor;
}

template <Op op>
void combine_range(float* dst, const float* src, std::size_t n, float factor) {
  for (std::size_t i = 0; i < n; ++i) dst[i] = combine<op>(dst[i], src[i], factor);
}

template <Op op, bool kTestDst, bool kTestSrc>
RingAddFound add_testing_ahead(float* dst, const float* src, std::size_t n, float factor) {
  constexpr std::size_t kBlock = kNonFiniteBlock;
  RingAddFound found;
  auto search = [&](std::size_t b, std::size_t m) {  // the rare path: exact positions
    if (kTestDst && found.dst == kAllFinite) {
      const std::size_t at = first_non_finite_f32(dst + b, m);
      if (at != kAllFinite) found.dst = b + at;
    }
    if (kTestSrc && found.src == kAllFinite) {
      const std::size_t at = first_non_finite_f32(src + b, m);
      if (at != kAllFinite) found.src = b + at;
    }
  };
  auto flagged = [&](std::size_t b, std::size_t m) {
    return (kTestDst && any_with_exponent<AliasU32>(reinterpret_cast<const AliasU32*>(dst + b), m,
                                                    kF32Exponent)) ||
           (kTestSrc && any_with_exponent<AliasU32>(reinterpret_cast<const AliasU32*>(src + b), m,
                                                    kF32Exponent));
  };
  if (n && flagged(0, n < kBlock ? n : kBlock)) search(0, n < kBlock ? n : kBlock);
  for (std::size_t b = 0; b < n; b += kBlock) {
    const std::size_t m = n - b < kBlock ? n - b : kBlock;
    const std::size_t next = b + m;
    const std::size_t m_next = next >= n ? 0 : (n - next < kBlock ? n - next : kBlock);
    if (m == kBlock && m_next == kBlock) {
      const auto* nd = reinterpret_cast<const AliasU32*>(dst + next);
      const auto* ns = reinterpret_cast<const AliasU32*>(src + next);
      float* d = dst + b;
      const float* s = src + b;
      std::uint32_t any = 0;
      for (std::size_t i = 0; i < kBlock; ++i) {
        if (kTestDst) any |= exponent_carry<std::uint32_t>(nd[i], kF32Exponent);
        if (kTestSrc) any |= exponent_carry<std::uint32_t>(ns[i], kF32Exponent);
        d[i] = combine<op>(d[i], s[i], factor);
      }
      if (any & carry_bit(kF32Exponent)) search(next, m_next);
    } else {
      combine_range<op>(dst + b, src + b, m, factor);
      if (m_next && flagged(next, m_next)) search(next, m_next);
    }
  }
  return found;
}

template <Op op>
RingAddFound add(float* dst, const float* src, std::size_t n, float factor, bool test_dst,
                 bool test_src) {
  if (test_dst && test_src) return add_testing_ahead<op, true, true>(dst, src, n, factor);
  if (test_dst) return add_testing_ahead<op, true, false>(dst, src, n, factor);
  if (test_src) return add_testing_ahead<op, false, true>(dst, src, n, factor);
  combine_range<op>(dst, src, n, factor);
  return {};
}

}  // namespace

bool divides_as_reciprocal(float divisor) {
  int exponent = 0;
  const float mantissa = std::frexp(divisor, &exponent);
  // divisor = 2^(exponent-1); its reciprocal 2^(1-exponent) must be a normal float.
  return mantissa == 0.5f && 1 - exponent >= -126 && 1 - exponent <= 127;
}

RingAddFound ring_add_f32(float* dst, const float* src, std::size_t n, float divisor, bool test_dst,
                          bool test_src) {
  if (divisor == 1.0f) return add<Op::add>(dst, src, n, 1.0f, test_dst, test_src);
  if (divides_as_reciprocal(divisor))
    return add<Op::multiply>(dst, src, n, 1.0f / divisor, test_dst, test_src);
  return add<Op::divide>(dst, src, n, divisor, test_dst, test_src);
}

}  // namespace thinwire::detail
