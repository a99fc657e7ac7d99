// The worker-side error-feedback memory of a 1-bit encoded layer, kept in factored form so
// that a training step reads and writes it once.
//
// Error feedback encodes x = g + e chunk by chunk and keeps e <- x - s*sign(x), with s the
// chunk's scale ||x||/sqrt(len). s needs all of x, so computing the new e eagerly takes a
// second pass over chunks that do not fit in cache. Instead this keeps raw = x and each
// chunk's s; e is raw - onebit_value(onebit_sign(raw), s), the same f32 expression the
// eager residual is, so it is materialised bit for bit when the next step reads it:
// one pass reads g and raw, writes raw = x' and the sign bits, and sums x'^2.
//
// Payloads and (materialised) memories are identical to the generic path, x = e + g then
// OnebitCodec::encode(x, residual = x). The per-chunk squared error is computed from the
// identity sum (x - s sign x)^2 = sum x^2 - 2 s sum |x| + len s^2 instead of from the f32
// residuals, so it may differ from the generic path's in the last bits.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "compress/compressor.hpp"

namespace thinwire::detail {

class OnebitErrorMemory {
 public:
  bool empty() const { return raw_.empty(); }
  std::size_t size() const { return raw_.size(); }

  // One error-feedback step over a layer of n elements split into `parts` chunks
  // [bounds[j], bounds[j+1]) (bounds[0] == 0, bounds[parts] == n): chunk j of x = e + g is
  // encoded, as OnebitCodec::encode would, into out + j * stride with `key` at offset
  // bounds[j], and e <- x - C(x). A memory of another size starts at zero. Returns the sums
  // over the chunks.
  EncodeResult encode(const float* g, std::size_t n, const std::size_t* bounds, std::size_t parts,
                      EncodeKey key, std::uint8_t* out, std::size_t stride);

  // e[0..size()): the memory, eagerly.
  void materialize(float* e) const;
  // Replaces the memory with e[0..n).
  void assign(const float* e, std::size_t n);
  void clear();

 private:
  // raw_ := e in place (drops the factored form).
  void flatten();

  std::vector<float> raw_;           // x of the last step (factored) or e itself
  std::vector<std::size_t> bounds_;  // the last step's chunks, when factored
  std::vector<float> scales_;        // the last step's chunk scales, when factored
  bool factored_ = false;
};

}  // namespace thinwire::detail
