// The wire header written and checked by per-element code that the host backend and the
// CUDA kernels share (TW_HD): a device decoder cannot throw, so it reports a DecodeError
// code (kernels/launch.hpp) that the host turns into thinwire::Error after the step.
// Layout: compress/wire_format.hpp.
#pragma once

#include <cstdint>

#include "common/host_device.hpp"

namespace thinwire::detail {

// Little-endian loads and stores one byte at a time: payload slots are not aligned.
TW_HD std::uint32_t wire_load_u32(const std::uint8_t* p) {
  return static_cast<std::uint32_t>(p[0]) | static_cast<std::uint32_t>(p[1]) << 8 |
         static_cast<std::uint32_t>(p[2]) << 16 | static_cast<std::uint32_t>(p[3]) << 24;
}
TW_HD std::uint64_t wire_load_u64(const std::uint8_t* p) {
  return static_cast<std::uint64_t>(wire_load_u32(p)) |
         static_cast<std::uint64_t>(wire_load_u32(p + 4)) << 32;
}
TW_HD void wire_store_u32(std::uint8_t* p, std::uint32_t v) {
  p[0] = static_cast<std::uint8_t>(v);
  p[1] = static_cast<std::uint8_t>(v >> 8);
  p[2] = static_cast<std::uint8_t>(v >> 16);
  p[3] = static_cast<std::uint8_t>(v >> 24);
}
TW_HD void wire_store_u64(std::uint8_t* p, std::uint64_t v) {
  wire_store_u32(p, static_cast<std::uint32_t>(v));
  wire_store_u32(p + 4, static_cast<std::uint32_t>(v >> 32));
}

// What a payload for a given layer (or chunk) must say.
struct WireExpect {
  std::uint8_t method;  // thinwire::Method
  std::uint64_t n;
  std::uint32_t param;  // topk: k; onebit: 1; qsgd: bits
  std::uint32_t aux;    // qsgd: bucket; else 0 (not checked for topk/onebit, as the host)
  bool check_aux;
  std::uint64_t body_bytes;
};

// Writes the 32-byte header (magic "TWR1", version 1).
TW_HD void wire_write_header(std::uint8_t* out, std::uint8_t method, std::uint8_t dtype,
                             std::uint64_t n, std::uint32_t param, std::uint32_t aux,
                             std::uint64_t body_bytes) {
  wire_store_u32(out + 0, 0x31525754u);
  out[4] = 1;
  out[5] = 0;
  out[6] = method;
  out[7] = dtype;
  wire_store_u64(out + 8, n);
  wire_store_u32(out + 16, param);
  wire_store_u32(out + 20, aux);
  wire_store_u64(out + 24, body_bytes);
}

// kDecodeOk (0) when the header of a payload of `size` bytes says what `e` expects, else
// the kernels::DecodeError code of the first field at fault (codes as in launch.hpp:
// 1 magic/version/size/dtype, 2 method, 3 n, 4 param, 5 aux, 6 body) and *detail = the
// field's value. A poison block (magic 0x58505754) reports 9 with *detail = its code.
TW_HD std::uint32_t wire_check_header(const std::uint8_t* p, std::uint64_t size,
                                      const WireExpect& e, std::uint64_t* detail) {
  *detail = 0;
  if (size < 32) return 1;
  const std::uint32_t magic = wire_load_u32(p);
  if (magic == 0x58505754u) {
    *detail = size >= 8 ? wire_load_u32(p + 4) : 0;
    return 9;
  }
  if (magic != 0x31525754u || p[4] != 1 || p[5] != 0 || p[7] > 2) {
    *detail = magic;
    return 1;
  }
  if (p[6] != e.method) {
    *detail = p[6];
    return 2;
  }
  const std::uint64_t n = wire_load_u64(p + 8);
  if (n != e.n) {
    *detail = n;
    return 3;
  }
  const std::uint32_t param = wire_load_u32(p + 16);
  if (param != e.param) {
    *detail = param;
    return 4;
  }
  const std::uint32_t aux = wire_load_u32(p + 20);
  if (e.check_aux && aux != e.aux) {
    *detail = aux;
    return 5;
  }
  const std::uint64_t body = wire_load_u64(p + 24);
  if (body != e.body_bytes || body > size - 32) {
    *detail = body;
    return 6;
  }
  return 0;
}

// A poison block: magic, code, the rejected payload's sender, detail (20 bytes).
TW_HD void wire_write_poison(std::uint8_t* out, std::uint32_t code, std::uint32_t from_rank,
                             std::uint64_t detail) {
  wire_store_u32(out, 0x58505754u);
  wire_store_u32(out + 4, code);
  wire_store_u32(out + 8, from_rank);
  wire_store_u64(out + 12, detail);
}

// Chunk j of `parts` of a layer of n elements starts here (two-phase algorithms).
TW_HD std::uint64_t wire_chunk_begin(std::uint64_t n, int chunk, int parts) {
  return n * static_cast<std::uint64_t>(chunk) / static_cast<std::uint64_t>(parts);
}

}  // namespace thinwire::detail
