#include "reducer/non_finite.hpp"

#include <cstdint>
#include <cstring>

namespace thinwire::detail {

namespace {

// An element is non-finite when all its exponent bits are set.
template <typename Bits>
std::size_t scan(const void* data, std::size_t n, Bits exponent) {
  const auto* p = static_cast<const Bits*>(data);
  constexpr std::size_t kBlock = 64;
  std::size_t i = 0;
  for (; i + kBlock <= n; i += kBlock) {
    Bits any = 0;
    for (std::size_t j = 0; j < kBlock; ++j)
      any |= static_cast<Bits>((p[i + j] & exponent) == exponent);
    if (any) break;
  }
  for (; i < n; ++i)
    if ((p[i] & exponent) == exponent) return i;
  return kAllFinite;
}

}  // namespace

std::size_t first_non_finite(const TensorView& v) {
  switch (v.dtype()) {
    case DType::f32:
      return scan<std::uint32_t>(v.data(), v.numel(), 0x7f800000u);
    case DType::f16:
      return scan<std::uint16_t>(v.data(), v.numel(), 0x7c00u);
    case DType::bf16:
      return scan<std::uint16_t>(v.data(), v.numel(), 0x7f80u);
  }
  return kAllFinite;
}

}  // namespace thinwire::detail
