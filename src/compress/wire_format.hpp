// The payload header every compressed tensor (or chunk) starts with. Little-endian, 32 bytes:
//
//   offset size field
//        0    4 magic        0x31525754 ("TWR1")
//        4    2 version      1
//        6    1 method       thinwire::Method (topk 1, onebit 2, qsgd 3)
//        7    1 dtype        thinwire::DType of the gradient (values on the wire are f32)
//        8    8 n            elements the payload describes
//       16    4 param        topk: k; onebit: 1; qsgd: bits
//       20    4 aux          qsgd: bucket size; else 0
//       24    8 body_bytes   bytes that follow the header
//
// Bodies (README "Wire format"): topk: k uint32 indices, strictly increasing, then k f32
// values; onebit: f32 scale, then ceil(n/8) bytes of sign bits (bit i%8 of byte i/8 is 1 for
// x >= 0); qsgd: ceil(n/bucket) f32 scales, then n codes of `bits` bits packed LSB-first.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "thinwire/config.hpp"
#include "thinwire/dtype.hpp"

namespace thinwire::detail {

constexpr std::uint32_t kWireMagic = 0x31525754u;
constexpr std::uint16_t kWireVersion = 1;
constexpr std::size_t kHeaderBytes = 32;

struct PayloadHeader {
  Method method = Method::none;
  DType dtype = DType::f32;
  std::uint64_t n = 0;
  std::uint32_t param = 0;
  std::uint32_t aux = 0;
  std::uint64_t body_bytes = 0;
};

// Who sent a payload, for error messages: "corrupt topk payload from rank 3 for layer 'x'".
struct PayloadSource {
  std::string layer;
  int from_rank = -1;
  int rank = -1;  // the receiving rank
};

void write_header(std::uint8_t* out, const PayloadHeader& h);

// Parses the header of a payload of `size` bytes and checks magic, version, method, n and
// that header + body fit in `size`. Throws Error(invalid_argument) naming the source.
PayloadHeader read_header(const std::uint8_t* payload, std::size_t size, Method method,
                          std::uint64_t expected_n, const PayloadSource& src);

[[noreturn]] void corrupt_payload(const PayloadSource& src, Method method, const std::string& why);

}  // namespace thinwire::detail
