// Compressor: encode/decode of ONE tensor or chunk, host backend. The CUDA backend (kernels/)
// writes the same wire format.
#pragma once

#include <cstddef>
#include <cstdint>

#include "common/philox.hpp"
#include "compress/wire_format.hpp"

namespace thinwire::detail {

// Where the encoded values sit, for counter-based randomness: element i of the chunk is
// element `offset + i` of layer `layer`.
struct EncodeKey {
  std::uint64_t seed = 0;
  std::uint64_t step = 0;
  std::uint32_t layer = 0;
  std::uint32_t rank = 0;
  std::uint32_t phase = kPhaseWorker;
  std::uint64_t offset = 0;
  DType dtype = DType::f32;  // recorded in the header
};

struct EncodeResult {
  std::size_t bytes = 0;  // header + body written
  double sq_error = 0.0;  // ||x - decoded||^2
  double sq_norm = 0.0;   // ||x||^2
};

enum class DecodeMode { assign, accumulate };

class Compressor {
 public:
  virtual ~Compressor() = default;
  virtual Method method() const = 0;
  // The exact size encode() writes for n elements (fixed for given n: collectives need it).
  virtual std::size_t encoded_bytes(std::size_t n) const = 0;
  // Encodes x[0..n) into out[0..encoded_bytes(n)). When `residual` is non-null it receives
  // x - decoded, computed as that f32 subtraction (error feedback's invariant); it may
  // alias x.
  virtual EncodeResult encode(const float* x, std::size_t n, const EncodeKey& key,
                              std::uint8_t* out, float* residual) = 0;
  // Checks every field and code of the payload against n; throws Error(invalid_argument)
  // naming `src` on anything a correct encoder could not have written.
  virtual void validate(const std::uint8_t* payload, std::size_t size, std::size_t n,
                        const PayloadSource& src) const = 0;
  // validate(), then writes (assign) or adds (accumulate) the decoded values into
  // out[0..n). Never reads or writes out of bounds, and writes nothing on a corrupt payload.
  virtual void decode(const std::uint8_t* payload, std::size_t size, std::size_t n, float* out,
                      DecodeMode mode, const PayloadSource& src) const = 0;
};

}  // namespace thinwire::detail
