#include "compress/qsgd_codec.hpp"

#include <algorithm>
#include <cstring>

#include "common/bytes.hpp"
#include "common/fail.hpp"
#include "common/philox_host.hpp"
#include "compress/qsgd_kernels.hpp"
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
  // One bucket at a time (its scratch stays in cache for the default bucket of 512): the
  // scale, then the bucket's uniforms, levels and sums, then its codes and residual.
  const std::size_t scratch = bucket_ < n ? bucket_ : n;
  uniforms_.resize(scratch);
  levels_.resize(scratch);
  bucket_codes_.resize(scratch);
  for (std::size_t b = 0; b < n_buckets; ++b) {
    const std::size_t begin = b * bucket_, end = begin + bucket_ < n ? begin + bucket_ : n;
    const std::size_t len = end - begin;
    float scale = qsgd::bucket_max(x + begin, len);
    // Draw the levels, and the rounding variance they carry, before the scale is final.
    fill_uniforms(rng, key.offset + begin, len, uniforms_.data());
    const qsgd::QuantizeSums sums =
        qsgd::quantize(x + begin, uniforms_.data(), len, scale, levels, levels_.data());
    if (contractive_) {
      const double step = static_cast<double>(scale) / levels;
      scale *= qsgd_contraction(sums.sq, sums.variance * step * step);
    }
    store_le<float>(scales + 4 * b, scale);
    res.sq_error += qsgd::finish(x + begin, levels_.data(), len, qsgd_unit(scale, levels), levels,
                                 bucket_codes_.data(), residual ? residual + begin : nullptr);
    qsgd::pack_codes(bucket_codes_.data(), len, bits_, codes,
                     begin * static_cast<std::size_t>(bits_));
    res.sq_norm += sums.sq;
  }
  res.bytes = encoded_bytes(n);
  return res;
}

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
  const auto max_code = static_cast<std::uint8_t>(2 * qsgd_levels(bits_));
  const std::uint8_t* codes = payload + kHeaderBytes + 4 * ceil_div(n, bucket_);
  const std::size_t packed = ceil_div(n * static_cast<std::size_t>(bits_), 8);
  tile_codes_.resize(kTile);
  for (std::size_t t = 0; t < n; t += kTile) {
    const std::size_t len = n - t < kTile ? n - t : kTile;
    qsgd::unpack_codes(codes, packed, t, len, bits_, tile_codes_.data());
    if (qsgd::max_code(tile_codes_.data(), len) <= max_code) continue;
    for (std::size_t i = 0; i < len; ++i)
      if (tile_codes_[i] > max_code)
        corrupt_payload(
            src, Method::qsgd,
            cat("code ", int(tile_codes_[i]), " at element ", t + i, " exceeds ", int(max_code)));
  }
}

void QsgdCodec::decode(const std::uint8_t* payload, std::size_t size, std::size_t n, float* out,
                       DecodeMode mode, const PayloadSource& src) const {
  validate(payload, size, n, src);
  const int levels = qsgd_levels(bits_);
  const std::size_t n_buckets = ceil_div(n, bucket_);
  const std::uint8_t* scales = payload + kHeaderBytes;
  const std::uint8_t* codes = scales + 4 * n_buckets;
  const std::size_t packed = ceil_div(n * static_cast<std::size_t>(bits_), 8);
  tile_codes_.resize(kTile);
  // Tiles of codes, each split where buckets (and so units) change.
  for (std::size_t t = 0; t < n; t += kTile) {
    const std::size_t len = n - t < kTile ? n - t : kTile;
    qsgd::unpack_codes(codes, packed, t, len, bits_, tile_codes_.data());
    for (std::size_t i = t; i < t + len;) {
      const std::size_t b = i / bucket_;
      const std::size_t stop = std::min(t + len, (b + 1) * bucket_);
      qsgd::dequantize(tile_codes_.data() + (i - t), stop - i, levels,
                       qsgd_unit(load_le<float>(scales + 4 * b), levels), out + i,
                       mode == DecodeMode::accumulate);
      i = stop;
    }
  }
}

}  // namespace thinwire::detail
