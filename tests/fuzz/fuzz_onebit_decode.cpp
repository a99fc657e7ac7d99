// libFuzzer harness: OnebitCodec::validate / decode and the 1-bit unpack kernels
// (compress/onebit_codec.cpp, onebit_kernels.cpp). Input: codec prefix then the payload.
#include "compress/onebit_codec.hpp"
#include "fuzz_codec.hpp"

using namespace thinwire;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < fuzz::kCodecPrefixBytes) return 0;
  const std::size_t n = (data[1] | (data[2] << 8)) % 20001;
  const detail::OnebitCodec codec;
  fuzz::check_decoder(codec, data + fuzz::kCodecPrefixBytes, size - fuzz::kCodecPrefixBytes, n,
                      data[0] & 1 ? detail::DecodeMode::accumulate : detail::DecodeMode::assign);
  return 0;
}
