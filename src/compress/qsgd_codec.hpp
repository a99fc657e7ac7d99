// qsgd: b-bit (2..8) stochastic quantisation in buckets, one f32 scale per bucket.
// `contractive` (used whenever error feedback is on) shrinks each bucket's scale by
// 1/(1 + omega_b), see qsgd_contraction(); without it the codec is unbiased.
#pragma once

#include <vector>

#include "compress/compressor.hpp"

namespace thinwire::detail {

class QsgdCodec final : public Compressor {
 public:
  QsgdCodec(int bits, std::size_t bucket, bool contractive = false)
      : bits_(bits), bucket_(bucket), contractive_(contractive) {}
  Method method() const override { return Method::qsgd; }
  std::size_t encoded_bytes(std::size_t n) const override;
  EncodeResult encode(const float* x, std::size_t n, const EncodeKey& key, std::uint8_t* out,
                      float* residual) override;
  void validate(const std::uint8_t* payload, std::size_t size, std::size_t n,
                const PayloadSource& src) const override;
  void decode(const std::uint8_t* payload, std::size_t size, std::size_t n, float* out,
              DecodeMode mode, const PayloadSource& src) const override;

 private:
  std::size_t body_bytes(std::size_t n) const;
  int bits_;
  std::size_t bucket_;
  bool contractive_;
  static constexpr std::size_t kTile = 4096;  // codes unpacked at a time (a multiple of 8)
  // Scratch for one bucket between passes: uniforms, signed levels, codes.
  std::vector<float> uniforms_;
  std::vector<std::int8_t> levels_;
  std::vector<std::uint8_t> bucket_codes_;
  mutable std::vector<std::uint8_t> tile_codes_;  // decode/validate scratch
};

}  // namespace thinwire::detail
