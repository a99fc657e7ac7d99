// The contract every decoder is fuzzed against (compress/compressor.hpp):
//   - validate() and decode() accept exactly the same payloads, rejecting the others with
//     Error(invalid_argument);
//   - a rejected payload leaves the output untouched;
//   - every SIMD path the CPU offers decodes to the same bits as the scalar one.
// Out-of-bounds accesses and undefined behaviour are caught by the sanitizers.
#pragma once

#include <cstring>
#include <vector>

#include "common/simd.hpp"
#include "compress/compressor.hpp"
#include "fuzz_support.hpp"

namespace thinwire::fuzz {

// What the output holds before decoding: arbitrary but fixed values (accumulate adds to them).
inline std::vector<float> canary(std::size_t n) {
  std::vector<float> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<float>(i % 7) - 3.25f;
  return v;
}

// memcmp() == 0 that allows empty (possibly null) buffers.
inline bool same_bits(const float* a, const float* b, std::size_t n) {
  return n == 0 || std::memcmp(a, b, n * sizeof(float)) == 0;
}

inline void check_decoder(const detail::Compressor& codec, const std::uint8_t* payload,
                          std::size_t size, std::size_t n, detail::DecodeMode mode) {
  using detail::SimdLevel;
  const detail::PayloadSource src{"fuzz", 1, 0};
  bool valid = true;
  try {
    codec.validate(payload, size, n, src);
  } catch (const Error& e) {
    if (e.code() != ErrorCode::invalid_argument) violated("validate: wrong error code");
    valid = false;
  }
  detail::set_simd_cap(SimdLevel::avx2);
  const SimdLevel best = detail::simd_level();
  const std::vector<float> before = canary(n);
  std::vector<float> reference;
  for (SimdLevel level : {SimdLevel::scalar, SimdLevel::sse2, SimdLevel::avx2}) {
    if (level > best) break;
    detail::set_simd_cap(level);
    std::vector<float> out = before;
    bool decoded = true;
    try {
      codec.decode(payload, size, n, out.data(), mode, src);
    } catch (const Error& e) {
      if (e.code() != ErrorCode::invalid_argument) violated("decode: wrong error code");
      decoded = false;
    }
    if (decoded != valid) violated("validate() and decode() disagree on a payload");
    if (!decoded && !same_bits(out.data(), before.data(), n))
      violated("decode() wrote into the output before rejecting the payload");
    if (level == SimdLevel::scalar)
      reference = out;
    else if (!same_bits(out.data(), reference.data(), n))
      violated("a SIMD path decoded different bits than the scalar path");
  }
  detail::set_simd_cap(SimdLevel::avx2);
}

}  // namespace thinwire::fuzz
