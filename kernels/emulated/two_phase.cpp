// The CPU emulation of the two-phase codec launchers (kernels/onebit.cu, kernels/qsgd.cu):
// the host codecs themselves (OnebitCodec, QsgdCodec) run chunk by chunk, so payloads and
// residuals are the host backend's bits. Validation follows the order the CUDA kernels
// report errors in: the headers of all payloads in order first, then the qsgd code out of
// range with the lowest (payload, element).
#include <algorithm>
#include <cstring>
#include <exception>
#include <memory>
#include <vector>

#include "chunk_codec.hpp"
#include "common/bytes.hpp"
#include "common/philox.hpp"
#include "compress/onebit_codec.hpp"
#include "compress/qsgd_codec.hpp"
#include "compress/qsgd_kernels.hpp"
#include "compress/qsgd_math.hpp"
#include "compress/wire_check.hpp"
#include "launch.hpp"
#include "thinwire/config.hpp"

namespace thinwire::kernels {

namespace {

using detail::ceil_div;

using chunk::kOnebit;
using chunk::kQsgd;

std::unique_ptr<detail::Compressor> make_codec(const ChunkCodec& c) {
  if (c.method == kOnebit) return std::make_unique<detail::OnebitCodec>();
  return std::make_unique<detail::QsgdCodec>(c.bits, c.bucket, c.contractive);
}

// Validates `count` payloads (payload r at in + r * stride, `size` bytes, len(r) elements);
// the first error into *st. True when all are valid.
template <typename Len>
bool validate(const ChunkCodec& c, const std::uint8_t* in, std::size_t stride, std::size_t size,
              int count, Len len, DecodeStatus* st) {
  for (int r = 0; r < count; ++r) {
    std::uint64_t detail = 0;
    const std::uint32_t code =
        detail::wire_check_header(in + r * stride, size, chunk::wire_expect(c, len(r)), &detail);
    if (code != kDecodeOk) {
      *st = DecodeStatus{code, static_cast<std::uint32_t>(r), detail};
      return false;
    }
  }
  if (c.method != kQsgd) return true;
  const auto max_code = static_cast<std::uint8_t>(2 * detail::qsgd_levels(c.bits));
  std::vector<std::uint8_t> codes;
  for (int r = 0; r < count; ++r) {
    const std::size_t n = len(r);
    if (n == 0) continue;  // an empty chunk (n < parts) has no codes
    const std::uint8_t* packed = in + r * stride + detail::kHeaderBytes + 4 * ceil_div(n, c.bucket);
    codes.resize(n);
    detail::qsgd::unpack_codes(packed, ceil_div(n * static_cast<std::size_t>(c.bits), 8), 0, n,
                               c.bits, codes.data());
    for (std::size_t i = 0; i < n; ++i)
      if (codes[i] > max_code) {
        *st = DecodeStatus{kDecodeBadCode, static_cast<std::uint32_t>(r), i};
        return false;
      }
  }
  return true;
}

}  // namespace

std::size_t chunk_encoded_bytes(const ChunkCodec& c, std::size_t n) {
  if (!chunk::check(c).empty()) return 0;
  return detail::kHeaderBytes + chunk::body_bytes(c, n);
}

std::size_t chunk_workspace_bytes(const ChunkCodec&, std::size_t, int) {
  return 0;
}

std::string chunk_encode(const ChunkEncode& a, void*) {
  std::string err = chunk::check(a.codec);
  if (!err.empty()) return err;
  if (a.parts < 1) return "chunk_encode: parts must be >= 1";
  if (a.n == 0) return {};
  if (!a.x || !a.out) return "chunk_encode: null x or out";
  const auto parts = static_cast<std::size_t>(a.parts);
  if (a.stride < chunk_encoded_bytes(a.codec, ceil_div(a.n, parts)))
    return "chunk_encode: stride is smaller than a chunk's payload";
  try {
    if (a.g)
      for (std::size_t i = 0; i < a.n; ++i) a.x[i] += a.g[i];
    const std::unique_ptr<detail::Compressor> codec = make_codec(a.codec);
    double sq_error = 0.0, sq_norm = 0.0;
    for (int j = 0; j < a.parts; ++j) {
      const std::size_t b = detail::wire_chunk_begin(a.n, j, a.parts);
      const std::size_t e = detail::wire_chunk_begin(a.n, j + 1, a.parts);
      const detail::EncodeKey key{a.seed, a.step, a.layer, a.rank, a.phase, a.offset + b, a.dtype};
      const detail::EncodeResult r =
          codec->encode(a.x + b, e - b, key, a.out + static_cast<std::size_t>(j) * a.stride,
                        a.residual ? a.residual + b : nullptr);
      sq_error += r.sq_error;
      sq_norm += r.sq_norm;
    }
    if (a.stats) {
      a.stats[0] += sq_error;
      a.stats[1] += sq_norm;
    }
  } catch (const std::exception& e) {
    return std::string("chunk_encode: ") + e.what();
  }
  return {};
}

std::string chunk_serve(const ChunkServe& a, void*) {
  std::string err = chunk::check(a.codec);
  if (!err.empty()) return err;
  if (a.p < 1) return "chunk_serve: p must be >= 1";
  if (!a.in || !a.out || !a.status) return "chunk_serve: null in, out or status";
  if (a.len > 0 && !a.scratch) return "chunk_serve: null scratch";
  const std::size_t out_bytes = chunk_encoded_bytes(a.codec, a.len);
  DecodeStatus* st = a.status;
  // A status already set (an earlier error of this step) poisons this chunk too, as on the
  // device, where every kernel of the step checks it.
  if (st->code == kDecodeOk) {
    const std::size_t len = a.len;
    validate(
        a.codec, a.in, a.stride, a.size, a.p, [len](int) { return len; }, st);
  }
  if (st->code != kDecodeOk) {
    std::memset(a.out, 0, out_bytes);
    detail::wire_write_poison(a.out, st->code, st->from_rank, st->detail);
    return {};
  }
  try {
    const std::unique_ptr<detail::Compressor> codec = make_codec(a.codec);
    float* y = a.scratch;
    std::fill(y, y + a.len, 0.0f);
    for (int r = 0; r < a.p; ++r)
      codec->decode(a.in + static_cast<std::size_t>(r) * a.stride, a.size, a.len, y,
                    detail::DecodeMode::accumulate, detail::PayloadSource{"chunk_serve", r, -1});
    const auto fp = static_cast<float>(a.p);
    for (std::size_t i = 0; i < a.len; ++i) y[i] /= fp;
    if (a.server_error)
      for (std::size_t i = 0; i < a.len; ++i) y[i] += a.server_error[i];
    const detail::EncodeKey key{a.seed,   a.step, a.layer, a.rank, detail::kPhaseServer,
                                a.offset, a.dtype};
    codec->encode(y, a.len, key, a.out, a.server_error);
  } catch (const std::exception& e) {
    return std::string("chunk_serve: ") + e.what();
  }
  return {};
}

std::string chunk_decode(const ChunkCodec& c, const std::uint8_t* in, std::size_t stride,
                         std::size_t size, std::size_t n, int parts, float* out,
                         DecodeStatus* status, void*) {
  std::string err = chunk::check(c);
  if (!err.empty()) return err;
  if (parts < 1) return "chunk_decode: parts must be >= 1";
  if (!in || !status || (n > 0 && !out)) return "chunk_decode: null in, out or status";
  if (status->code != kDecodeOk) return {};  // an earlier error: write nothing
  const auto len = [n, parts](int j) {
    return detail::wire_chunk_begin(n, j + 1, parts) - detail::wire_chunk_begin(n, j, parts);
  };
  if (!validate(c, in, stride, size, parts, len, status)) return {};
  try {
    const std::unique_ptr<detail::Compressor> codec = make_codec(c);
    for (int j = 0; j < parts; ++j)
      codec->decode(in + static_cast<std::size_t>(j) * stride, size, len(j),
                    out + detail::wire_chunk_begin(n, j, parts), detail::DecodeMode::assign,
                    detail::PayloadSource{"chunk_decode", j, -1});
  } catch (const std::exception& e) {
    return std::string("chunk_decode: ") + e.what();
  }
  return {};
}

}  // namespace thinwire::kernels
