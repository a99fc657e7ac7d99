#include "compress/topk_codec.hpp"

#include <cmath>
#include <cstring>

#include "common/bytes.hpp"
#include "common/fail.hpp"

namespace thinwire::detail {

std::size_t topk_count(double density, std::size_t n) {
  if (n == 0) return 0;
  const double k = std::ceil(density * static_cast<double>(n));
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
  std::memcpy(idx_out, indices_.data(), 4 * k);
  double sent_sq = 0.0;
  for (std::size_t j = 0; j < k; ++j) {
    const float v = x[indices_[j]];
    store_le<float>(val_out + 4 * j, v);
    sent_sq += static_cast<double>(v) * v;
  }
  // ||x||^2 in the same pass that writes the residual (x with the sent entries zeroed).
  double norm = 0.0;
  if (residual) {
    for (std::size_t i = 0; i < n; ++i) {
      const float v = x[i];
      norm += static_cast<double>(v) * v;
      residual[i] = v;
    }
    for (std::size_t j = 0; j < k; ++j) residual[indices_[j]] = 0.0f;
  } else {
    for (std::size_t i = 0; i < n; ++i) norm += static_cast<double>(x[i]) * x[i];
  }
  EncodeResult r;
  r.bytes = kHeaderBytes + 8 * k;
  r.sq_norm = norm;
  r.sq_error = norm > sent_sq ? norm - sent_sq : 0.0;
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
  if (mode == DecodeMode::assign) std::memset(out, 0, n * sizeof(float));
  for (std::size_t j = 0; j < v.k; ++j)
    out[load_le<std::uint32_t>(v.indices + 4 * j)] += load_le<float>(v.values + 4 * j);
}

}  // namespace thinwire::detail
