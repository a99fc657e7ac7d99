// The top-k launchers (kernels/launch.hpp) against the host backend: topk_encode's payload
// must equal TopkCodec::encode's (encode_ef's with g, the sampled selection's with
// select=sampled) byte for byte, with the same residual bits and the same norms;
// topk_decode_average must equal the scatter-add of the payloads in rank order divided by P,
// bit for bit, and reject corrupt payloads with the right DecodeStatus, leaving out alone.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "compress/topk_codec.hpp"
#include "compress/wire_format.hpp"
#include "device_test_support.hpp"
#include "launch.hpp"

namespace thinwire::test {
namespace {

using detail::EncodeKey;
using detail::EncodeResult;
using detail::TopkCodec;

std::uint32_t bits_of(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}
float from_bits(std::uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

enum class Data {
  normal,    // distinct magnitudes
  ties,      // few distinct magnitudes: -2, -1, -0, +0, 1, 2
  constant,  // every key equal
  zeros,     // +0 and -0 with a few non-zero entries
  specials,  // infinities, NaNs (several payloads), denormals among normal values
  wide,      // magnitudes over the whole f32 range
};

const char* name(Data d) {
  switch (d) {
    case Data::normal:
      return "normal";
    case Data::ties:
      return "ties";
    case Data::constant:
      return "constant";
    case Data::zeros:
      return "zeros";
    case Data::specials:
      return "specials";
    case Data::wide:
      return "wide";
  }
  return "?";
}

// `nan`: whether NaNs may appear (not with g: the GPU's x + g gives the canonical NaN, the
// host's SSE add the first operand's payload).
std::vector<float> make_data(Data d, std::size_t n, std::uint32_t seed, bool nan = true) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_int_distribution<int> pick(0, 5);
  std::vector<float> x(n);
  for (std::size_t i = 0; i < n; ++i) {
    switch (d) {
      case Data::normal:
        x[i] = normal(rng);
        break;
      case Data::ties: {
        const float v[6] = {-2.0f, -1.0f, -0.0f, 0.0f, 1.0f, 2.0f};
        x[i] = v[pick(rng)];
        break;
      }
      case Data::constant:
        x[i] = (i % 2) ? 1.5f : -1.5f;
        break;
      case Data::zeros:
        x[i] = (rng() % 97 == 0) ? normal(rng) : ((rng() & 1) ? -0.0f : 0.0f);
        break;
      case Data::specials: {
        x[i] = normal(rng);
        const std::uint32_t r = rng() % 50;
        if (r == 0) x[i] = INFINITY;
        if (r == 1) x[i] = -INFINITY;
        if (r == 2 && nan) x[i] = from_bits(0x7fc00001u + (rng() % 5));
        if (r == 3 && nan) x[i] = from_bits(0xffc00000u);
        if (r == 4) x[i] = from_bits(1u + rng() % 1000);  // denormal
        if (r == 5) x[i] = -0.0f;
        break;
      }
      case Data::wide: {
        std::uint32_t u = rng() & 0x7f7fffffu;  // finite
        x[i] = from_bits(u | (rng() & 0x80000000u));
        break;
      }
    }
  }
  return x;
}

bool same_double(double a, double b) {
  if (std::isnan(a) || std::isnan(b)) return std::isnan(a) && std::isnan(b);
  if (std::isinf(a) || std::isinf(b)) return a == b;
  return std::fabs(a - b) <= 1e-9 * std::max(std::fabs(a), std::fabs(b)) + 1e-300;
}

// First differing byte, or -1.
long first_diff(const std::vector<std::uint8_t>& a, const std::vector<std::uint8_t>& b) {
  if (a.size() != b.size()) return 0;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (a[i] != b[i]) return static_cast<long>(i);
  return -1;
}
long first_diff(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return 0;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (bits_of(a[i]) != bits_of(b[i])) return static_cast<long>(i);
  return -1;
}

struct Case {
  std::size_t n;
  double density;
  Data data;
  bool sampled;
  bool with_g;
  enum Residual { none, separate, alias } residual;
  bool stats;
};

std::string describe(const Case& c) {
  return std::string(name(c.data)) + " n=" + std::to_string(c.n) +
         " density=" + std::to_string(c.density) + (c.sampled ? " sampled" : " exact") +
         (c.with_g ? " g" : "") +
         (c.residual == Case::none       ? " no-residual"
          : c.residual == Case::separate ? " residual"
                                         : " residual=x") +
         (c.stats ? " stats" : "");
}

// Runs one case on the launcher and on the host codec and compares everything.
void check_encode(const Case& c, std::uint32_t seed) {
  SCOPED_TRACE(describe(c) + " seed=" + std::to_string(seed) + " backend=" + backend_name());
  const std::size_t n = c.n;
  const std::size_t k = detail::topk_count(c.density, n);
  ASSERT_GE(k, 1u);
  std::vector<float> x = make_data(c.data, n, seed, !c.with_g);
  std::vector<float> g;
  if (c.with_g) g = make_data(c.data == Data::specials ? Data::normal : c.data, n, seed + 77);
  EncodeKey key;
  key.seed = 0x1234567890abcdefull + seed;
  key.step = 17 + seed;
  key.layer = 3;
  key.rank = 2;
  key.dtype = DType::bf16;

  // Host.
  TopkCodec codec(c.density, c.sampled ? Selection::sampled : Selection::exact);
  std::vector<std::uint8_t> host_out(codec.encoded_bytes(n));
  std::vector<float> host_x = x, host_res(n), host_sum;
  EncodeResult hr;
  if (c.with_g) {
    host_sum.resize(n);
    for (std::size_t i = 0; i < n; ++i) host_sum[i] = x[i] + g[i];
    hr = codec.encode_ef(host_x.data(), g.data(), n, key, host_out.data());
    host_res = host_x;  // e became the residual
  } else {
    hr = codec.encode(host_x.data(), n, key, host_out.data(), host_res.data());
  }
  ASSERT_EQ(hr.bytes, host_out.size());

  // Device.
  void* stream = nullptr;
  TW_ASSERT_OK(kernels::stream_create(&stream));
  DeviceArray<float> dx, dg, dres;
  dx.upload(x);
  if (c.with_g) dg.upload(g);
  if (c.residual == Case::separate) dres.resize(n);
  DeviceArray<std::uint8_t> dout(host_out.size());
  DeviceArray<double> dstats(2);
  // The stats are accumulated into (checked where the sums dwarf the start values).
  const double s0 = c.data == Data::normal ? 0.25 : 0.0, s1 = c.data == Data::normal ? 0.5 : 0.0;
  dstats.upload({s0, s1});
  const std::size_t ws_bytes = kernels::topk_workspace_bytes(n, k);
  DeviceArray<std::uint8_t> ws(ws_bytes);

  kernels::TopkEncode a;
  a.x = dx.get();
  a.g = c.with_g ? dg.get() : nullptr;
  a.residual = c.residual == Case::separate ? dres.get()
               : c.residual == Case::alias  ? dx.get()
                                            : nullptr;
  a.n = n;
  a.k = k;
  a.sampled = c.sampled;
  a.seed = key.seed;
  a.step = key.step;
  a.layer = key.layer;
  a.rank = key.rank;
  a.dtype = key.dtype;
  a.out = dout.get();
  a.stats = c.stats ? dstats.get() : nullptr;
  a.workspace = ws.get();
  a.workspace_bytes = ws_bytes;
  // Garbage in the output and the workspace must not matter.
  std::vector<std::uint8_t> junk(host_out.size(), 0xa5);
  dout.upload(junk);
  if (ws_bytes) ws.upload(std::vector<std::uint8_t>(ws_bytes, 0x5a));
  TW_ASSERT_OK(kernels::topk_encode(a, stream));
  TW_ASSERT_OK(kernels::stream_synchronize(stream));
  TW_ASSERT_OK(kernels::stream_destroy(stream));

  const std::vector<std::uint8_t> dev_out = dout.download();
  const long d = first_diff(dev_out, host_out);
  if (d >= 0) {
    std::string where = d < 32 ? "header"
                        : d < static_cast<long>(32 + 4 * k)
                            ? "index " + std::to_string((d - 32) / 4)
                            : "value " + std::to_string((d - 32 - 4 * k) / 4);
    ADD_FAILURE() << "payload differs at byte " << d << " (" << where << ") of " << host_out.size()
                  << ", k=" << k;
  }

  const std::vector<float> dev_x = dx.download();
  if (c.residual == Case::alias) {
    EXPECT_EQ(first_diff(dev_x, host_res), -1) << "residual (in x) differs";
  } else {
    const std::vector<float>& expect_x = c.with_g ? host_sum : x;
    EXPECT_EQ(first_diff(dev_x, expect_x), -1) << "x after encode differs";
    if (c.residual == Case::separate) {
      EXPECT_EQ(first_diff(dres.download(), host_res), -1) << "residual differs";
    }
  }

  const std::vector<double> stats = dstats.download();
  if (c.stats) {
    EXPECT_TRUE(same_double(stats[0] - s0, hr.sq_error))
        << "sq_error " << stats[0] - s0 << " vs " << hr.sq_error;
    EXPECT_TRUE(same_double(stats[1] - s1, hr.sq_norm))
        << "sq_norm " << stats[1] - s1 << " vs " << hr.sq_norm;
  } else {
    EXPECT_EQ(stats[0], s0);
    EXPECT_EQ(stats[1], s1);
  }
}

const std::size_t kSizes[] = {1, 2, 7, 1000, 1023, 1024, 4097, 100003};
const double kDensities[] = {0.001, 0.01, 0.1, 0.37, 1.0};
const Data kData[] = {Data::normal, Data::ties,     Data::constant,
                      Data::zeros,  Data::specials, Data::wide};

TEST(TopkDevice, ExactEncodeMatchesHost) {
  TW_REQUIRE_DEVICE();
  std::uint32_t seed = 1;
  for (std::size_t n : kSizes)
    for (double density : kDensities)
      for (Data data : kData) {
        check_encode(Case{n, density, data, false, false, Case::separate, true}, seed++);
        if (HasFailure()) return;
      }
}

TEST(TopkDevice, SampledEncodeMatchesHost) {
  TW_REQUIRE_DEVICE();
  std::uint32_t seed = 1000;
  for (std::size_t n : {std::size_t{7}, std::size_t{1023}, std::size_t{1024}, std::size_t{4097},
                        std::size_t{100003}, std::size_t{300007}})
    for (double density : kDensities)
      for (Data data : kData) {
        check_encode(Case{n, density, data, true, false, Case::separate, true}, seed++);
        if (HasFailure()) return;
      }
}

// Data whose sample threshold lets through fewer than k (padding with the lowest indices)
// or many more than k (trimmed by the exact selection): a few large entries outside the
// sample cells' positions are unlikely either way, so both branches are forced by shape.
TEST(TopkDevice, SampledPaddingAndTrimming) {
  TW_REQUIRE_DEVICE();
  for (std::uint32_t seed = 1; seed <= 6; ++seed) {
    // Ties everywhere: every key passes the threshold (trim).
    check_encode(Case{50021, 0.02, Data::constant, true, false, Case::separate, true}, seed);
    // Mostly zeros: the sample threshold is 0 or a few big keys (pad or trim).
    check_encode(Case{50021, 0.05, Data::zeros, true, false, Case::alias, true}, seed);
    check_encode(Case{200003, 0.003, Data::zeros, true, true, Case::alias, true}, seed);
    if (HasFailure()) return;
  }
}

TEST(TopkDevice, FusedErrorFeedbackMatchesHost) {
  TW_REQUIRE_DEVICE();
  std::uint32_t seed = 2000;
  for (std::size_t n :
       {std::size_t{1}, std::size_t{7}, std::size_t{1000}, std::size_t{4097}, std::size_t{100003}})
    for (double density : {0.001, 0.05, 1.0})
      for (Data data : {Data::normal, Data::ties, Data::zeros, Data::specials})
        for (bool sampled : {false, true}) {
          check_encode(Case{n, density, data, sampled, true, Case::alias, true}, seed++);
          if (HasFailure()) return;
        }
}

TEST(TopkDevice, OptionalOutputs) {
  TW_REQUIRE_DEVICE();
  std::uint32_t seed = 3000;
  for (std::size_t n : {std::size_t{7}, std::size_t{4097}, std::size_t{100003}})
    for (Case::Residual r : {Case::none, Case::separate, Case::alias})
      for (bool stats : {false, true})
        for (bool g : {false, true}) {
          check_encode(Case{n, 0.02, Data::normal, false, g, r, stats}, seed++);
          if (HasFailure()) return;
        }
}

TEST(TopkDevice, EncodeRejectsBadArguments) {
  TW_REQUIRE_DEVICE();
  DeviceArray<float> x(8);
  DeviceArray<std::uint8_t> out(32 + 8 * 8);
  kernels::TopkEncode a;
  a.x = x.get();
  a.out = out.get();
  a.n = 8;
  a.k = 9;  // k > n
  EXPECT_FALSE(kernels::topk_encode(a, nullptr).empty());
  a.k = 0;
  EXPECT_FALSE(kernels::topk_encode(a, nullptr).empty());
  a.k = 2;
  if (kernels::topk_workspace_bytes(8, 2) > 0) {  // the CUDA path needs its workspace
    a.workspace_bytes = kernels::topk_workspace_bytes(8, 2) - 1;
    DeviceArray<std::uint8_t> ws(a.workspace_bytes + 1);
    a.workspace = ws.get();
    EXPECT_FALSE(kernels::topk_encode(a, nullptr).empty());
  }
}

// ---- decode ---------------------------------------------------------------------------------

struct Payloads {
  std::size_t n = 0, k = 0, size = 0, stride = 0;
  int p = 0;
  std::vector<std::uint8_t> bytes;  // p payloads at stride
};

// P payloads of the host codec over different vectors, at an odd stride (unaligned slots).
Payloads make_payloads(int p, std::size_t n, double density, std::uint32_t seed) {
  Payloads pl;
  pl.n = n;
  pl.p = p;
  pl.k = detail::topk_count(density, n);
  TopkCodec codec(density, Selection::exact);
  pl.size = codec.encoded_bytes(n);
  pl.stride = pl.size + 13;
  pl.bytes.assign(pl.stride * p, 0xee);
  for (int r = 0; r < p; ++r) {
    std::vector<float> x = make_data(r % 2 ? Data::normal : Data::ties, n, seed + r, false);
    // Different scales, so that the order of the additions shows in the bits; -0 entries
    // check that 0 + (-0) is +0.
    for (float& v : x) v *= std::ldexp(1.0f, 3 * r) * 1.1f;
    codec.encode(x.data(), n, EncodeKey{}, pl.bytes.data() + r * pl.stride, nullptr);
  }
  return pl;
}

std::vector<float> host_average(const Payloads& pl) {
  std::vector<float> out(pl.n, 0.0f);
  for (int r = 0; r < pl.p; ++r) {
    const std::uint8_t* idx = pl.bytes.data() + r * pl.stride + 32;
    const std::uint8_t* val = idx + 4 * pl.k;
    for (std::size_t j = 0; j < pl.k; ++j) {
      std::uint32_t i, v;
      std::memcpy(&i, idx + 4 * j, 4);
      std::memcpy(&v, val + 4 * j, 4);
      out[i] += from_bits(v);
    }
  }
  for (float& v : out) v = v / static_cast<float>(pl.p);
  return out;
}

// Runs the decoder on pl with out pre-filled with a pattern; returns out and the status.
std::vector<float> run_decode(const Payloads& pl, kernels::DecodeStatus* st_out,
                              const kernels::DecodeStatus& st_in = {}) {
  DeviceArray<std::uint8_t> din;
  din.upload(pl.bytes);
  std::vector<float> pattern(pl.n);
  for (std::size_t i = 0; i < pl.n; ++i) pattern[i] = 7.0f + static_cast<float>(i % 5);
  DeviceArray<float> dout;
  dout.upload(pattern);
  DeviceArray<kernels::DecodeStatus> dst;
  dst.upload({st_in});
  void* stream = nullptr;
  EXPECT_TRUE(kernels::stream_create(&stream).empty());
  const std::string err = kernels::topk_decode_average(din.get(), pl.stride, pl.size, pl.p, pl.n,
                                                       pl.k, dout.get(), dst.get(), stream);
  EXPECT_TRUE(err.empty()) << err;
  EXPECT_TRUE(kernels::stream_synchronize(stream).empty());
  kernels::stream_destroy(stream);
  *st_out = dst.download()[0];
  return dout.download();
}

bool untouched(const std::vector<float>& out) {
  for (std::size_t i = 0; i < out.size(); ++i)
    if (out[i] != 7.0f + static_cast<float>(i % 5)) return false;
  return true;
}

TEST(TopkDevice, DecodeAverageMatchesHost) {
  TW_REQUIRE_DEVICE();
  std::uint32_t seed = 1;
  for (std::size_t n :
       {std::size_t{1}, std::size_t{7}, std::size_t{1000}, std::size_t{4097}, std::size_t{100003}})
    for (double density : {0.001, 0.1, 0.5, 1.0})
      for (int p = 1; p <= 4; ++p) {
        SCOPED_TRACE("n=" + std::to_string(n) + " density=" + std::to_string(density) +
                     " p=" + std::to_string(p));
        const Payloads pl = make_payloads(p, n, density, seed++);
        kernels::DecodeStatus st{};
        const std::vector<float> out = run_decode(pl, &st);
        EXPECT_EQ(st.code, 0u);
        EXPECT_EQ(st.from_rank, 0u);
        EXPECT_EQ(st.detail, 0u);
        const long d = first_diff(out, host_average(pl));
        EXPECT_EQ(d, -1) << "out differs at " << d;
        if (HasFailure()) return;
      }
}

// Writes field bytes into payload r.
void poke_u32(Payloads* pl, int r, std::size_t at, std::uint32_t v) {
  std::memcpy(pl->bytes.data() + r * pl->stride + at, &v, 4);
}
void poke_u64(Payloads* pl, int r, std::size_t at, std::uint64_t v) {
  std::memcpy(pl->bytes.data() + r * pl->stride + at, &v, 8);
}
std::uint32_t peek_u32(const Payloads& pl, int r, std::size_t at) {
  std::uint32_t v;
  std::memcpy(&v, pl.bytes.data() + r * pl.stride + at, 4);
  return v;
}

struct Fault {
  const char* what;
  std::uint32_t code;
  int rank;
  std::uint64_t detail;
};

TEST(TopkDevice, DecodeRejectsCorruptPayloads) {
  TW_REQUIRE_DEVICE();
  const std::size_t n = 4097;
  const Payloads good = make_payloads(3, n, 0.05, 42);
  const std::size_t k = good.k;
  ASSERT_GE(k, 10u);
  const std::size_t idx = 32;  // the indices start here

  auto check = [&](const Payloads& pl, const Fault& f) {
    SCOPED_TRACE(f.what);
    kernels::DecodeStatus st{};
    const std::vector<float> out = run_decode(pl, &st);
    EXPECT_EQ(st.code, f.code);
    EXPECT_EQ(st.from_rank, static_cast<std::uint32_t>(f.rank));
    EXPECT_EQ(st.detail, f.detail);
    EXPECT_TRUE(untouched(out)) << "out was written";
  };
  {
    Payloads pl = good;
    pl.bytes[1 * pl.stride] ^= 1;
    check(pl, {"magic", kernels::kDecodeBadMagic, 1, peek_u32(pl, 1, 0)});
  }
  {
    Payloads pl = good;
    pl.bytes[2 * pl.stride + 6] = 2;  // onebit
    check(pl, {"method", kernels::kDecodeBadMethod, 2, 2});
  }
  {
    Payloads pl = good;
    poke_u64(&pl, 0, 8, n + 1);
    check(pl, {"n", kernels::kDecodeBadN, 0, n + 1});
  }
  {
    Payloads pl = good;
    poke_u32(&pl, 1, 16, static_cast<std::uint32_t>(k + 1));
    check(pl, {"k", kernels::kDecodeBadParam, 1, k + 1});
  }
  {
    Payloads pl = good;
    poke_u64(&pl, 2, 24, 8 * k + 8);
    check(pl, {"body", kernels::kDecodeBadBody, 2, 8 * k + 8});
  }
  {
    Payloads pl = good;
    pl.size = 31;
    check(pl, {"short", kernels::kDecodeBadMagic, 0, 0});
  }
  {
    Payloads pl = good;
    poke_u32(&pl, 1, idx + 4 * (k - 1), static_cast<std::uint32_t>(n));  // still increasing
    check(pl, {"index >= n", kernels::kDecodeBadIndex, 1, k - 1});
  }
  {
    Payloads pl = good;
    poke_u32(&pl, 2, idx + 4 * 5, 0xffffffffu);
    check(pl, {"index 2^32-1", kernels::kDecodeBadIndex, 2, 5});
  }
  {
    Payloads pl = good;
    poke_u32(&pl, 0, idx + 4 * 7, peek_u32(pl, 0, idx + 4 * 6));  // equal to the previous
    check(pl, {"repeated index", kernels::kDecodeBadIndex, 0, 7});
  }
  {
    Payloads pl = good;
    poke_u32(&pl, 1, idx + 4 * 0, peek_u32(pl, 1, idx + 4 * 1) + 1);  // first > second
    check(pl, {"decreasing index", kernels::kDecodeBadIndex, 1, 1});
  }
  {
    // Several faults: the earliest rank wins, then the earliest position in it.
    Payloads pl = good;
    pl.bytes[2 * pl.stride] ^= 0x10;                                         // rank 2: header
    poke_u32(&pl, 1, idx + 4 * (k - 2), static_cast<std::uint32_t>(n + 5));  // rank 1: k-2
    poke_u32(&pl, 1, idx + 4 * 3, 0);  // rank 1: 3 (<= index 2)
    check(pl, {"several", kernels::kDecodeBadIndex, 1, 3});
  }
  {
    Payloads pl = good;
    pl.bytes[1 * pl.stride + 4] = 2;   // version
    poke_u32(&pl, 0, idx + 4 * 9, 0);  // rank 0's index fault comes first
    check(pl, {"rank order", kernels::kDecodeBadIndex, 0, 9});
  }
  {
    // An error recorded earlier in the step: kept, and out is not written.
    SCOPED_TRACE("earlier error");
    kernels::DecodeStatus st{}, before{kernels::kDecodeBadParam, 5, 1234};
    const std::vector<float> out = run_decode(good, &st, before);
    EXPECT_EQ(st.code, before.code);
    EXPECT_EQ(st.from_rank, before.from_rank);
    EXPECT_EQ(st.detail, before.detail);
    EXPECT_TRUE(untouched(out));
  }
  {
    // And the good payloads decode.
    kernels::DecodeStatus st{};
    const std::vector<float> out = run_decode(good, &st);
    EXPECT_EQ(st.code, 0u);
    EXPECT_EQ(first_diff(out, host_average(good)), -1);
  }
}

}  // namespace
}  // namespace thinwire::test
