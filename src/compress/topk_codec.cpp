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
  if (select_ == Selection::sampled)
    selector_.select_sampled(
        x, n, k, RandomStream::make(key.seed, key.layer, kPhaseSample, key.step, key.rank),
        indices_.data());
  else
    selector_.select_exact(x, n, k, indices_.data());

  PayloadHeader h;
  h.method = Method::topk;
  h.dtype = key.dtype;
  h.n = n;
  h.param = static_cast<std::uint32_t>(k);
  h.body_bytes = 8 * k;
  write_header(out, h);
  std::uint8_t* idx_out = out + kHeaderBytes;
  std::uint8_t* val_out = idx_out + 4 * k;
  if (k) std::memcpy(idx_out, indices_.data(), 4 * k);  // data() may be null when k == 0
  for (std::size_t j = 0; j < k; ++j) store_le<float>(val_out + 4 * j, x[indices_[j]]);
  // ||x||^2 and the error (the entries not sent; indices_ is ascending) in the pass that
  // writes the residual: x with the sent entries zeroed. Summing the error directly keeps it
  // accurate when a few huge entries dominate ||x||^2.
  double norm = 0.0, err = 0.0;
  for (std::size_t i = 0, j = 0; i < n; ++i) {
    const float v = x[i];
    const double sq = static_cast<double>(v) * v;
    norm += sq;
    const bool sent = j < k && indices_[j] == i;
    if (sent)
      ++j;
    else
      err += sq;
    if (residual) residual[i] = sent ? 0.0f : v;
  }
  EncodeResult r;
  r.bytes = kHeaderBytes + 8 * k;
  r.sq_norm = norm;
  r.sq_error = err;
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
    std::memset(out, 0, n * sizeof(float));
    for (std::size_t j = 0; j < v.k; ++j)
      out[load_le<std::uint32_t>(v.indices + 4 * j)] = load_le<float>(v.values + 4 * j);
  } else {
    for (std::size_t j = 0; j < v.k; ++j)
      out[load_le<std::uint32_t>(v.indices + 4 * j)] += load_le<float>(v.values + 4 * j);
  }
}

}  // namespace thinwire::detail
