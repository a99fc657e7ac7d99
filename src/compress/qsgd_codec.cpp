#include "compress/qsgd_codec.hpp"

#include <cstring>

#include "common/bytes.hpp"
#include "common/fail.hpp"
#include "compress/qsgd_math.hpp"

namespace thinwire::detail {

std::size_t QsgdCodec::body_bytes(std::size_t n) const {
  return 4 * ceil_div(n, bucket_) + ceil_div(n * static_cast<std::size_t>(bits_), 8);
}

std::size_t QsgdCodec::encoded_bytes(std::size_t n) const {
  return kHeaderBytes + body_bytes(n);
}

EncodeResult QsgdCodec::encode(const float* x, std::size_t n, const EncodeKey& key,
                               std::uint8_t* out, float* residual) {
  const int levels = qsgd_levels(bits_);
  const std::size_t n_buckets = ceil_div(n, bucket_);
  PayloadHeader h;
  h.method = Method::qsgd;
  h.dtype = key.dtype;
  h.n = n;
  h.param = static_cast<std::uint32_t>(bits_);
  h.aux = static_cast<std::uint32_t>(bucket_);
  h.body_bytes = body_bytes(n);
  write_header(out, h);
  std::uint8_t* scales = out + kHeaderBytes;
  std::uint8_t* codes = scales + 4 * n_buckets;
  std::memset(codes, 0, ceil_div(n * static_cast<std::size_t>(bits_), 8));

  const RandomStream rng = RandomStream::make(key.seed, key.layer, key.phase, key.step, key.rank);
  EncodeResult res;
  levels_.resize(bucket_ < n ? bucket_ : n);
  std::size_t bit_pos = 0;
  for (std::size_t b = 0; b < n_buckets; ++b) {
    const std::size_t begin = b * bucket_, end = begin + bucket_ < n ? begin + bucket_ : n;
    float scale = 0.0f;
    for (std::size_t i = begin; i < end; ++i) scale = qsgd_scale_step(scale, x[i]);
    // Draw the levels, and the rounding variance they carry, before the scale is final.
    double sq_norm = 0.0, variance = 0.0;
    for (std::size_t i = begin; i < end; ++i) {
      const float v = x[i];
      levels_[i - begin] =
          static_cast<std::int8_t>(qsgd_quantize(v, scale, levels, rng.uniform(key.offset + i)));
      const float frac = qsgd_fraction(v, scale, levels);
      sq_norm += static_cast<double>(v) * v;
      variance += static_cast<double>(frac) * (1.0f - frac);
    }
    if (contractive_) {
      const double step = static_cast<double>(scale) / levels;
      scale *= qsgd_contraction(sq_norm, variance * step * step);
    }
    store_le<float>(scales + 4 * b, scale);
    const float unit = qsgd_unit(scale, levels);
    for (std::size_t i = begin; i < end; ++i, bit_pos += static_cast<std::size_t>(bits_)) {
      const float v = x[i];
      const int q = levels_[i - begin];
      const auto code = static_cast<std::uint32_t>(q + levels);
      // Codes are at most 8 bits: they straddle at most two bytes.
      codes[bit_pos >> 3] |= static_cast<std::uint8_t>(code << (bit_pos & 7));
      if ((bit_pos & 7) + static_cast<std::size_t>(bits_) > 8)
        codes[(bit_pos >> 3) + 1] |= static_cast<std::uint8_t>(code >> (8 - (bit_pos & 7)));
      const float r = v - qsgd_value(q, unit);
      res.sq_error += static_cast<double>(r) * r;
      if (residual) residual[i] = r;
    }
    res.sq_norm += sq_norm;
  }
  res.bytes = encoded_bytes(n);
  return res;
}

namespace {
// Code i of a stream of `bits`-bit codes packed LSB-first (codes straddle at most two bytes).
inline std::uint32_t read_code(const std::uint8_t* codes, std::size_t bit_pos, int bits,
                               std::uint32_t mask) {
  std::uint32_t word = codes[bit_pos >> 3];
  if ((bit_pos & 7) + static_cast<std::size_t>(bits) > 8)
    word |= static_cast<std::uint32_t>(codes[(bit_pos >> 3) + 1]) << 8;
  return (word >> (bit_pos & 7)) & mask;
}
}  // namespace

void QsgdCodec::validate(const std::uint8_t* payload, std::size_t size, std::size_t n,
                         const PayloadSource& src) const {
  const PayloadHeader h = read_header(payload, size, Method::qsgd, n, src);
  if (h.param != static_cast<std::uint32_t>(bits_))
    corrupt_payload(src, Method::qsgd, cat("bits = ", h.param, ", expected ", bits_));
  if (h.aux != bucket_)
    corrupt_payload(src, Method::qsgd, cat("bucket = ", h.aux, ", expected ", bucket_));
  if (h.body_bytes != body_bytes(n))
    corrupt_payload(src, Method::qsgd,
                    cat("body of ", h.body_bytes, " bytes, expected ", body_bytes(n)));
  // Only the all-ones code is out of range (2L + 1 = 2^bits - 1).
  const std::uint32_t mask = (1u << bits_) - 1u,
                      max_code = static_cast<std::uint32_t>(2 * qsgd_levels(bits_));
  const std::uint8_t* codes = payload + kHeaderBytes + 4 * ceil_div(n, bucket_);
  for (std::size_t i = 0; i < n; ++i) {
    const std::uint32_t code = read_code(codes, i * static_cast<std::size_t>(bits_), bits_, mask);
    if (code > max_code)
      corrupt_payload(src, Method::qsgd,
                      cat("code ", code, " at element ", i, " exceeds ", max_code));
  }
}

void QsgdCodec::decode(const std::uint8_t* payload, std::size_t size, std::size_t n, float* out,
                       DecodeMode mode, const PayloadSource& src) const {
  validate(payload, size, n, src);
  const int levels = qsgd_levels(bits_);
  const std::size_t n_buckets = ceil_div(n, bucket_);
  const std::uint8_t* scales = payload + kHeaderBytes;
  const std::uint8_t* codes = scales + 4 * n_buckets;
  const std::uint32_t mask = (1u << bits_) - 1u;
  std::size_t bit_pos = 0;
  for (std::size_t b = 0; b < n_buckets; ++b) {
    const std::size_t begin = b * bucket_, end = begin + bucket_ < n ? begin + bucket_ : n;
    const float unit = qsgd_unit(load_le<float>(scales + 4 * b), levels);
    for (std::size_t i = begin; i < end; ++i, bit_pos += static_cast<std::size_t>(bits_)) {
      const float v =
          qsgd_value(static_cast<int>(read_code(codes, bit_pos, bits_, mask)) - levels, unit);
      if (mode == DecodeMode::assign)
        out[i] = v;
      else
        out[i] += v;
    }
  }
}

}  // namespace thinwire::detail
