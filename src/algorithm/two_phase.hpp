// Two-phase compressed allreduce for onebit and qsgd (1-bit Adam's scheme):
//   1. each rank splits x into P chunks and sends chunk j, compressed, to rank j (alltoall);
//   2. rank j decodes the P versions of its chunk, averages them in rank order, adds its
//      server error, compresses again (keeping the new server error) and the P compressed
//      chunks are allgathered; every rank decodes the same bytes, so all hold the same bits.
// Chunk j of a layer of n elements is [n*j/P, n*(j+1)/P). All layers share the two
// collectives: block j of the alltoall holds chunk j of every layer, each in a slot sized
// for the largest chunk.
#pragma once

#include <cstdint>

#include "algorithm/algorithm.hpp"
#include "common/bytes.hpp"
#include "compress/compressor.hpp"

namespace thinwire::detail {

class TwoPhase final : public Algorithm {
 public:
  void run(const std::vector<StepLayer*>& layers, StepContext& ctx) override;

 private:
  void encode_onebit_ef(StepLayer& sl, const StepContext& ctx, std::uint8_t* out,
                        std::size_t stride);
  std::vector<std::size_t> bounds_;
  std::vector<std::uint8_t> send_, recv_, gather_send_, gather_recv_;
  std::vector<float> average_;
};

inline std::size_t chunk_begin(std::size_t n, int chunk, int parts) {
  return n * static_cast<std::size_t>(chunk) / static_cast<std::size_t>(parts);
}

// Bytes of a layer's slot in each block of both phases: the encoding of its largest chunk.
inline std::size_t two_phase_slot_bytes(const Compressor& codec, std::size_t n, int parts) {
  return codec.encoded_bytes(ceil_div(n, static_cast<std::size_t>(parts)));
}

}  // namespace thinwire::detail
