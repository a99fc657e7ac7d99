// libFuzzer harness: TopkCodec::validate / parse / decode (compress/topk_codec.cpp).
// Input: codec prefix (fuzz_support.hpp; p0, p1 = density) then the payload.
#include "common/bytes.hpp"
#include "compress/topk_codec.hpp"
#include "fuzz_codec.hpp"

using namespace thinwire;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < fuzz::kCodecPrefixBytes) return 0;
  const std::uint8_t* p = data + 3;
  const std::size_t n = (data[1] | (data[2] << 8)) % 4097;
  const detail::TopkCodec codec(fuzz::topk_density(p), Selection::exact);
  const std::uint8_t* payload = data + fuzz::kCodecPrefixBytes;
  const std::size_t bytes = size - fuzz::kCodecPrefixBytes;
  fuzz::check_decoder(codec, payload, bytes, n,
                      data[0] & 1 ? detail::DecodeMode::accumulate : detail::DecodeMode::assign);
  // The view SparseAllgather scatters from: every index in range and strictly increasing.
  try {
    const auto v = codec.parse(payload, bytes, n, {"fuzz", 1, 0});
    if (v.k != detail::topk_count(fuzz::topk_density(p), n)) fuzz::violated("parse: wrong k");
    if (detail::kHeaderBytes + 8 * v.k > bytes) fuzz::violated("parse: k pairs do not fit");
    for (std::size_t j = 0; j < v.k; ++j) {
      const auto i = detail::load_le<std::uint32_t>(v.indices + 4 * j);
      if (i >= n || (j && i <= detail::load_le<std::uint32_t>(v.indices + 4 * j - 4)))
        fuzz::violated("parse accepted a bad index");
    }
  } catch (const Error&) {
  }
  return 0;
}
