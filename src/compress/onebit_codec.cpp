#include "compress/onebit_codec.hpp"

#include "common/bytes.hpp"
#include "common/fail.hpp"
#include "common/simd.hpp"
#include "compress/onebit_kernels.hpp"

namespace thinwire::detail {

std::size_t OnebitCodec::encoded_bytes(std::size_t n) const {
  return kHeaderBytes + 4 + ceil_div(n, 8);
}

void onebit_write_header(std::uint8_t* out, std::size_t n, DType dtype, float scale) {
  PayloadHeader h;
  h.method = Method::onebit;
  h.dtype = dtype;
  h.n = n;
  h.param = 1;
  h.body_bytes = 4 + ceil_div(n, 8);
  write_header(out, h);
  store_le<float>(out + kHeaderBytes, scale);
}

EncodeResult OnebitCodec::encode(const float* x, std::size_t n, const EncodeKey& key,
                                 std::uint8_t* out, float* residual) {
  const double sq = sum_squares_8lane(x, n);
  const float scale = onebit::scale_from(sq, n);

  onebit_write_header(out, n, key.dtype, scale);
  EncodeResult res;
  res.bytes = encoded_bytes(n);
  res.sq_norm = sq;
  res.sq_error = onebit::pack(x, n, scale, out + kHeaderBytes + 4, residual);
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
  onebit::unpack(payload + kHeaderBytes + 4, n, scale, out, mode == DecodeMode::accumulate);
}

}  // namespace thinwire::detail
