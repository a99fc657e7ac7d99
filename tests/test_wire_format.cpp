// The 32-byte payload header: write_header / read_header and each validation error.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "compress/wire_format.hpp"
#include "thinwire/error.hpp"

namespace thinwire::detail {
namespace {

const PayloadSource kSrc{"encoder.layers.7.attn.qkv", 2, 1};

template <typename T>
T load(const std::uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
template <typename T>
void store(std::uint8_t* p, T v) {
  std::memcpy(p, &v, sizeof v);
}

PayloadHeader sample_header() {
  PayloadHeader h;
  h.method = Method::qsgd;
  h.dtype = DType::bf16;
  h.n = 0x0123456789abull;
  h.param = 0xa1b2c3d4u;
  h.aux = 0x05060708u;
  h.body_bytes = 100;
  return h;
}

// header + body_bytes of payload, filled past the header with a marker.
std::vector<std::uint8_t> payload_for(const PayloadHeader& h) {
  std::vector<std::uint8_t> p(kHeaderBytes + h.body_bytes, 0x5a);
  write_header(p.data(), h);
  return p;
}

Error read_error(const std::vector<std::uint8_t>& p, std::size_t size, Method m, std::uint64_t n) {
  try {
    (void)read_header(p.data(), size, m, n, kSrc);
    ADD_FAILURE() << "read_header accepted a bad header";
  } catch (const Error& e) {
    return e;
  }
  return Error(ErrorCode::internal, "none");
}

void expect_read_error(const std::vector<std::uint8_t>& p, std::size_t size, Method m,
                       std::uint64_t n, const std::string& mention) {
  const Error e = read_error(p, size, m, n);
  EXPECT_EQ(e.code(), ErrorCode::invalid_argument) << e.what();
  const std::string msg = e.what();
  EXPECT_NE(msg.find(mention), std::string::npos) << "'" << mention << "' not in: " << msg;
  EXPECT_NE(msg.find("encoder.layers.7.attn.qkv"), std::string::npos) << msg;
  EXPECT_NE(msg.find("from rank 2"), std::string::npos) << msg;
  EXPECT_NE(msg.find(to_string(m)), std::string::npos) << msg;
}

TEST(WireFormat, LayoutIsTheDocumentedOne) {
  const PayloadHeader h = sample_header();
  std::vector<std::uint8_t> out(40, 0xee);
  write_header(out.data(), h);
  EXPECT_EQ(load<std::uint32_t>(out.data() + 0), 0x31525754u);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(out.data()), 4), "TWR1");
  EXPECT_EQ(load<std::uint16_t>(out.data() + 4), 1u);
  EXPECT_EQ(out[6], 3u);  // qsgd
  EXPECT_EQ(out[7], 2u);  // bf16
  EXPECT_EQ(load<std::uint64_t>(out.data() + 8), 0x0123456789abull);
  EXPECT_EQ(out[8], 0xabu);  // little-endian
  EXPECT_EQ(load<std::uint32_t>(out.data() + 16), 0xa1b2c3d4u);
  EXPECT_EQ(out[16], 0xd4u);
  EXPECT_EQ(load<std::uint32_t>(out.data() + 20), 0x05060708u);
  EXPECT_EQ(load<std::uint64_t>(out.data() + 24), 100u);
  for (std::size_t i = 32; i < out.size(); ++i)
    EXPECT_EQ(out[i], 0xeeu) << "wrote past the header at " << i;
  EXPECT_EQ(kHeaderBytes, 32u);
  EXPECT_EQ(kWireMagic, 0x31525754u);
  EXPECT_EQ(kWireVersion, 1u);
}

TEST(WireFormat, RoundTrip) {
  for (Method m : {Method::topk, Method::onebit, Method::qsgd}) {
    for (DType dt : {DType::f32, DType::f16, DType::bf16}) {
      for (std::uint64_t n : {std::uint64_t{0}, std::uint64_t{1}, std::uint64_t{1} << 40,
                              std::numeric_limits<std::uint64_t>::max()}) {
        PayloadHeader h;
        h.method = m;
        h.dtype = dt;
        h.n = n;
        h.param = static_cast<std::uint32_t>(n * 7 + 1);
        h.aux = static_cast<std::uint32_t>(n >> 3);
        h.body_bytes = n % 50;
        const std::vector<std::uint8_t> p = payload_for(h);
        const PayloadHeader back = read_header(p.data(), p.size(), m, n, kSrc);
        EXPECT_EQ(back.method, h.method);
        EXPECT_EQ(back.dtype, h.dtype);
        EXPECT_EQ(back.n, h.n);
        EXPECT_EQ(back.param, h.param);
        EXPECT_EQ(back.aux, h.aux);
        EXPECT_EQ(back.body_bytes, h.body_bytes);
        // Extra bytes after the body are allowed (a payload slot may be larger).
        std::vector<std::uint8_t> longer = p;
        longer.resize(p.size() + 9, 0);
        EXPECT_EQ(read_header(longer.data(), longer.size(), m, n, kSrc).body_bytes, h.body_bytes);
      }
    }
  }
}

TEST(WireFormat, ShortBuffer) {
  const std::vector<std::uint8_t> p = payload_for(sample_header());
  for (std::size_t size = 0; size < kHeaderBytes; ++size)
    expect_read_error(p, size, Method::qsgd, sample_header().n, "shorter than");
}

TEST(WireFormat, BadMagic) {
  std::vector<std::uint8_t> p = payload_for(sample_header());
  for (std::size_t byte = 0; byte < 4; ++byte) {
    std::vector<std::uint8_t> q = p;
    q[byte] ^= 0x20;
    expect_read_error(q, q.size(), Method::qsgd, sample_header().n, "magic");
  }
  store<std::uint32_t>(p.data(), 0x54575231u);  // big-endian writer
  expect_read_error(p, p.size(), Method::qsgd, sample_header().n, "magic");
}

TEST(WireFormat, BadVersion) {
  for (std::uint16_t v :
       {std::uint16_t{0}, std::uint16_t{2}, std::uint16_t{0x0100}, std::uint16_t{0xffff}}) {
    std::vector<std::uint8_t> p = payload_for(sample_header());
    store<std::uint16_t>(p.data() + 4, v);
    expect_read_error(p, p.size(), Method::qsgd, sample_header().n, "version");
  }
}

TEST(WireFormat, WrongMethod) {
  const std::vector<std::uint8_t> p = payload_for(sample_header());  // qsgd
  expect_read_error(p, p.size(), Method::topk, sample_header().n, "method");
  expect_read_error(p, p.size(), Method::onebit, sample_header().n, "method");
  std::vector<std::uint8_t> q = p;
  q[6] = 200;
  expect_read_error(q, q.size(), Method::qsgd, sample_header().n, "method");
}

TEST(WireFormat, BadDtype) {
  for (std::uint8_t d : {std::uint8_t{3}, std::uint8_t{4}, std::uint8_t{255}}) {
    std::vector<std::uint8_t> p = payload_for(sample_header());
    p[7] = d;
    expect_read_error(p, p.size(), Method::qsgd, sample_header().n, "dtype");
  }
}

TEST(WireFormat, WrongN) {
  const std::vector<std::uint8_t> p = payload_for(sample_header());
  const std::uint64_t n = sample_header().n;
  expect_read_error(p, p.size(), Method::qsgd, n + 1, "n = ");
  expect_read_error(p, p.size(), Method::qsgd, n - 1, "expected");
  expect_read_error(p, p.size(), Method::qsgd, 0, "n = ");
  expect_read_error(p, p.size(), Method::qsgd, n ^ (std::uint64_t{1} << 63), "n = ");
}

TEST(WireFormat, BodyLargerThanBuffer) {
  const PayloadHeader h = sample_header();
  const std::vector<std::uint8_t> p = payload_for(h);
  // One byte short, and every truncation down to the bare header.
  for (std::size_t size = kHeaderBytes; size < p.size(); ++size)
    expect_read_error(p, size, Method::qsgd, h.n, "body");
  // body_bytes near 2^64 must not wrap around in the size check.
  for (std::uint64_t body :
       {std::numeric_limits<std::uint64_t>::max(),
        std::numeric_limits<std::uint64_t>::max() - kHeaderBytes + 1, std::uint64_t{1} << 63}) {
    std::vector<std::uint8_t> q = p;
    store<std::uint64_t>(q.data() + 24, body);
    expect_read_error(q, q.size(), Method::qsgd, h.n, "body");
  }
}

TEST(WireFormat, ChecksAreOrdered) {
  // A buffer that is wrong in several ways reports the first check that fails, so a
  // truncated or foreign buffer is never interpreted field by field.
  std::vector<std::uint8_t> p = payload_for(sample_header());
  p[7] = 9;                               // bad dtype
  store<std::uint16_t>(p.data() + 4, 7);  // bad version
  expect_read_error(p, p.size(), Method::qsgd, 1, "version");
  store<std::uint32_t>(p.data(), 0);  // bad magic too
  expect_read_error(p, p.size(), Method::qsgd, 1, "magic");
}

TEST(WireFormat, CorruptPayloadMessage) {
  try {
    corrupt_payload(kSrc, Method::topk, "why it is bad");
    FAIL() << "corrupt_payload returned";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::invalid_argument);
    const std::string msg = e.what();
    EXPECT_NE(msg.find("corrupt topk payload from rank 2"), std::string::npos) << msg;
    EXPECT_NE(msg.find("'encoder.layers.7.attn.qkv'"), std::string::npos) << msg;
    EXPECT_NE(msg.find("why it is bad"), std::string::npos) << msg;
    EXPECT_NE(msg.find("[rank 1]"), std::string::npos) << "receiving rank: " << msg;
  }
}

}  // namespace
}  // namespace thinwire::detail
