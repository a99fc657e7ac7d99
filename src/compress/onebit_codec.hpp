// onebit: one scale s = ||x||_2 / sqrt(n) and one sign bit per element (as in 1-bit Adam).
#pragma once

#include "compress/compressor.hpp"

namespace thinwire::detail {

// The header and scale of a 1-bit payload of n elements (the sign bits follow at
// out + kHeaderBytes + 4).
void onebit_write_header(std::uint8_t* out, std::size_t n, DType dtype, float scale);

class OnebitCodec final : public Compressor {
 public:
  Method method() const override { return Method::onebit; }
  std::size_t encoded_bytes(std::size_t n) const override;
  EncodeResult encode(const float* x, std::size_t n, const EncodeKey& key, std::uint8_t* out,
                      float* residual) override;
  void validate(const std::uint8_t* payload, std::size_t size, std::size_t n,
                const PayloadSource& src) const override;
  void decode(const std::uint8_t* payload, std::size_t size, std::size_t n, float* out,
              DecodeMode mode, const PayloadSource& src) const override;
};

}  // namespace thinwire::detail
