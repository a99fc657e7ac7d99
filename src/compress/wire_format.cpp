#include "compress/wire_format.hpp"

#include "common/bytes.hpp"
#include "common/fail.hpp"

namespace thinwire::detail {

void write_header(std::uint8_t* out, const PayloadHeader& h) {
  store_le<std::uint32_t>(out + 0, kWireMagic);
  store_le<std::uint16_t>(out + 4, kWireVersion);
  out[6] = static_cast<std::uint8_t>(h.method);
  out[7] = static_cast<std::uint8_t>(h.dtype);
  store_le<std::uint64_t>(out + 8, h.n);
  store_le<std::uint32_t>(out + 16, h.param);
  store_le<std::uint32_t>(out + 20, h.aux);
  store_le<std::uint64_t>(out + 24, h.body_bytes);
}

void corrupt_payload(const PayloadSource& src, Method method, const std::string& why) {
  fail_with(ErrorCode::invalid_argument, "codec", src.rank, "corrupt ", to_string(method),
            " payload from rank ", src.from_rank, " for layer '", src.layer, "': ", why);
}

PayloadHeader read_header(const std::uint8_t* payload, std::size_t size, Method method,
                          std::uint64_t expected_n, const PayloadSource& src) {
  if (size < kHeaderBytes)
    corrupt_payload(src, method,
                    cat(size, " bytes is shorter than the ", kHeaderBytes, "-byte header"));
  const auto magic = load_le<std::uint32_t>(payload);
  if (magic != kWireMagic) corrupt_payload(src, method, cat("bad magic 0x", std::hex, magic));
  const auto version = load_le<std::uint16_t>(payload + 4);
  if (version != kWireVersion)
    corrupt_payload(src, method, cat("wire format version ", version, ", expected ", kWireVersion));
  PayloadHeader h;
  h.method = static_cast<Method>(payload[6]);
  if (h.method != method)
    corrupt_payload(src, method, cat("method byte ", int(payload[6]), ", expected ", int(method)));
  if (payload[7] > static_cast<std::uint8_t>(DType::bf16))
    corrupt_payload(src, method, cat("dtype byte ", int(payload[7])));
  h.dtype = static_cast<DType>(payload[7]);
  h.n = load_le<std::uint64_t>(payload + 8);
  if (h.n != expected_n) corrupt_payload(src, method, cat("n = ", h.n, ", expected ", expected_n));
  h.param = load_le<std::uint32_t>(payload + 16);
  h.aux = load_le<std::uint32_t>(payload + 20);
  h.body_bytes = load_le<std::uint64_t>(payload + 24);
  if (h.body_bytes > size - kHeaderBytes)
    corrupt_payload(src, method,
                    cat("body of ", h.body_bytes, " bytes but only ", size - kHeaderBytes,
                        " bytes follow the header"));
  return h;
}

}  // namespace thinwire::detail
