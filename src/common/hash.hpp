// 64-bit FNV-1a, for the agreement check between ranks (not for security).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace thinwire::detail {

class Hasher {
 public:
  Hasher& bytes(const void* data, std::size_t n) {
    const auto* p = static_cast<const unsigned char*>(data);
    for (std::size_t i = 0; i < n; ++i) {
      h_ ^= p[i];
      h_ *= 0x100000001b3ull;
    }
    return *this;
  }
  Hasher& u64(std::uint64_t v) {
    unsigned char b[8];
    for (int i = 0; i < 8; ++i) b[i] = static_cast<unsigned char>(v >> (8 * i));
    return bytes(b, 8);
  }
  // Length-prefixed, so that ("ab","c") and ("a","bc") differ.
  Hasher& str(std::string_view s) { return u64(s.size()).bytes(s.data(), s.size()); }
  std::uint64_t value() const { return h_; }

 private:
  std::uint64_t h_ = 0xcbf29ce484222325ull;
};

}  // namespace thinwire::detail
