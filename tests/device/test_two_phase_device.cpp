// The two-phase codec launchers (kernels/onebit.cu, kernels/qsgd.cu; emulated/two_phase.cpp)
// against the host codecs (OnebitCodec, QsgdCodec) on the same inputs: worker encode of a
// layer in chunks (with and without the fused x = x + g), the server step, the final decode,
// and corrupt payloads. Payloads must be the host's bytes except the f32 scales, which may
// differ in the last bits where they come from a sum (onebit; contractive qsgd).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "common/bytes.hpp"
#include "common/philox.hpp"
#include "compress/onebit_codec.hpp"
#include "compress/qsgd_codec.hpp"
#include "compress/qsgd_math.hpp"
#include "compress/wire_check.hpp"
#include "device_test_support.hpp"
#include "thinwire/config.hpp"

namespace thinwire::test {
namespace {

using detail::ceil_div;
using detail::kHeaderBytes;

constexpr auto kOnebitByte = static_cast<std::uint8_t>(Method::onebit);
constexpr auto kQsgdByte = static_cast<std::uint8_t>(Method::qsgd);
constexpr std::uint32_t kMaxScaleUlp = 2;  // scales from a sum (onebit; contractive qsgd)

kernels::ChunkCodec onebit() {
  kernels::ChunkCodec c;
  c.method = kOnebitByte;
  return c;
}
kernels::ChunkCodec qsgd(int bits, std::size_t bucket, bool contractive) {
  kernels::ChunkCodec c;
  c.method = kQsgdByte;
  c.bits = bits;
  c.bucket = bucket;
  c.contractive = contractive;
  return c;
}

std::string name(const kernels::ChunkCodec& c) {
  if (c.method == kOnebitByte) return "onebit";
  return "qsgd(bits=" + std::to_string(c.bits) + ", bucket=" + std::to_string(c.bucket) +
         (c.contractive ? ", contractive)" : ")");
}

std::vector<kernels::ChunkCodec> all_codecs() {
  std::vector<kernels::ChunkCodec> v{onebit()};
  for (int bits : {2, 3, 4, 5, 8})
    for (std::size_t bucket : {std::size_t{512}, std::size_t{100}})
      for (bool contractive : {false, true}) v.push_back(qsgd(bits, bucket, contractive));
  // A bucket of one element, a small odd one, and buckets larger than a warp's segment.
  v.push_back(qsgd(3, 1, false));
  v.push_back(qsgd(2, 7, true));
  v.push_back(qsgd(4, 3000, true));
  v.push_back(qsgd(6, 70000, false));
  return v;
}

std::unique_ptr<detail::Compressor> host_codec(const kernels::ChunkCodec& c) {
  if (c.method == kOnebitByte) return std::make_unique<detail::OnebitCodec>();
  return std::make_unique<detail::QsgdCodec>(c.bits, c.bucket, c.contractive);
}

std::size_t num_scales(const kernels::ChunkCodec& c, std::size_t len) {
  return c.method == kOnebitByte ? 1 : ceil_div(len, c.bucket);
}

// Scales that are an exact max (non-contractive qsgd) must match bit for bit.
std::uint32_t scale_tolerance(const kernels::ChunkCodec& c) {
  return c.method == kQsgdByte && !c.contractive ? 0 : kMaxScaleUlp;
}

std::vector<float> random_floats(std::size_t n, std::uint32_t seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> dist(0.0f, 2.0f);
  std::vector<float> v(n);
  for (std::size_t i = 0; i < n; ++i) {
    v[i] = dist(gen);
    if (i % 97 == 5) v[i] = 0.0f;
    if (i % 89 == 7) v[i] = -0.0f;
  }
  return v;
}

std::uint32_t bits_of(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

std::uint32_t ulp_distance(float a, float b) {
  const std::uint32_t ua = bits_of(a), ub = bits_of(b);
  if ((ua ^ ub) & 0x80000000u) return ua == ub ? 0 : (a == b ? 0 : 0xffffffffu);
  return ua > ub ? ua - ub : ub - ua;
}

// Compares one payload of `len` elements with the host's: header and codes/bits exactly,
// scales within `tol` ulp. *same_scales: whether every scale matched bit for bit.
void expect_payload(const std::uint8_t* got, const std::uint8_t* want, const kernels::ChunkCodec& c,
                    std::size_t len, std::uint32_t tol, const std::string& what,
                    bool* same_scales) {
  const std::size_t bytes = kernels::chunk_encoded_bytes(c, len);
  ASSERT_EQ(std::memcmp(got, want, kHeaderBytes), 0) << what << ": header";
  const std::size_t ns = num_scales(c, len);
  *same_scales = true;
  for (std::size_t s = 0; s < ns; ++s) {
    const float g = detail::load_le<float>(got + kHeaderBytes + 4 * s);
    const float w = detail::load_le<float>(want + kHeaderBytes + 4 * s);
    if (bits_of(g) != bits_of(w)) *same_scales = false;
    ASSERT_LE(ulp_distance(g, w), tol) << what << ": scale " << s << " is " << g << ", host " << w
                                       << " (" << backend_name() << ")";
  }
  const std::size_t body = kHeaderBytes + 4 * ns;
  for (std::size_t i = body; i < bytes; ++i)
    ASSERT_EQ(int(got[i]), int(want[i]))
        << what << ": byte " << i - body << " of the codes/bits (" << backend_name() << ")";
}

void expect_same_bits(const std::vector<float>& got, const std::vector<float>& want,
                      const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (std::size_t i = 0; i < got.size(); ++i)
    ASSERT_EQ(bits_of(got[i]), bits_of(want[i])) << what << " (" << backend_name() << "): element "
                                                 << i << " is " << got[i] << ", want " << want[i];
}

detail::PayloadSource src(int r) {
  return detail::PayloadSource{"two-phase test", r, 0};
}

// Host decode (assign) of one payload.
std::vector<float> host_decode(const kernels::ChunkCodec& c, const std::uint8_t* p,
                               std::size_t size, std::size_t len) {
  std::vector<float> out(len);
  host_codec(c)->decode(p, size, len, out.data(), detail::DecodeMode::assign, src(0));
  return out;
}

struct Key {
  std::uint64_t seed = 0x1234567890abcdefULL, step = 17, offset = 0;
  std::uint32_t layer = 3, rank = 2, phase = detail::kPhaseWorker;
};

// ---- worker encode --------------------------------------------------------------------------

void check_encode(const kernels::ChunkCodec& c, std::size_t n, int parts, bool fused, bool alias,
                  std::uint32_t seed) {
  const std::string what = name(c) + " n=" + std::to_string(n) + " parts=" + std::to_string(parts) +
                           (fused ? " g" : "") + (alias ? " alias" : "");
  SCOPED_TRACE(what);
  Key key;
  key.offset = 1000 + seed;
  const std::vector<float> x0 = random_floats(n, seed);
  const std::vector<float> g = random_floats(n, seed + 7);
  const std::size_t max_len = ceil_div(n, static_cast<std::size_t>(parts));
  const std::size_t stride = kernels::chunk_encoded_bytes(c, max_len) + 3;  // odd: misaligned
  const std::size_t out_bytes = stride * static_cast<std::size_t>(parts);

  // Host: x = x0 + g, then each chunk with the host codec.
  std::vector<float> xh = x0;
  if (fused)
    for (std::size_t i = 0; i < n; ++i) xh[i] += g[i];
  std::vector<std::uint8_t> want(out_bytes, 0xab);
  std::vector<float> res_h(n);
  double sq_error = 0, sq_norm = 0;
  auto codec = host_codec(c);
  for (int j = 0; j < parts; ++j) {
    const std::size_t b = detail::wire_chunk_begin(n, j, parts),
                      e = detail::wire_chunk_begin(n, j + 1, parts);
    const detail::EncodeKey k{key.seed,  key.step,       key.layer,  key.rank,
                              key.phase, key.offset + b, DType::bf16};
    const detail::EncodeResult r =
        codec->encode(xh.data() + b, e - b, k, want.data() + j * stride, res_h.data() + b);
    sq_error += r.sq_error;
    sq_norm += r.sq_norm;
  }

  DeviceArray<float> dx, dg, dres(n);
  dx.upload(x0);
  dg.upload(g);
  DeviceArray<std::uint8_t> dout;
  dout.upload(std::vector<std::uint8_t>(out_bytes, 0xab));
  DeviceArray<double> dstats;
  dstats.upload({0.5, 0.25});
  DeviceArray<std::uint8_t> ws(
      std::max<std::size_t>(1, kernels::chunk_workspace_bytes(c, n, parts)));
  kernels::ChunkEncode a;
  a.codec = c;
  a.x = dx.get();
  a.g = fused ? dg.get() : nullptr;
  a.residual = alias ? dx.get() : dres.get();
  a.n = n;
  a.parts = parts;
  a.out = dout.get();
  a.stride = stride;
  a.seed = key.seed;
  a.step = key.step;
  a.offset = key.offset;
  a.layer = key.layer;
  a.rank = key.rank;
  a.phase = key.phase;
  a.dtype = DType::bf16;
  a.stats = dstats.get();
  a.workspace = ws.get();
  a.workspace_bytes = ws.size();
  void* stream = nullptr;
  TW_ASSERT_OK(kernels::stream_create(&stream));
  TW_ASSERT_OK(kernels::chunk_encode(a, stream));
  TW_ASSERT_OK(kernels::stream_synchronize(stream));
  TW_ASSERT_OK(kernels::stream_destroy(stream));

  const std::vector<std::uint8_t> got = dout.download();
  const std::vector<float> res = alias ? dx.download() : dres.download();
  if (!alias && fused) expect_same_bits(dx.download(), xh, "x after x += g");
  if (!alias && !fused) expect_same_bits(dx.download(), x0, "x untouched");
  bool all_same = true;
  for (int j = 0; j < parts; ++j) {
    const std::size_t b = detail::wire_chunk_begin(n, j, parts),
                      e = detail::wire_chunk_begin(n, j + 1, parts);
    const std::size_t bytes = kernels::chunk_encoded_bytes(c, e - b);
    bool same = false;
    expect_payload(got.data() + j * stride, want.data() + j * stride, c, e - b, scale_tolerance(c),
                   what + " chunk " + std::to_string(j), &same);
    if (::testing::Test::HasFatalFailure()) return;
    all_same = all_same && same;
    for (std::size_t i = bytes; i < stride; ++i)
      ASSERT_EQ(got[j * stride + i], 0xab) << "chunk " << j << " wrote past its payload";
    // The residual is x - decoded exactly, decoded from the device's own payload.
    const std::vector<float> dec = host_decode(c, got.data() + j * stride, bytes, e - b);
    for (std::size_t i = 0; i < e - b; ++i)
      ASSERT_EQ(bits_of(res[b + i]), bits_of(xh[b + i] - dec[i]))
          << "residual of element " << b + i << " is not x - decoded";
  }
  if (all_same) expect_same_bits(res, res_h, "residual vs host");
  const std::vector<double> stats = dstats.download();
  EXPECT_NEAR(stats[1] - 0.25, sq_norm, 1e-9 * sq_norm + 1e-12);
  EXPECT_NEAR(stats[0] - 0.5, sq_error, 1e-5 * sq_error + 1e-9);
}

TEST(TwoPhaseDevice, EncodeMatchesHostCodec) {
  TW_REQUIRE_DEVICE();
  std::uint32_t seed = 1;
  for (const kernels::ChunkCodec& c : all_codecs())
    for (std::size_t n : {1, 7, 1000, 4097, 100003})
      for (int parts = 1; parts <= 4; ++parts) {
        ++seed;
        check_encode(c, n, parts, seed % 2 == 0, seed % 3 == 0, seed);
        if (::testing::Test::HasFatalFailure()) return;
      }
}

TEST(TwoPhaseDevice, EncodeFusedGradientLargeLayer) {
  TW_REQUIRE_DEVICE();
  check_encode(onebit(), 1 << 20, 3, true, true, 99);
  check_encode(qsgd(4, 512, true), 1 << 20, 2, true, false, 98);
}

// ---- server step ----------------------------------------------------------------------------

void check_serve(const kernels::ChunkCodec& c, std::size_t len, int p, bool with_error,
                 std::uint32_t seed) {
  const std::string what = name(c) + " len=" + std::to_string(len) + " p=" + std::to_string(p) +
                           (with_error ? " server_error" : "");
  SCOPED_TRACE(what);
  const std::size_t bytes = kernels::chunk_encoded_bytes(c, len);
  const std::size_t stride = bytes + 5;
  auto codec = host_codec(c);
  // P workers' payloads of this chunk.
  std::vector<std::uint8_t> in(stride * static_cast<std::size_t>(p), 0);
  for (int r = 0; r < p; ++r) {
    const std::vector<float> x = random_floats(len, seed * 31 + r);
    const detail::EncodeKey k{5, 9, 1, static_cast<std::uint32_t>(r), detail::kPhaseWorker, 40};
    codec->encode(x.data(), len, k, in.data() + r * stride, nullptr);
  }
  const std::vector<float> es0 = random_floats(len, seed + 1000);
  // Host reference of two_phase.cpp's server step.
  std::vector<float> y(len, 0.0f);
  for (int r = 0; r < p; ++r)
    codec->decode(in.data() + r * stride, stride, len, y.data(), detail::DecodeMode::accumulate,
                  src(r));
  for (float& v : y) v /= static_cast<float>(p);
  std::vector<float> es_h = es0;
  if (with_error)
    for (std::size_t i = 0; i < len; ++i) y[i] += es_h[i];
  const std::vector<float> y_ref = y;
  std::vector<std::uint8_t> want(bytes);
  const detail::EncodeKey k{5, 9, 1, 3, detail::kPhaseServer, 4242, DType::f16};
  codec->encode(y.data(), len, k, want.data(), with_error ? es_h.data() : nullptr);

  DeviceArray<std::uint8_t> din, dout(bytes);
  din.upload(in);
  DeviceArray<float> des, dscratch(std::max<std::size_t>(len, 1));
  des.upload(es0);
  DeviceArray<kernels::DecodeStatus> dst(1);
  DeviceArray<std::uint8_t> ws(std::max<std::size_t>(1, kernels::chunk_workspace_bytes(c, len, 1)));
  kernels::ChunkServe a;
  a.codec = c;
  a.in = din.get();
  a.stride = stride;
  a.size = stride;
  a.p = p;
  a.len = len;
  a.server_error = with_error ? des.get() : nullptr;
  a.scratch = dscratch.get();
  a.out = dout.get();
  a.seed = 5;
  a.step = 9;
  a.offset = 4242;
  a.layer = 1;
  a.rank = 3;
  a.dtype = DType::f16;
  a.status = dst.get();
  a.workspace = ws.get();
  a.workspace_bytes = ws.size();
  TW_ASSERT_OK(kernels::chunk_serve(a, nullptr));
  TW_ASSERT_OK(kernels::stream_synchronize(nullptr));
  const kernels::DecodeStatus st = dst.download()[0];
  ASSERT_EQ(st.code, 0u) << "from " << st.from_rank << " detail " << st.detail;
  std::vector<float> scratch = dscratch.download();
  scratch.resize(len);
  expect_same_bits(scratch, y_ref, "server's average");
  const std::vector<std::uint8_t> got = dout.download();
  bool same = false;
  expect_payload(got.data(), want.data(), c, len, scale_tolerance(c), what, &same);
  if (::testing::Test::HasFatalFailure()) return;
  const std::vector<float> es = des.download();
  if (!with_error) {
    expect_same_bits(es, es0, "server error untouched without server_error");
    return;
  }
  const std::vector<float> dec = host_decode(c, got.data(), bytes, len);
  for (std::size_t i = 0; i < len; ++i)
    ASSERT_EQ(bits_of(es[i]), bits_of(y_ref[i] - dec[i])) << "new server error of element " << i;
  if (same) expect_same_bits(es, es_h, "server error vs host");
}

TEST(TwoPhaseDevice, ServeMatchesHostServerStep) {
  TW_REQUIRE_DEVICE();
  std::uint32_t seed = 1;
  for (const kernels::ChunkCodec& c : all_codecs())
    for (std::size_t len : {1, 7, 1000, 4097, 100003})
      for (int p = 1; p <= 4; ++p) {
        ++seed;
        check_serve(c, len, p, seed % 2 == 1, seed);
        if (::testing::Test::HasFatalFailure()) return;
      }
}

TEST(TwoPhaseDevice, ServeEmptyChunk) {
  TW_REQUIRE_DEVICE();
  check_serve(onebit(), 0, 2, true, 3);
  check_serve(qsgd(3, 100, true), 0, 3, true, 4);
}

// ---- final decode ---------------------------------------------------------------------------

// The gathered blocks of a layer: chunk j encoded by the host at in + j * stride.
struct Gathered {
  std::vector<std::uint8_t> bytes;
  std::size_t stride = 0;
};

Gathered gather(const kernels::ChunkCodec& c, const std::vector<float>& x, int parts) {
  const std::size_t n = x.size();
  Gathered g;
  g.stride = kernels::chunk_encoded_bytes(c, ceil_div(n, static_cast<std::size_t>(parts))) + 1;
  g.bytes.assign(g.stride * static_cast<std::size_t>(parts), 0);
  auto codec = host_codec(c);
  for (int j = 0; j < parts; ++j) {
    const std::size_t b = detail::wire_chunk_begin(n, j, parts),
                      e = detail::wire_chunk_begin(n, j + 1, parts);
    const detail::EncodeKey k{11, 2, 0, static_cast<std::uint32_t>(j), detail::kPhaseServer, b};
    codec->encode(x.data() + b, e - b, k, g.bytes.data() + j * g.stride, nullptr);
  }
  return g;
}

TEST(TwoPhaseDevice, DecodeMatchesHostCodec) {
  TW_REQUIRE_DEVICE();
  std::uint32_t seed = 1;
  for (const kernels::ChunkCodec& c : all_codecs())
    for (std::size_t n : {1, 7, 1000, 4097, 100003})
      for (int parts = 1; parts <= 4; ++parts) {
        SCOPED_TRACE(name(c) + " n=" + std::to_string(n) + " parts=" + std::to_string(parts));
        const std::vector<float> x = random_floats(n, ++seed);
        const Gathered g = gather(c, x, parts);
        std::vector<float> want(n);
        auto codec = host_codec(c);
        for (int j = 0; j < parts; ++j) {
          const std::size_t b = detail::wire_chunk_begin(n, j, parts),
                            e = detail::wire_chunk_begin(n, j + 1, parts);
          codec->decode(g.bytes.data() + j * g.stride, g.stride, e - b, want.data() + b,
                        detail::DecodeMode::assign, src(j));
        }
        DeviceArray<std::uint8_t> din;
        din.upload(g.bytes);
        DeviceArray<float> dout;
        dout.upload(std::vector<float>(n, 7.0f));
        DeviceArray<kernels::DecodeStatus> dst(1);
        TW_ASSERT_OK(kernels::chunk_decode(c, din.get(), g.stride, g.stride, n, parts, dout.get(),
                                           dst.get(), nullptr));
        TW_ASSERT_OK(kernels::stream_synchronize(nullptr));
        const kernels::DecodeStatus st = dst.download()[0];
        ASSERT_EQ(st.code, 0u) << "from " << st.from_rank << " detail " << st.detail;
        expect_same_bits(dout.download(), want, "decoded layer");
        if (::testing::Test::HasFatalFailure()) return;
      }
}

// ---- corrupt payloads -----------------------------------------------------------------------

// Sets code `e` of a qsgd payload of len elements to `value`.
void set_code(std::uint8_t* payload, const kernels::ChunkCodec& c, std::size_t len, std::size_t e,
              std::uint32_t value) {
  std::uint8_t* codes = payload + kHeaderBytes + 4 * ceil_div(len, c.bucket);
  for (int k = 0; k < c.bits; ++k) {
    const std::size_t pos = e * static_cast<std::size_t>(c.bits) + static_cast<std::size_t>(k);
    const auto bit = static_cast<std::uint8_t>(1u << (pos & 7));
    if ((value >> k) & 1u)
      codes[pos >> 3] |= bit;
    else
      codes[pos >> 3] &= static_cast<std::uint8_t>(~bit);
  }
}

kernels::DecodeStatus run_decode(const kernels::ChunkCodec& c, const Gathered& g, std::size_t n,
                                 int parts, bool* untouched,
                                 kernels::DecodeStatus initial = kernels::DecodeStatus{0, 0, 0}) {
  DeviceArray<std::uint8_t> din;
  din.upload(g.bytes);
  DeviceArray<float> dout;
  dout.upload(std::vector<float>(n, 7.0f));
  DeviceArray<kernels::DecodeStatus> dst;
  dst.upload({initial});
  const std::string err = kernels::chunk_decode(c, din.get(), g.stride, g.stride, n, parts,
                                                dout.get(), dst.get(), nullptr);
  EXPECT_TRUE(err.empty()) << err;
  kernels::stream_synchronize(nullptr);
  const std::vector<float> out = dout.download();
  *untouched = std::all_of(out.begin(), out.end(), [](float v) { return v == 7.0f; });
  return dst.download()[0];
}

TEST(TwoPhaseDevice, DecodeRejectsCorruptHeaders) {
  TW_REQUIRE_DEVICE();
  const std::size_t n = 1003;
  const int parts = 3;
  for (const kernels::ChunkCodec& c : {onebit(), qsgd(3, 100, false), qsgd(8, 512, true)}) {
    const std::vector<float> x = random_floats(n, 5);
    const std::size_t len1 =
        detail::wire_chunk_begin(n, 2, parts) - detail::wire_chunk_begin(n, 1, parts);
    const bool is_qsgd = c.method == kQsgdByte;
    const std::uint64_t body = kernels::chunk_encoded_bytes(c, len1) - kHeaderBytes;
    struct Case {
      const char* what;
      std::uint32_t code;
      std::uint64_t detail;
      std::size_t at;  // byte to overwrite
      std::vector<std::uint8_t> value;
    };
    std::vector<Case> cases = {
        {"magic", kernels::kDecodeBadMagic, 0x31525755u, 0, {0x55}},
        {"version", kernels::kDecodeBadMagic, 0x31525754u, 4, {2}},
        {"dtype", kernels::kDecodeBadMagic, 0x31525754u, 7, {3}},
        {"method", kernels::kDecodeBadMethod, 1, 6, {1}},
        {"n",
         kernels::kDecodeBadN,
         len1 + 1,
         8,
         {static_cast<std::uint8_t>(len1 + 1), static_cast<std::uint8_t>((len1 + 1) >> 8)}},
        {"param", kernels::kDecodeBadParam, 9, 16, {9}},
        {"body",
         kernels::kDecodeBadBody,
         body + 1,
         24,
         {static_cast<std::uint8_t>(body + 1), static_cast<std::uint8_t>((body + 1) >> 8)}},
    };
    if (is_qsgd) cases.push_back({"bucket", kernels::kDecodeBadAux, 101, 20, {101, 0, 0, 0}});
    for (const Case& k : cases) {
      SCOPED_TRACE(name(c) + ": " + k.what);
      Gathered g = gather(c, x, parts);
      std::uint8_t* p1 = g.bytes.data() + g.stride;  // chunk 1
      for (std::size_t i = 0; i < k.value.size(); ++i) p1[k.at + i] = k.value[i];
      bool untouched = false;
      const kernels::DecodeStatus st = run_decode(c, g, n, parts, &untouched);
      EXPECT_EQ(st.code, k.code);
      EXPECT_EQ(st.from_rank, 1u);
      EXPECT_EQ(st.detail, k.detail);
      EXPECT_TRUE(untouched) << "decode wrote its output despite the error";
    }
  }
}

TEST(TwoPhaseDevice, DecodeRejectsQsgdCodeOutOfRange) {
  TW_REQUIRE_DEVICE();
  const std::size_t n = 100003;
  const int parts = 4;
  for (int bits : {2, 3, 4, 5, 8}) {
    const kernels::ChunkCodec c = qsgd(bits, 100, bits % 2 == 0);
    SCOPED_TRACE(name(c));
    const std::vector<float> x = random_floats(n, 8);
    const std::uint32_t bad = (1u << bits) - 1u;
    const std::size_t len2 =
        detail::wire_chunk_begin(n, 3, parts) - detail::wire_chunk_begin(n, 2, parts);
    // One bad code in chunk 2 (the last element: its code may straddle into padding).
    for (std::size_t e : {std::size_t{0}, std::size_t{12345}, len2 - 1}) {
      Gathered g = gather(c, x, parts);
      set_code(g.bytes.data() + 2 * g.stride, c, len2, e, bad);
      bool untouched = false;
      const kernels::DecodeStatus st = run_decode(c, g, n, parts, &untouched);
      EXPECT_EQ(st.code, kernels::kDecodeBadCode);
      EXPECT_EQ(st.from_rank, 2u);
      EXPECT_EQ(st.detail, e);
      EXPECT_TRUE(untouched);
    }
    // Several: the lowest (chunk, element) wins.
    {
      Gathered g = gather(c, x, parts);
      set_code(g.bytes.data() + 3 * g.stride, c, len2, 10, bad);
      set_code(g.bytes.data() + 1 * g.stride, c, len2, 20000, bad);
      set_code(g.bytes.data() + 1 * g.stride, c, len2, 777, bad);
      bool untouched = false;
      const kernels::DecodeStatus st = run_decode(c, g, n, parts, &untouched);
      EXPECT_EQ(st.code, kernels::kDecodeBadCode);
      EXPECT_EQ(st.from_rank, 1u);
      EXPECT_EQ(st.detail, 777u);
      EXPECT_TRUE(untouched);
    }
    // A header error anywhere is reported before any code error.
    {
      Gathered g = gather(c, x, parts);
      set_code(g.bytes.data(), c, detail::wire_chunk_begin(n, 1, parts), 3, bad);
      g.bytes[3 * g.stride + 16] = 1;  // chunk 3: bits = 1
      bool untouched = false;
      const kernels::DecodeStatus st = run_decode(c, g, n, parts, &untouched);
      EXPECT_EQ(st.code, kernels::kDecodeBadParam);
      EXPECT_EQ(st.from_rank, 3u);
      EXPECT_EQ(st.detail, 1u);
      EXPECT_TRUE(untouched);
    }
    // The largest valid code passes.
    {
      Gathered g = gather(c, x, parts);
      set_code(g.bytes.data() + 2 * g.stride, c, len2, 5, bad - 1);
      bool untouched = true;
      const kernels::DecodeStatus st = run_decode(c, g, n, parts, &untouched);
      EXPECT_EQ(st.code, 0u);
      EXPECT_EQ(st.detail, 0u);
      EXPECT_FALSE(untouched);
    }
  }
}

TEST(TwoPhaseDevice, DecodeReportsPoisonAndKeepsEarlierErrors) {
  TW_REQUIRE_DEVICE();
  const std::size_t n = 4097;
  const int parts = 3;
  for (const kernels::ChunkCodec& c : {onebit(), qsgd(5, 512, false)}) {
    SCOPED_TRACE(name(c));
    const std::vector<float> x = random_floats(n, 9);
    {
      Gathered g = gather(c, x, parts);
      detail::wire_write_poison(g.bytes.data() + 2 * g.stride, kernels::kDecodeBadCode, 1, 55);
      bool untouched = false;
      const kernels::DecodeStatus st = run_decode(c, g, n, parts, &untouched);
      EXPECT_EQ(st.code, kernels::kDecodePoisoned);
      EXPECT_EQ(st.from_rank, 2u);
      EXPECT_EQ(st.detail, kernels::kDecodeBadCode);
      EXPECT_TRUE(untouched);
    }
    {
      // An error already recorded this step: nothing written, the status kept.
      Gathered g = gather(c, x, parts);
      bool untouched = false;
      const kernels::DecodeStatus st = run_decode(
          c, g, n, parts, &untouched, kernels::DecodeStatus{kernels::kDecodeBadN, 7, 99});
      EXPECT_EQ(st.code, kernels::kDecodeBadN);
      EXPECT_EQ(st.from_rank, 7u);
      EXPECT_EQ(st.detail, 99u);
      EXPECT_TRUE(untouched);
    }
  }
}

TEST(TwoPhaseDevice, ServeRejectsCorruptPayloadWithPoison) {
  TW_REQUIRE_DEVICE();
  const std::size_t len = 1001;
  const int p = 3;
  for (const kernels::ChunkCodec& c : {onebit(), qsgd(3, 100, true), qsgd(4, 512, false)}) {
    const bool is_qsgd = c.method == kQsgdByte;
    const std::size_t bytes = kernels::chunk_encoded_bytes(c, len);
    const std::size_t stride = bytes + 2;
    auto codec = host_codec(c);
    std::vector<std::uint8_t> clean(stride * p, 0);
    for (int r = 0; r < p; ++r) {
      const std::vector<float> x = random_floats(len, 70 + r);
      codec->encode(x.data(), len, detail::EncodeKey{}, clean.data() + r * stride, nullptr);
    }
    struct Case {
      const char* what;
      int rank;
      std::uint32_t code;
      std::uint64_t detail;
    };
    std::vector<Case> cases = {{"method", 1, kernels::kDecodeBadMethod, 9},
                               {"n", 2, kernels::kDecodeBadN, len - 1}};
    if (is_qsgd) cases.push_back({"code", 2, kernels::kDecodeBadCode, 500});
    for (const Case& k : cases) {
      SCOPED_TRACE(name(c) + ": " + k.what);
      std::vector<std::uint8_t> in = clean;
      std::uint8_t* q = in.data() + k.rank * stride;
      if (k.code == kernels::kDecodeBadMethod) q[6] = 9;
      if (k.code == kernels::kDecodeBadN) detail::wire_store_u64(q + 8, len - 1);
      if (k.code == kernels::kDecodeBadCode) set_code(q, c, len, 500, (1u << c.bits) - 1u);
      DeviceArray<std::uint8_t> din, dout;
      din.upload(in);
      dout.upload(std::vector<std::uint8_t>(bytes, 0xcd));
      const std::vector<float> es0 = random_floats(len, 4);
      DeviceArray<float> des, dscratch(len);
      des.upload(es0);
      DeviceArray<kernels::DecodeStatus> dst(1);
      DeviceArray<std::uint8_t> ws(
          std::max<std::size_t>(1, kernels::chunk_workspace_bytes(c, len, 1)));
      kernels::ChunkServe a;
      a.codec = c;
      a.in = din.get();
      a.stride = stride;
      a.size = stride;
      a.p = p;
      a.len = len;
      a.server_error = des.get();
      a.scratch = dscratch.get();
      a.out = dout.get();
      a.status = dst.get();
      a.workspace = ws.get();
      a.workspace_bytes = ws.size();
      TW_ASSERT_OK(kernels::chunk_serve(a, nullptr));
      TW_ASSERT_OK(kernels::stream_synchronize(nullptr));
      const kernels::DecodeStatus st = dst.download()[0];
      EXPECT_EQ(st.code, k.code);
      EXPECT_EQ(st.from_rank, static_cast<std::uint32_t>(k.rank));
      EXPECT_EQ(st.detail, k.detail);
      const std::vector<std::uint8_t> out = dout.download();
      EXPECT_EQ(detail::wire_load_u32(out.data()), kernels::kPoisonMagic);
      EXPECT_EQ(detail::wire_load_u32(out.data() + 4), k.code);
      EXPECT_EQ(detail::wire_load_u32(out.data() + 8), static_cast<std::uint32_t>(k.rank));
      EXPECT_EQ(detail::wire_load_u64(out.data() + 12), k.detail);
      for (std::size_t i = 20; i < bytes; ++i) ASSERT_EQ(out[i], 0) << "poison block byte " << i;
      expect_same_bits(des.download(), es0, "server error after a rejected payload");
      // Every rank decoding the gathered poison block reports the server's code.
      Gathered g;
      g.stride = bytes;
      g.bytes = out;
      bool untouched = false;
      const kernels::DecodeStatus st2 = run_decode(c, g, len, 1, &untouched);
      EXPECT_EQ(st2.code, kernels::kDecodePoisoned);
      EXPECT_EQ(st2.from_rank, 0u);
      EXPECT_EQ(st2.detail, k.code);
      EXPECT_TRUE(untouched);
    }
  }
}

// ---- a whole two-phase step -----------------------------------------------------------------

// P workers encode, each server serves its chunk, every rank decodes the gathered chunks:
// the device pipeline against the same steps on the host codecs.
TEST(TwoPhaseDevice, WholeStepMatchesHost) {
  TW_REQUIRE_DEVICE();
  for (const kernels::ChunkCodec& c : {onebit(), qsgd(4, 512, false)}) {
    SCOPED_TRACE(name(c));
    const std::size_t n = 30011;
    const int p = 3;
    const std::size_t max_len = ceil_div(n, static_cast<std::size_t>(p));
    const std::size_t slot = kernels::chunk_encoded_bytes(c, max_len);
    auto codec = host_codec(c);
    // Host.
    std::vector<std::uint8_t> sent(slot * p * p, 0);  // [worker][chunk]
    std::vector<std::vector<float>> xs;
    for (int r = 0; r < p; ++r) {
      xs.push_back(random_floats(n, 300 + r));
      for (int j = 0; j < p; ++j) {
        const std::size_t b = detail::wire_chunk_begin(n, j, p),
                          e = detail::wire_chunk_begin(n, j + 1, p);
        const detail::EncodeKey k{1, 2, 3, static_cast<std::uint32_t>(r), detail::kPhaseWorker, b};
        std::vector<float> x = xs[r];
        codec->encode(x.data() + b, e - b, k, sent.data() + (r * p + j) * slot, nullptr);
      }
    }
    // Device: encode each worker, then serve each chunk from the device payloads.
    DeviceArray<std::uint8_t> dsent(slot * p * p), dgather(slot * p);
    DeviceArray<std::uint8_t> ws(std::max<std::size_t>(1, kernels::chunk_workspace_bytes(c, n, p)));
    for (int r = 0; r < p; ++r) {
      DeviceArray<float> dx;
      dx.upload(xs[r]);
      kernels::ChunkEncode a;
      a.codec = c;
      a.x = dx.get();
      a.n = n;
      a.parts = p;
      a.out = dsent.get() + r * p * slot;
      a.stride = slot;
      a.seed = 1;
      a.step = 2;
      a.layer = 3;
      a.rank = static_cast<std::uint32_t>(r);
      a.workspace = ws.get();
      a.workspace_bytes = ws.size();
      TW_ASSERT_OK(kernels::chunk_encode(a, nullptr));
    }
    TW_ASSERT_OK(kernels::stream_synchronize(nullptr));
    const std::vector<std::uint8_t> dev_sent = dsent.download();
    // Server j receives chunk j of every worker: gather them with stride p * slot.
    DeviceArray<kernels::DecodeStatus> dst(1);
    DeviceArray<float> dscratch(max_len);
    for (int j = 0; j < p; ++j) {
      const std::size_t b = detail::wire_chunk_begin(n, j, p),
                        e = detail::wire_chunk_begin(n, j + 1, p);
      kernels::ChunkServe a;
      a.codec = c;
      a.in = dsent.get() + j * slot;
      a.stride = p * slot;
      a.size = slot;
      a.p = p;
      a.len = e - b;
      a.scratch = dscratch.get();
      a.out = dgather.get() + j * slot;
      a.seed = 1;
      a.step = 2;
      a.layer = 3;
      a.rank = static_cast<std::uint32_t>(j);
      a.offset = b;
      a.status = dst.get();
      a.workspace = ws.get();
      a.workspace_bytes = ws.size();
      TW_ASSERT_OK(kernels::chunk_serve(a, nullptr));
    }
    DeviceArray<float> dout(n);
    TW_ASSERT_OK(
        kernels::chunk_decode(c, dgather.get(), slot, slot, n, p, dout.get(), dst.get(), nullptr));
    TW_ASSERT_OK(kernels::stream_synchronize(nullptr));
    ASSERT_EQ(dst.download()[0].code, 0u);
    // Host server steps on the device's worker payloads, then the host decode.
    std::vector<float> want(n);
    for (int j = 0; j < p; ++j) {
      const std::size_t b = detail::wire_chunk_begin(n, j, p),
                        e = detail::wire_chunk_begin(n, j + 1, p);
      std::vector<float> y(e - b, 0.0f);
      for (int r = 0; r < p; ++r)
        codec->decode(dev_sent.data() + (r * p + j) * slot, slot, e - b, y.data(),
                      detail::DecodeMode::accumulate, src(r));
      for (float& v : y) v /= static_cast<float>(p);
      std::vector<std::uint8_t> out(slot);
      const detail::EncodeKey k{1, 2, 3, static_cast<std::uint32_t>(j), detail::kPhaseServer, b};
      codec->encode(y.data(), e - b, k, out.data(), nullptr);
      const std::vector<std::uint8_t> dev_gather = dgather.download();
      bool same = false;
      expect_payload(dev_gather.data() + j * slot, out.data(), c, e - b, scale_tolerance(c),
                     "served chunk " + std::to_string(j), &same);
      if (::testing::Test::HasFatalFailure()) return;
      codec->decode(dev_gather.data() + j * slot, slot, e - b, want.data() + b,
                    detail::DecodeMode::assign, src(j));
    }
    expect_same_bits(dout.download(), want, "decoded step result");
    // The worker payloads themselves against the host's.
    for (int r = 0; r < p; ++r)
      for (int j = 0; j < p; ++j) {
        const std::size_t len =
            detail::wire_chunk_begin(n, j + 1, p) - detail::wire_chunk_begin(n, j, p);
        bool same = false;
        expect_payload(dev_sent.data() + (r * p + j) * slot, sent.data() + (r * p + j) * slot, c,
                       len, scale_tolerance(c), "worker payload", &same);
        if (::testing::Test::HasFatalFailure()) return;
      }
  }
}

}  // namespace
}  // namespace thinwire::test
