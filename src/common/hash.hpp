// 64-bit FNV-1a, for the agreement check between ranks (not for security).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
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

// Digest of a large buffer, for checking that ranks hold the same bits (not for security):
// 8-byte words in four independent multiply-rotate lanes, so it runs at memory speed where
// Hasher (one byte at a time) would take longer than the collective it checks.
inline std::uint64_t content_digest(const void* data, std::size_t n) {
  constexpr std::uint64_t kMul = 0x9e3779b97f4a7c15ull;  // 2^64 / golden ratio, odd
  constexpr std::uint64_t kAdd = 0xd6e8feb86659fd93ull;
  auto mix = [&](std::uint64_t acc, std::uint64_t w) {
    acc += w * kAdd;
    acc = (acc << 29) | (acc >> 35);
    return acc * kMul;
  };
  const auto* p = static_cast<const unsigned char*>(data);
  std::uint64_t lane[4] = {1, 2, 3, 4};
  std::size_t i = 0;
  for (; i + 32 <= n; i += 32)
    for (int l = 0; l < 4; ++l) {
      std::uint64_t w;
      std::memcpy(&w, p + i + 8 * l, 8);
      lane[l] = mix(lane[l], w);
    }
  Hasher tail;
  tail.u64(n).bytes(p + i, n - i);
  std::uint64_t h = tail.value();
  for (std::uint64_t v : lane) h = mix(h, v);
  return h;
}

}  // namespace thinwire::detail
