#include "compress/onebit_codec.hpp"

#include <cmath>
#include <cstring>

#include "common/bytes.hpp"
#include "common/fail.hpp"
#include "compress/onebit_math.hpp"

namespace thinwire::detail {

std::size_t OnebitCodec::encoded_bytes(std::size_t n) const {
  return kHeaderBytes + 4 + ceil_div(n, 8);
}

EncodeResult OnebitCodec::encode(const float* x, std::size_t n, const EncodeKey& key,
                                 std::uint8_t* out, float* residual) {
  double sq = 0.0;
  for (std::size_t i = 0; i < n; ++i) sq += static_cast<double>(x[i]) * x[i];
  const float scale = n ? static_cast<float>(std::sqrt(sq / static_cast<double>(n))) : 0.0f;

  PayloadHeader h;
  h.method = Method::onebit;
  h.dtype = key.dtype;
  h.n = n;
  h.param = 1;
  h.body_bytes = 4 + ceil_div(n, 8);
  write_header(out, h);
  store_le<float>(out + kHeaderBytes, scale);
  std::uint8_t* bits = out + kHeaderBytes + 4;
  std::memset(bits, 0, ceil_div(n, 8));
  double err = 0.0;
  for (std::size_t i = 0; i < n; ++i) {
    const float v = x[i];
    const bool positive = onebit_sign(v);
    bits[i >> 3] |= static_cast<std::uint8_t>(positive) << (i & 7);
    const float r = v - onebit_value(positive, scale);
    err += static_cast<double>(r) * r;
    if (residual) residual[i] = r;
  }
  EncodeResult res;
  res.bytes = encoded_bytes(n);
  res.sq_norm = sq;
  res.sq_error = err;
  return res;
}

void OnebitCodec::validate(const std::uint8_t* payload, std::size_t size, std::size_t n,
                           const PayloadSource& src) const {
  const PayloadHeader h = read_header(payload, size, Method::onebit, n, src);
  if (h.param != 1) corrupt_payload(src, Method::onebit, cat("param = ", h.param, ", expected 1"));
  if (h.body_bytes != 4 + ceil_div(n, 8))
    corrupt_payload(src, Method::onebit,
                    cat("body of ", h.body_bytes, " bytes, expected ", 4 + ceil_div(n, 8)));
}

void OnebitCodec::decode(const std::uint8_t* payload, std::size_t size, std::size_t n, float* out,
                         DecodeMode mode, const PayloadSource& src) const {
  validate(payload, size, n, src);
  const float scale = load_le<float>(payload + kHeaderBytes);
  const std::uint8_t* bits = payload + kHeaderBytes + 4;
  if (mode == DecodeMode::assign) {
    for (std::size_t i = 0; i < n; ++i)
      out[i] = onebit_value((bits[i >> 3] >> (i & 7)) & 1u, scale);
  } else {
    for (std::size_t i = 0; i < n; ++i)
      out[i] += onebit_value((bits[i >> 3] >> (i & 7)) & 1u, scale);
  }
}

}  // namespace thinwire::detail
