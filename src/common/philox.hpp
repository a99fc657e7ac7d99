// Philox4x32-10 (Salmon et al., SC'11): the counter-based generator behind every random
// number thinwire draws, so that the host backend and the CUDA kernels draw the same ones.
#pragma once

#include <cstdint>

#include "common/host_device.hpp"

namespace thinwire::detail {

struct Philox4 {
  std::uint32_t v[4];
};

TW_HD Philox4 philox4x32_10(std::uint32_t c0, std::uint32_t c1, std::uint32_t c2, std::uint32_t c3,
                            std::uint32_t k0, std::uint32_t k1) {
  for (int round = 0; round < 10; ++round) {
    if (round > 0) {
      k0 += 0x9E3779B9u;
      k1 += 0xBB67AE85u;
    }
    const std::uint64_t p0 = static_cast<std::uint64_t>(0xD2511F53u) * c0;
    const std::uint64_t p1 = static_cast<std::uint64_t>(0xCD9E8D57u) * c2;
    const std::uint32_t hi0 = static_cast<std::uint32_t>(p0 >> 32),
                        lo0 = static_cast<std::uint32_t>(p0);
    const std::uint32_t hi1 = static_cast<std::uint32_t>(p1 >> 32),
                        lo1 = static_cast<std::uint32_t>(p1);
    c0 = hi1 ^ c1 ^ k0;
    c1 = lo1;
    c2 = hi0 ^ c3 ^ k1;
    c3 = lo0;
  }
  return Philox4{{c0, c1, c2, c3}};
}

// A uniform float in [0, 1) from the top 24 bits of r: every value is exact in f32.
TW_HD float uniform_from_bits(std::uint32_t r) {
  return static_cast<float>(r >> 8) * 5.9604644775390625e-08f;
}

// The stream of one (seed, layer, phase, step, rank): element i draws lane i%4 of the block
// with counter (i/4 low, i/4 high ^ phase<<24, step, rank) under key (seed low,
// seed high ^ layer*golden). Documented in README "Wire format and reproducibility".
struct RandomStream {
  std::uint32_t k0, k1, phase_bits, step, rank;

  TW_HD static RandomStream make(std::uint64_t seed, std::uint32_t layer, std::uint32_t phase,
                                 std::uint64_t step, std::uint32_t rank) {
    return RandomStream{static_cast<std::uint32_t>(seed),
                        static_cast<std::uint32_t>(seed >> 32) ^ (layer * 0x9E3779B9u), phase << 24,
                        static_cast<std::uint32_t>(step), rank};
  }
  TW_HD Philox4 block(std::uint64_t b) const {
    return philox4x32_10(static_cast<std::uint32_t>(b),
                         static_cast<std::uint32_t>(b >> 32) ^ phase_bits, step, rank, k0, k1);
  }
  TW_HD float uniform(std::uint64_t i) const { return uniform_from_bits(block(i >> 2).v[i & 3]); }
};

// Phases keep the streams of different uses apart.
enum RandomPhase : std::uint32_t {
  kPhaseWorker = 0,  // qsgd encode on the sending rank
  kPhaseServer = 1,  // qsgd re-encode on the rank that owns the chunk
  kPhaseInit = 2,    // PowerSGD's first Q
  kPhaseSample = 3,  // sampled top-k threshold
};

}  // namespace thinwire::detail
