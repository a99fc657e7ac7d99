// What a two-phase chunk codec (onebit, qsgd: kernels::ChunkCodec) writes on the wire, shared
// by the CUDA launchers (onebit.cu, qsgd.cu) and their CPU emulation (emulated/two_phase.cpp)
// so that both accept the same codecs and check payloads against the same header.
#pragma once

#include <cstdint>
#include <string>

#include "common/host_device.hpp"
#include "compress/wire_check.hpp"
#include "launch.hpp"
#include "thinwire/config.hpp"

namespace thinwire::kernels::chunk {

constexpr auto kOnebit = static_cast<std::uint8_t>(Method::onebit);
constexpr auto kQsgd = static_cast<std::uint8_t>(Method::qsgd);

TW_HD std::uint64_t ceil_div(std::uint64_t a, std::uint64_t b) {
  return a / b + (a % b != 0);
}

// Bytes after the header for a chunk of n elements (the host codecs' body_bytes()).
TW_HD std::uint64_t body_bytes(const ChunkCodec& c, std::uint64_t n) {
  if (c.method == kOnebit) return 4 + ceil_div(n, 8);
  return 4 * ceil_div(n, c.bucket) + ceil_div(n * static_cast<std::uint64_t>(c.bits), 8);
}

// The header a payload of n elements must carry (wire_check_header's expectation).
TW_HD detail::WireExpect wire_expect(const ChunkCodec& c, std::uint64_t n) {
  detail::WireExpect e{};
  e.method = c.method;
  e.n = n;
  e.param = c.method == kOnebit ? 1u : static_cast<std::uint32_t>(c.bits);
  e.aux = c.method == kOnebit ? 0u : static_cast<std::uint32_t>(c.bucket);
  e.check_aux = c.method == kQsgd;
  e.body_bytes = body_bytes(c, n);
  return e;
}

// Empty when the launchers can serve `c`, else why not.
inline std::string check(const ChunkCodec& c) {
  if (c.method == kOnebit) return {};
  if (c.method != kQsgd) return "two-phase codec: method must be onebit or qsgd";
  if (c.bits < 2 || c.bits > 8) return "two-phase codec: qsgd bits must be in 2..8";
  if (c.bucket < 1) return "two-phase codec: qsgd bucket must be >= 1";
  return {};
}

}  // namespace thinwire::kernels::chunk
