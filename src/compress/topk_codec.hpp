// topk: the k = ceil(density * n) largest-magnitude entries as (uint32 index, f32 value) pairs.
#pragma once

#include <vector>

#include "compress/compressor.hpp"
#include "compress/topk_select.hpp"
#include "thinwire/config.hpp"

namespace thinwire::detail {

// k for a layer of n elements: ceil(density * n), at least 1 for a non-empty layer.
std::size_t topk_count(double density, std::size_t n);

class TopkCodec final : public Compressor {
 public:
  TopkCodec(double density, Selection select) : density_(density), select_(select) {}
  Method method() const override { return Method::topk; }
  std::size_t encoded_bytes(std::size_t n) const override;
  EncodeResult encode(const float* x, std::size_t n, const EncodeKey& key, std::uint8_t* out,
                      float* residual) override;
  // Error feedback fused into the selection pass: x = e + g (the f32 sum, e first) is
  // encoded exactly as encode(x, ..., residual = x) would, and e becomes the residual
  // x - C(x). One pass over e and g, where the generic path takes three.
  EncodeResult encode_ef(float* e, const float* g, std::size_t n, const EncodeKey& key,
                         std::uint8_t* out);
  void validate(const std::uint8_t* payload, std::size_t size, std::size_t n,
                const PayloadSource& src) const override {
    parse(payload, size, n, src);
  }
  void decode(const std::uint8_t* payload, std::size_t size, std::size_t n, float* out,
              DecodeMode mode, const PayloadSource& src) const override;

  // The validated (indices, values) view of a payload, for decoders that combine payloads.
  struct View {
    const std::uint8_t* indices;  // k little-endian uint32, strictly increasing, < n
    const std::uint8_t* values;   // k f32
    std::size_t k;
  };
  View parse(const std::uint8_t* payload, std::size_t size, std::size_t n,
             const PayloadSource& src) const;

  TopkSelector& selector() { return selector_; }

 private:
  // Header, indices_ and values_ (the selection of x); residual (x or another buffer, or null) gets
  // x with the sent entries zeroed. rest_sq: the sum of x^2 over the entries not sent.
  EncodeResult finish_encode(const float* x, std::size_t n, std::size_t k, const EncodeKey& key,
                             std::uint8_t* out, float* residual, double rest_sq);
  double density_;
  Selection select_;
  TopkSelector selector_;
  std::vector<std::uint32_t> indices_;
  std::vector<float> values_;
};

}  // namespace thinwire::detail
