// libFuzzer harness: QsgdCodec::validate / decode and the code unpacking and dequantising
// kernels (compress/qsgd_codec.cpp, qsgd_kernels.cpp). Input: codec prefix (p0 = bits,
// p1, p2 = bucket) then the payload. n reaches past two 4096-code tiles.
#include "compress/qsgd_codec.hpp"
#include "fuzz_codec.hpp"

using namespace thinwire;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < fuzz::kCodecPrefixBytes) return 0;
  const std::uint8_t* p = data + 3;
  const std::size_t n = (data[1] | (data[2] << 8)) % 9001;
  const detail::QsgdCodec codec(fuzz::qsgd_bits(p), fuzz::qsgd_bucket(p), (data[0] & 2) != 0);
  fuzz::check_decoder(codec, data + fuzz::kCodecPrefixBytes, size - fuzz::kCodecPrefixBytes, n,
                      data[0] & 1 ? detail::DecodeMode::accumulate : detail::DecodeMode::assign);
  return 0;
}
