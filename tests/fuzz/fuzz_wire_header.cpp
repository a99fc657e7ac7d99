// libFuzzer harness: the payload header parser (compress/wire_format.cpp).
// Input: [method u8][expected n u64 LE][payload...]. A header that parses must describe a
// body that fits in the payload, and must write back to the same 32 bytes.
#include <cstring>

#include "compress/wire_format.hpp"
#include "fuzz_support.hpp"

using namespace thinwire;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  fuzz::Input in(data, size);
  const auto method = static_cast<Method>(1 + in.u8() % 3);
  std::uint64_t expected_n = 0;
  for (int i = 0; i < 8; ++i) expected_n |= static_cast<std::uint64_t>(in.u8()) << (8 * i);
  const std::uint8_t* payload = in.rest();
  const std::size_t bytes = in.rest_size();
  detail::PayloadHeader h;
  try {
    h = detail::read_header(payload, bytes, method, expected_n, {"fuzz", 1, 0});
  } catch (const Error& e) {
    if (e.code() != ErrorCode::invalid_argument) fuzz::violated("read_header: wrong error code");
    return 0;
  }
  if (h.method != method || h.n != expected_n) fuzz::violated("read_header: wrong method or n");
  if (bytes < detail::kHeaderBytes || h.body_bytes > bytes - detail::kHeaderBytes)
    fuzz::violated("read_header accepted a body that does not fit");
  std::uint8_t again[detail::kHeaderBytes];
  detail::write_header(again, h);
  if (std::memcmp(again, payload, detail::kHeaderBytes) != 0)
    fuzz::violated("write_header(read_header(x)) != x");
  return 0;
}
