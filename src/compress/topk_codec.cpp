#include "compress/topk_codec.hpp"

#include <cmath>
#include <cstring>
#include <limits>

#include "common/bytes.hpp"
#include "common/fail.hpp"

namespace thinwire::detail {

std::size_t topk_count(double density, std::size_t n) {
  if (n == 0) return 0;
  // density * n carries the rounding of the decimal density and of the product (0.07 * 100
  // is 7.000000000000001): forgive a few ulps, so that k is the ceiling of what was written.
  const double kn = density * static_cast<double>(n);
  const double k = std::ceil(kn - 4.0 * std::numeric_limits<double>::epsilon() * kn);
  if (k <= 1.0) return 1;
  return k >= static_cast<double>(n) ? n : static_cast<std::size_t>(k);
}

std::size_t TopkCodec::encoded_bytes(std::size_t n) const {
  return kHeaderBytes + 8 * topk_count(density_, n);
}

EncodeResult TopkCodec::encode(const float* x, std::size_t n, const EncodeKey& key,
                               std::uint8_t* out, float* residual) {
  const std::size_t k = topk_count(density_, n);
  indices_.resize(k);
  values_.resize(k);
  double rest_sq = 0.0;
  const TopkOutput sel{indices_.data(), values_.data(), &rest_sq};
  if (select_ == Selection::sampled)
    selector_.select_sampled(
        x, n, k, RandomStream::make(key.seed, key.layer, kPhaseSample, key.step, key.rank), sel);
  else
    selector_.select_exact(x, n, k, sel);
  return finish_encode(x, n, k, key, out, residual, rest_sq);
}

EncodeResult TopkCodec::encode_ef(float* e, const float* g, std::size_t n, const EncodeKey& key,
                                  std::uint8_t* out) {
  const std::size_t k = topk_count(density_, n);
  indices_.resize(k);
  values_.resize(k);
  double rest_sq = 0.0;
  const TopkOutput sel{indices_.data(), values_.data(), &rest_sq};
  if (select_ == Selection::sampled)
    selector_.select_sampled_ef(
        e, g, n, k, RandomStream::make(key.seed, key.layer, kPhaseSample, key.step, key.rank), sel);
  else
    selector_.select_exact_ef(e, g, n, k, sel);
  return finish_encode(e, n, k, key, out, e, rest_sq);
}

EncodeResult TopkCodec::finish_encode(const float* x, std::size_t n, std::size_t k,
                                      const EncodeKey& key, std::uint8_t* out, float* residual,
                                      double rest_sq) {
  PayloadHeader h;
  h.method = Method::topk;
  h.dtype = key.dtype;
  h.n = n;
  h.param = static_cast<std::uint32_t>(k);
  h.body_bytes = 8 * k;
  write_header(out, h);
  std::uint8_t* idx_out = out + kHeaderBytes;
  std::uint8_t* val_out = idx_out + 4 * k;
  if (k) {  // data() may be null when k == 0
    std::memcpy(idx_out, indices_.data(), 4 * k);
    std::memcpy(val_out, values_.data(), 4 * k);
  }
  // The error is summed over the entries not sent (by the selection), not as ||x||^2 minus
  // the sent part: that stays accurate when a few huge entries dominate ||x||^2.
  double sent_sq = 0.0;
  for (std::size_t j = 0; j < k; ++j) sent_sq += static_cast<double>(values_[j]) * values_[j];
  // The residual is x with the sent entries zeroed.
  if (residual) {
    if (residual != x && n) std::memcpy(residual, x, n * sizeof(float));
    for (std::size_t j = 0; j < k; ++j) residual[indices_[j]] = 0.0f;
  }
  EncodeResult r;
  r.bytes = kHeaderBytes + 8 * k;
  r.sq_norm = rest_sq + sent_sq;
  r.sq_error = rest_sq;
  return r;
}

TopkCodec::View TopkCodec::parse(const std::uint8_t* payload, std::size_t size, std::size_t n,
                                 const PayloadSource& src) const {
  const PayloadHeader h = read_header(payload, size, Method::topk, n, src);
  const std::size_t k = h.param;
  if (k > n) corrupt_payload(src, Method::topk, cat("k = ", k, " > n = ", n));
  if (k != topk_count(density_, n))
    corrupt_payload(
        src, Method::topk,
        cat("k = ", k, ", expected ", topk_count(density_, n), " for density ", density_));
  if (h.body_bytes != 8 * static_cast<std::uint64_t>(k))
    corrupt_payload(src, Method::topk,
                    cat("body of ", h.body_bytes, " bytes, expected 8*k = ", 8 * k));
  View v{payload + kHeaderBytes, payload + kHeaderBytes + 4 * k, k};
  std::uint32_t prev = 0;
  for (std::size_t j = 0; j < k; ++j) {
    const auto i = load_le<std::uint32_t>(v.indices + 4 * j);
    if (i >= n) corrupt_payload(src, Method::topk, cat("index ", i, " >= n = ", n));
    if (j > 0 && i <= prev)
      corrupt_payload(src, Method::topk, cat("indices not increasing at entry ", j));
    prev = i;
  }
  return v;
}

void TopkCodec::decode(const std::uint8_t* payload, std::size_t size, std::size_t n, float* out,
                       DecodeMode mode, const PayloadSource& src) const {
  const View v = parse(payload, size, n, src);
  if (mode == DecodeMode::assign) {
    // Stores, not 0 + value: a sent -0.0 decodes to -0.0, so x - decoded is the +0 residual.
    if (n) std::memset(out, 0, n * sizeof(float));  // out may be null when n == 0
    for (std::size_t j = 0; j < v.k; ++j)
      out[load_le<std::uint32_t>(v.indices + 4 * j)] = load_le<float>(v.values + 4 * j);
  } else {
    for (std::size_t j = 0; j < v.k; ++j)
      out[load_le<std::uint32_t>(v.indices + 4 * j)] += load_le<float>(v.values + 4 * j);
  }
}

}  // namespace thinwire::detail
