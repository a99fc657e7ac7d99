// Little-endian loads and stores for the wire format, and overflow-checked size arithmetic.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "thinwire's wire format is little-endian and is written with plain stores");

namespace thinwire::detail {

template <typename T>
inline void store_le(std::uint8_t* p, T v) {
  static_assert(std::is_trivially_copyable_v<T>);
  std::memcpy(p, &v, sizeof v);
}
template <typename T>
inline T load_le(const std::uint8_t* p) {
  static_assert(std::is_trivially_copyable_v<T>);
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// a*b and a+b, false on overflow.
inline bool mul_ok(std::size_t a, std::size_t b, std::size_t* out) {
  return !__builtin_mul_overflow(a, b, out);
}
inline bool add_ok(std::size_t a, std::size_t b, std::size_t* out) {
  return !__builtin_add_overflow(a, b, out);
}

inline std::size_t ceil_div(std::size_t a, std::size_t b) {
  return a / b + (a % b != 0);
}

}  // namespace thinwire::detail
