// TopkCodec, OnebitCodec, QsgdCodec: encode/decode round trips, the error-feedback invariant,
// the wire format of each body, randomness keyed by (seed, step, layer, rank, phase, index),
// and decoders that reject every corrupt payload without reading or writing out of bounds.
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <limits>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "common/bytes.hpp"
#include "compress/compressor.hpp"
#include "compress/onebit_codec.hpp"
#include "compress/qsgd_codec.hpp"
#include "compress/topk_average.hpp"
#include "compress/topk_codec.hpp"
#include "compress/wire_format.hpp"
#include "thinwire/config.hpp"
#include "thinwire/error.hpp"

namespace thinwire::detail {
namespace {

// ---- helpers --------------------------------------------------------------------------------

std::uint32_t bits_of(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

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

std::vector<float> normal_data(std::size_t n, std::uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> x(n);
  for (float& v : x) v = dist(rng);
  return x;
}

const PayloadSource kSrc{"block3.weight", 3, 0};

// Encodes into a buffer larger than encoded_bytes(n), pre-filled with `fill`, and checks that
// encode wrote exactly encoded_bytes(n) and nothing after them.
std::vector<std::uint8_t> encode_checked(Compressor& c, const std::vector<float>& x,
                                         const EncodeKey& key, float* residual,
                                         EncodeResult* result = nullptr, std::uint8_t fill = 0xa5) {
  const std::size_t bytes = c.encoded_bytes(x.size());
  std::vector<std::uint8_t> out(bytes + 64, fill);
  const EncodeResult r = c.encode(x.data(), x.size(), key, out.data(), residual);
  EXPECT_EQ(r.bytes, bytes);
  for (std::size_t i = bytes; i < out.size(); ++i) {
    EXPECT_EQ(out[i], fill) << "encode wrote byte " << i << " past encoded_bytes = " << bytes;
    if (out[i] != fill) break;
  }
  out.resize(bytes);
  if (result) *result = r;
  return out;
}

// The header fields, read straight from the documented offsets.
struct RawHeader {
  std::uint32_t magic;
  std::uint16_t version;
  std::uint8_t method, dtype;
  std::uint64_t n;
  std::uint32_t param, aux;
  std::uint64_t body_bytes;
};
RawHeader raw_header(const std::vector<std::uint8_t>& p) {
  RawHeader h{};
  if (p.size() < 32) {
    ADD_FAILURE() << "payload shorter than a header";
    return h;
  }
  h.magic = load<std::uint32_t>(p.data());
  h.version = load<std::uint16_t>(p.data() + 4);
  h.method = p[6];
  h.dtype = p[7];
  h.n = load<std::uint64_t>(p.data() + 8);
  h.param = load<std::uint32_t>(p.data() + 16);
  h.aux = load<std::uint32_t>(p.data() + 20);
  h.body_bytes = load<std::uint64_t>(p.data() + 24);
  return h;
}

void expect_header(const std::vector<std::uint8_t>& p, Method m, DType dt, std::size_t n,
                   std::uint32_t param, std::uint32_t aux) {
  const RawHeader h = raw_header(p);
  EXPECT_EQ(h.magic, 0x31525754u);
  EXPECT_EQ(h.version, 1u);
  EXPECT_EQ(h.method, static_cast<std::uint8_t>(m));
  EXPECT_EQ(h.dtype, static_cast<std::uint8_t>(dt));
  EXPECT_EQ(h.n, n);
  EXPECT_EQ(h.param, param);
  EXPECT_EQ(h.aux, aux);
  EXPECT_EQ(h.body_bytes + 32, p.size());
}

// decode() into out[0..n) with guard zones on both sides that must stay untouched.
std::vector<float> decode_guarded(const Compressor& c, const std::uint8_t* payload,
                                  std::size_t size, std::size_t n, DecodeMode mode,
                                  const std::vector<float>& initial) {
  constexpr std::size_t kGuard = 32;
  const float guard = -12345.678f;
  std::vector<float> buf(n + 2 * kGuard, guard);
  std::copy(initial.begin(), initial.end(), buf.begin() + kGuard);
  c.decode(payload, size, n, buf.data() + kGuard, mode, kSrc);
  for (std::size_t i = 0; i < kGuard; ++i) {
    EXPECT_EQ(bits_of(buf[i]), bits_of(guard)) << "decode wrote before out";
    EXPECT_EQ(bits_of(buf[n + kGuard + i]), bits_of(guard)) << "decode wrote past out[n)";
  }
  return std::vector<float>(buf.begin() + kGuard,
                            buf.begin() + kGuard + static_cast<std::ptrdiff_t>(n));
}

std::vector<float> decode_assign(const Compressor& c, const std::vector<std::uint8_t>& p,
                                 std::size_t n) {
  return decode_guarded(c, p.data(), p.size(), n, DecodeMode::assign,
                        std::vector<float>(n, 777.0f));
}

// A payload copied so that it ends exactly at a PROT_NONE page: reading one byte past
// `size` faults, so a decoder that over-reads crashes the test instead of passing.
class GuardedBytes {
 public:
  explicit GuardedBytes(const std::uint8_t* data, std::size_t size) : size_(size) {
    const std::size_t page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
    const std::size_t pages = (size + page - 1) / page + 1;
    map_bytes_ = pages * page;
    void* m = mmap(nullptr, map_bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) throw std::bad_alloc();
    map_ = static_cast<std::uint8_t*>(m);
    mprotect(map_ + (pages - 1) * page, page, PROT_NONE);
    data_ = map_ + (pages - 1) * page - size;
    if (size) std::memcpy(data_, data, size);
  }
  ~GuardedBytes() { munmap(map_, map_bytes_); }
  GuardedBytes(const GuardedBytes&) = delete;
  GuardedBytes& operator=(const GuardedBytes&) = delete;
  const std::uint8_t* data() const { return data_; }
  std::size_t size() const { return size_; }

 private:
  std::uint8_t* map_ = nullptr;
  std::uint8_t* data_ = nullptr;
  std::size_t map_bytes_ = 0, size_ = 0;
};

// Expects decode (and validate) of the payload to throw Error(invalid_argument) naming the
// source, and decode to leave the output untouched.
void expect_rejected(const Compressor& c, const std::vector<std::uint8_t>& p, std::size_t size,
                     std::size_t n, const std::string& what, const std::string& mention = "") {
  const GuardedBytes g(p.data(), std::min(size, p.size()));
  try {
    c.validate(g.data(), g.size(), n, kSrc);
    ADD_FAILURE() << what << ": validate accepted a corrupt payload";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::invalid_argument) << what;
  }
  const std::vector<float> initial(n, 3.5f);
  std::vector<float> out = initial;
  try {
    c.decode(g.data(), g.size(), n, out.data(), DecodeMode::accumulate, kSrc);
    ADD_FAILURE() << what << ": decode accepted a corrupt payload";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::invalid_argument) << what;
    const std::string msg = e.what();
    EXPECT_NE(msg.find("block3.weight"), std::string::npos) << what << ": " << msg;
    EXPECT_NE(msg.find("rank 3"), std::string::npos) << what << ": " << msg;
    EXPECT_NE(msg.find(to_string(c.method())), std::string::npos) << what << ": " << msg;
    if (!mention.empty()) {
      EXPECT_NE(msg.find(mention), std::string::npos) << what << ": " << msg;
    }
  }
  EXPECT_EQ(out, initial) << what << ": decode wrote into out before rejecting the payload";
}

// residual == x - decoded, computed as the f32 subtraction, bit for bit.
void expect_error_feedback_invariant(const std::vector<float>& x, const std::vector<float>& decoded,
                                     const std::vector<float>& residual, const std::string& what) {
  ASSERT_EQ(x.size(), decoded.size());
  ASSERT_EQ(x.size(), residual.size());
  for (std::size_t i = 0; i < x.size(); ++i) {
    const float want = x[i] - decoded[i];
    ASSERT_EQ(bits_of(residual[i]), bits_of(want))
        << what << " element " << i << ": x=" << x[i] << " decoded=" << decoded[i]
        << " residual=" << residual[i];
  }
}

void expect_encode_result(const EncodeResult& r, const std::vector<float>& x,
                          const std::vector<float>& decoded, const std::string& what) {
  long double norm = 0, err = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    norm += static_cast<long double>(x[i]) * x[i];
    const long double d = static_cast<long double>(x[i]) - decoded[i];
    err += d * d;
  }
  EXPECT_NEAR(r.sq_norm, static_cast<double>(norm), 1e-12 * static_cast<double>(norm) + 1e-300)
      << what;
  // The residual is rounded to f32: allow its rounding (2^-24 relative per entry).
  EXPECT_NEAR(r.sq_error, static_cast<double>(err), 1e-6 * static_cast<double>(err) + 1e-300)
      << what;
}

// Round trip of one codec on one input: header, encoded size, residual invariant (also with
// the residual aliasing x), decode assign and accumulate, EncodeResult. Returns the decoded.
std::vector<float> check_round_trip(Compressor& c, const std::vector<float>& x,
                                    const EncodeKey& key, const std::string& what) {
  std::vector<float> residual(x.size(), 99.0f);
  EncodeResult r;
  const std::vector<std::uint8_t> p = encode_checked(c, x, key, residual.data(), &r);
  // Every byte of the payload is written: the same input over a differently filled buffer
  // gives the same bytes.
  EXPECT_EQ(encode_checked(c, x, key, nullptr, nullptr, 0x00), p) << what;
  EXPECT_EQ(encode_checked(c, x, key, nullptr, nullptr, 0xff), p) << what;

  const std::vector<float> decoded = decode_assign(c, p, x.size());
  expect_error_feedback_invariant(x, decoded, residual, what);
  expect_encode_result(r, x, decoded, what);

  // Residual aliasing x.
  std::vector<float> inplace = x;
  std::vector<std::uint8_t> p2(c.encoded_bytes(x.size()));
  const EncodeResult r2 = c.encode(inplace.data(), x.size(), key, p2.data(), inplace.data());
  EXPECT_EQ(p2, p) << what << " (aliased)";
  for (std::size_t i = 0; i < x.size(); ++i) {
    EXPECT_EQ(bits_of(inplace[i]), bits_of(residual[i])) << what << " aliased residual at " << i;
    if (bits_of(inplace[i]) != bits_of(residual[i])) break;
  }
  EXPECT_EQ(r2.sq_norm, r.sq_norm);
  EXPECT_EQ(r2.sq_error, r.sq_error);

  // Accumulate adds the decoded values with f32 additions.
  const std::vector<float> base = normal_data(x.size(), 1234);
  const std::vector<float> acc =
      decode_guarded(c, p.data(), p.size(), x.size(), DecodeMode::accumulate, base);
  for (std::size_t i = 0; i < x.size(); ++i) {
    EXPECT_EQ(bits_of(acc[i]), bits_of(base[i] + decoded[i])) << what << " accumulate at " << i;
    if (bits_of(acc[i]) != bits_of(base[i] + decoded[i])) break;
  }

  EXPECT_NO_THROW(c.validate(p.data(), p.size(), x.size(), kSrc)) << what;
  return decoded;
}

// ---- top-k ----------------------------------------------------------------------------------

std::size_t decimal_ceil(std::uint64_t num, std::uint64_t den, std::size_t n) {
  // ceil(num/den * n), at least 1 for n > 0, at most n: integer arithmetic, no rounding.
  if (n == 0) return 0;
  const std::uint64_t k = (num * n + den - 1) / den;
  return std::min<std::size_t>(std::max<std::uint64_t>(k, 1), n);
}

TEST(TopkCodec, CountIsCeilOfDensityTimesN) {
  EXPECT_EQ(topk_count(0.5, 0), 0u);
  EXPECT_EQ(topk_count(1e-9, 1), 1u);
  EXPECT_EQ(topk_count(1e-9, 1000), 1u);
  EXPECT_EQ(topk_count(1.0, 12345), 12345u);
  EXPECT_EQ(topk_count(0.5, 7), 4u);
  // Densities typed as decimals: k is the ceiling of the decimal times n, not of the double
  // nearest the decimal (0.07 * 100 is 7.000000000000001 in doubles).
  for (std::uint64_t per_mille = 1; per_mille <= 1000; ++per_mille) {
    const double density = Config::parse("topk:" + std::to_string(per_mille) + "e-3").density;
    for (std::size_t n :
         {std::size_t{1}, std::size_t{7}, std::size_t{10}, std::size_t{100}, std::size_t{1000},
          std::size_t{4096}, std::size_t{12345}, std::size_t{1} << 20, std::size_t{50000000}}) {
      ASSERT_EQ(topk_count(density, n), decimal_ceil(per_mille, 1000, n))
          << "density " << per_mille << "e-3, n = " << n;
    }
  }
  for (std::uint64_t per_100k : {1u, 3u, 7u, 10u, 25u, 70u, 99u}) {
    const double density = Config::parse("topk:" + std::to_string(per_100k) + "e-5").density;
    for (std::size_t n = 1; n < 300000; n += 997)
      ASSERT_EQ(topk_count(density, n), decimal_ceil(per_100k, 100000, n))
          << per_100k << "e-5, n = " << n;
  }
}

std::vector<std::uint32_t> reference_topk(const std::vector<float>& x, std::size_t k) {
  std::vector<std::uint32_t> order(x.size());
  std::iota(order.begin(), order.end(), 0u);
  std::stable_sort(order.begin(), order.end(), [&](std::uint32_t a, std::uint32_t b) {
    return std::fabs(x[a]) > std::fabs(x[b]);
  });
  order.resize(k);
  std::sort(order.begin(), order.end());
  return order;
}

TEST(TopkCodec, RoundTrip) {
  for (Selection sel : {Selection::exact, Selection::sampled}) {
    for (double density : {0.001, 0.01, 0.3, 1.0}) {
      TopkCodec codec(density, sel);
      for (std::size_t n : {std::size_t{0}, std::size_t{1}, std::size_t{2}, std::size_t{7},
                            std::size_t{1000}, std::size_t{4097}, std::size_t{100000}}) {
        const std::string what = std::string("topk ") + to_string(sel) +
                                 " d=" + std::to_string(density) + " n=" + std::to_string(n);
        std::vector<float> x = normal_data(n, static_cast<std::uint32_t>(n + 1));
        for (std::size_t i = 0; i < n; i += 13) x[i] = (i % 2) ? 0.0f : -0.0f;  // zeros and ties
        EncodeKey key;
        key.seed = 5;
        key.step = 3;
        key.layer = 2;
        key.dtype = DType::bf16;
        const std::vector<float> decoded = check_round_trip(codec, x, key, what);
        const std::size_t k = topk_count(density, n);
        EXPECT_EQ(codec.encoded_bytes(n), 32 + 8 * k);
        const std::vector<std::uint8_t> p = encode_checked(codec, x, key, nullptr);
        expect_header(p, Method::topk, DType::bf16, n, static_cast<std::uint32_t>(k), 0);
        // Body: k strictly increasing uint32 indices, then the k values, bit for bit.
        std::vector<std::uint32_t> idx(k);
        for (std::size_t j = 0; j < k; ++j) {
          idx[j] = load<std::uint32_t>(p.data() + 32 + 4 * j);
          ASSERT_LT(idx[j], n);
          if (j) {
            ASSERT_LT(idx[j - 1], idx[j]);
          }
          EXPECT_EQ(bits_of(load<float>(p.data() + 32 + 4 * k + 4 * j)), bits_of(x[idx[j]]));
        }
        if (sel == Selection::exact) {
          EXPECT_EQ(idx, reference_topk(x, k)) << what;
        }
        // decoded: the selected entries, zero elsewhere.
        std::vector<bool> chosen(n, false);
        for (std::uint32_t i : idx) chosen[i] = true;
        for (std::size_t i = 0; i < n; ++i)
          ASSERT_EQ(bits_of(decoded[i]), chosen[i] ? bits_of(x[i]) : 0u) << what << " at " << i;
        const TopkCodec::View v = codec.parse(p.data(), p.size(), n, kSrc);
        EXPECT_EQ(v.k, k);
        EXPECT_EQ(v.indices, p.data() + 32);
        EXPECT_EQ(v.values, p.data() + 32 + 4 * k);
      }
    }
  }
}

TEST(TopkCodec, TieRuleAndSignedZeros) {
  TopkCodec codec(0.5, Selection::exact);  // k = 3 of 6
  const std::vector<float> x = {0.5f, -2.0f, 2.0f, 1.0f, -2.0f, 2.0f};
  const std::vector<std::uint8_t> p = encode_checked(codec, x, EncodeKey{}, nullptr);
  EXPECT_EQ(load<std::uint32_t>(p.data() + 32), 1u);
  EXPECT_EQ(load<std::uint32_t>(p.data() + 36), 2u);
  EXPECT_EQ(load<std::uint32_t>(p.data() + 40), 4u);
  // A selected -0.0 leaves a +0.0 residual (-0 - -0 = +0) and decodes to -0.0.
  TopkCodec all(1.0, Selection::exact);
  const std::vector<float> z = {-0.0f, 0.0f};
  std::vector<float> residual(2, 1.0f);
  const std::vector<std::uint8_t> pz = encode_checked(all, z, EncodeKey{}, residual.data());
  const std::vector<float> dz = decode_assign(all, pz, 2);
  EXPECT_EQ(bits_of(dz[0]), 0x80000000u);
  expect_error_feedback_invariant(z, dz, residual, "signed zeros");
}

TEST(TopkCodec, SquaredErrorIsAccurateForHeavyTails) {
  // One huge entry is sent; the error is the sum of the small ones, not a difference of
  // two numbers near 1e20.
  TopkCodec codec(1e-6, Selection::exact);  // k = 1
  std::vector<float> x(1000, 1.0f);
  x[500] = 1e10f;
  EncodeResult r;
  std::vector<float> residual(x.size());
  (void)encode_checked(codec, x, EncodeKey{}, residual.data(), &r);
  EXPECT_EQ(residual[500], 0.0f);
  EXPECT_NEAR(r.sq_error, 999.0, 1e-9);
  EXPECT_NEAR(r.sq_norm, 1e20 + 999.0, 1e6);
  (void)encode_checked(codec, x, EncodeKey{}, nullptr, &r);  // also without a residual
  EXPECT_NEAR(r.sq_error, 999.0, 1e-9);
}

TEST(TopkCodec, SampledSelectionIsValidAndDeterministic) {
  TopkCodec a(0.01, Selection::sampled), b(0.01, Selection::sampled);
  const std::vector<float> x = normal_data(200000, 77);
  EncodeKey key;
  key.seed = 9;
  key.step = 4;
  key.layer = 1;
  key.rank = 2;
  const auto pa = encode_checked(a, x, key, nullptr);
  EXPECT_EQ(encode_checked(b, x, key, nullptr), pa);
  EXPECT_NO_THROW(a.validate(pa.data(), pa.size(), x.size(), kSrc));
}

TEST(TopkCodec, RejectsCorruptPayloads) {
  const std::size_t n = 1000;
  TopkCodec codec(0.01, Selection::exact);  // k = 10
  const std::vector<float> x = normal_data(n, 5);
  const std::vector<std::uint8_t> good = encode_checked(codec, x, EncodeKey{}, nullptr);
  ASSERT_EQ(good.size(), 32u + 80u);

  for (std::size_t size = 0; size < good.size(); ++size)
    expect_rejected(codec, good, size, n, "truncated to " + std::to_string(size));

  auto patched = [&](std::size_t offset, auto value) {
    std::vector<std::uint8_t> p = good;
    store(p.data() + offset, value);
    return p;
  };
  expect_rejected(codec, patched(0, std::uint32_t{0x31525755u}), good.size(), n, "magic", "magic");
  expect_rejected(codec, patched(4, std::uint16_t{2}), good.size(), n, "version", "version");
  expect_rejected(codec, patched(6, std::uint8_t{3}), good.size(), n, "method", "method");
  expect_rejected(codec, patched(7, std::uint8_t{9}), good.size(), n, "dtype", "dtype");
  expect_rejected(codec, good, good.size(), n + 1, "n", "n = ");
  expect_rejected(codec, patched(8, std::uint64_t{n - 1}), good.size(), n, "n field");
  expect_rejected(codec, patched(16, std::uint32_t{n + 1}), good.size(), n, "k > n", "k = ");
  expect_rejected(codec, patched(16, std::uint32_t{11}), good.size(), n, "k for density",
                  "density");
  expect_rejected(codec, patched(16, std::uint32_t{9}), good.size(), n, "k for density (smaller)");
  expect_rejected(codec, patched(24, std::uint64_t{72}), good.size(), n, "body_bytes small",
                  "body");
  expect_rejected(codec, patched(24, std::uint64_t{88}), good.size(), n, "body_bytes past end",
                  "body");
  expect_rejected(codec, patched(24, ~std::uint64_t{0}), good.size(), n, "body_bytes huge", "body");
  expect_rejected(codec, patched(32 + 4 * 9, std::uint32_t{n}), good.size(), n, "index == n",
                  "index");
  expect_rejected(codec, patched(32 + 4 * 9, std::uint32_t{0xffffffffu}), good.size(), n,
                  "index huge", "index");
  {
    std::vector<std::uint8_t> p = good;
    store(p.data() + 32 + 4 * 5, load<std::uint32_t>(p.data() + 32 + 4 * 4));
    expect_rejected(codec, p, p.size(), n, "repeated index", "increasing");
    std::vector<std::uint8_t> q = good;
    const auto i3 = load<std::uint32_t>(q.data() + 32 + 4 * 3),
               i4 = load<std::uint32_t>(q.data() + 32 + 4 * 4);
    store(q.data() + 32 + 4 * 3, i4);
    store(q.data() + 32 + 4 * 4, i3);
    expect_rejected(codec, q, q.size(), n, "decreasing indices", "increasing");
  }
  // A payload for another density, and a valid payload for another n.
  TopkCodec denser(0.02, Selection::exact);
  expect_rejected(codec, encode_checked(denser, x, EncodeKey{}, nullptr), 32 + 160, n,
                  "other density");
  const std::vector<float> shorter(x.begin(), x.begin() + 900);
  expect_rejected(codec, encode_checked(codec, shorter, EncodeKey{}, nullptr), 32 + 72, n,
                  "other n");
}

// The average every rank computes from the allgathered payloads: each touched entry is the
// sum in rank order divided by P once, however many payloads touched it; the rest are zero.
TEST(TopkAverage, SumsInRankOrderThenDividesEachTouchedEntryOnce) {
  constexpr std::size_t n = 200;
  const std::vector<std::vector<std::uint32_t>> idx = {{3, 70, 199}, {3, 71, 150}, {0, 3, 70}};
  const std::vector<std::vector<float>> val = {
      {0.1f, 1e8f, -2.5f}, {0.7f, 1.25f, 3.0f}, {-9.0f, 0.3f, -1e8f}};
  std::vector<std::vector<std::uint8_t>> bytes(3);
  std::vector<TopkCodec::View> views(3);
  for (std::size_t r = 0; r < 3; ++r) {
    bytes[r].resize(8 * idx[r].size());
    for (std::size_t j = 0; j < idx[r].size(); ++j) {
      store_le<std::uint32_t>(bytes[r].data() + 4 * j, idx[r][j]);
      store_le<float>(bytes[r].data() + 4 * (idx[r].size() + j), val[r][j]);
    }
    views[r] = {bytes[r].data(), bytes[r].data() + 4 * idx[r].size(), idx[r].size()};
  }
  std::vector<float> out(n, 42.0f);                          // stale contents must not survive
  std::vector<std::uint64_t> touched(1, ~std::uint64_t{0});  // nor a stale bitmap
  average_topk(views.data(), 3, out.data(), n, touched);
  std::vector<float> want(n, 0.0f);
  for (std::size_t r = 0; r < 3; ++r)
    for (std::size_t j = 0; j < idx[r].size(); ++j) want[idx[r][j]] += val[r][j];
  for (std::uint32_t i : {0u, 3u, 70u, 71u, 150u, 199u}) want[i] /= 3.0f;
  for (std::size_t i = 0; i < n; ++i)
    EXPECT_EQ(std::memcmp(&out[i], &want[i], 4), 0)
        << "element " << i << ": " << out[i] << ", expected " << want[i];
  // One payload: its values as they are.
  average_topk(views.data(), 1, out.data(), n, touched);
  EXPECT_EQ(out[70], 1e8f);
  EXPECT_EQ(out[4], 0.0f);
}

// ---- 1-bit ----------------------------------------------------------------------------------

float onebit_reference_scale(const std::vector<float>& x) {
  long double sq = 0;
  for (float v : x) sq += static_cast<long double>(v) * v;
  return x.empty() ? 0.0f : static_cast<float>(std::sqrt(sq / x.size()));
}

TEST(OnebitCodec, RoundTrip) {
  OnebitCodec codec;
  for (std::size_t n :
       {std::size_t{0}, std::size_t{1}, std::size_t{2}, std::size_t{7}, std::size_t{8},
        std::size_t{9}, std::size_t{1000}, std::size_t{4097}, std::size_t{100003}}) {
    const std::string what = "onebit n=" + std::to_string(n);
    std::vector<float> x = normal_data(n, static_cast<std::uint32_t>(n + 3), 0.01f);
    for (std::size_t i = 0; i < n; i += 11) x[i] = (i % 2) ? 0.0f : -0.0f;
    EncodeKey key;
    key.dtype = DType::f16;
    const std::vector<float> decoded = check_round_trip(codec, x, key, what);
    EXPECT_EQ(codec.encoded_bytes(n), 32 + 4 + (n + 7) / 8);
    const std::vector<std::uint8_t> p = encode_checked(codec, x, key, nullptr);
    expect_header(p, Method::onebit, DType::f16, n, 1, 0);
    const float scale = load<float>(p.data() + 32);
    const float want = onebit_reference_scale(x);
    EXPECT_LE(std::fabs(scale - want), std::nextafter(want, HUGE_VALF) - want) << what;
    for (std::size_t i = 0; i < n; ++i) {
      const bool bit = (p[36 + i / 8] >> (i % 8)) & 1u;
      ASSERT_EQ(bit, x[i] >= 0.0f) << what << " sign bit " << i;
      ASSERT_EQ(bits_of(decoded[i]), bits_of(bit ? scale : -scale)) << what << " at " << i;
    }
    for (std::size_t i = n; i < 8 * ((n + 7) / 8); ++i)
      EXPECT_EQ((p[36 + i / 8] >> (i % 8)) & 1u, 0u) << what << " padding bit " << i;
  }
}

TEST(OnebitCodec, ZeroIsPositive) {
  OnebitCodec codec;
  const std::vector<float> x = {0.0f, -0.0f, 1.0f, -1.0f, 0.0f};
  const std::vector<std::uint8_t> p = encode_checked(codec, x, EncodeKey{}, nullptr);
  EXPECT_EQ(p[36], 0x17u);  // bits 0, 1, 2, 4 set
  const std::vector<float> d = decode_assign(codec, p, x.size());
  const float s = std::sqrt(2.0f / 5.0f);
  EXPECT_FLOAT_EQ(d[0], s);
  EXPECT_FLOAT_EQ(d[1], s);
  EXPECT_FLOAT_EQ(d[3], -s);
  // All zeros: scale 0, every decoded value +0, zero error.
  const std::vector<float> zeros(17, -0.0f);
  std::vector<float> residual(17, 5.0f);
  EncodeResult r;
  const auto pz = encode_checked(codec, zeros, EncodeKey{}, residual.data(), &r);
  EXPECT_EQ(load<float>(pz.data() + 32), 0.0f);
  EXPECT_EQ(r.sq_error, 0.0);
  for (float v : decode_assign(codec, pz, 17)) EXPECT_EQ(v, 0.0f);
}

TEST(OnebitCodec, ConstantMagnitudeIsExact) {
  // |x| constant: the scale is that magnitude and the decoded values equal x.
  OnebitCodec codec;
  std::vector<float> x(1001);
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = (i * 7 % 3 == 0) ? -0.375f : 0.375f;
  std::vector<float> residual(x.size());
  EncodeResult r;
  const auto p = encode_checked(codec, x, EncodeKey{}, residual.data(), &r);
  EXPECT_EQ(load<float>(p.data() + 32), 0.375f);
  EXPECT_EQ(decode_assign(codec, p, x.size()), x);
  EXPECT_EQ(r.sq_error, 0.0);
  for (float v : residual) EXPECT_EQ(v, 0.0f);
}

TEST(OnebitCodec, RejectsCorruptPayloads) {
  OnebitCodec codec;
  const std::size_t n = 100;
  const std::vector<float> x = normal_data(n, 6);
  const std::vector<std::uint8_t> good = encode_checked(codec, x, EncodeKey{}, nullptr);
  ASSERT_EQ(good.size(), 32u + 4u + 13u);
  for (std::size_t size = 0; size < good.size(); ++size)
    expect_rejected(codec, good, size, n, "truncated to " + std::to_string(size));
  auto patched = [&](std::size_t offset, auto value) {
    std::vector<std::uint8_t> p = good;
    store(p.data() + offset, value);
    return p;
  };
  expect_rejected(codec, patched(0, std::uint32_t{0}), good.size(), n, "magic", "magic");
  expect_rejected(codec, patched(4, std::uint16_t{0}), good.size(), n, "version", "version");
  expect_rejected(codec, patched(6, std::uint8_t{1}), good.size(), n, "method", "method");
  expect_rejected(codec, patched(7, std::uint8_t{3}), good.size(), n, "dtype", "dtype");
  expect_rejected(codec, good, good.size(), n - 1, "n", "n = ");
  expect_rejected(codec, patched(16, std::uint32_t{2}), good.size(), n, "param", "param");
  expect_rejected(codec, patched(24, std::uint64_t{16}), good.size(), n, "body_bytes", "body");
  expect_rejected(codec, patched(24, std::uint64_t{1} << 40), good.size(), n, "body_bytes huge",
                  "body");
}

// ---- qsgd -----------------------------------------------------------------------------------

int levels_for(int bits) {
  return (1 << (bits - 1)) - 1;
}

// The scales and codes of a qsgd payload, unpacked by the documented layout.
struct QsgdBody {
  std::vector<float> scales;
  std::vector<std::uint32_t> codes;
};
QsgdBody unpack_qsgd(const std::vector<std::uint8_t>& p, std::size_t n, int bits,
                     std::size_t bucket) {
  QsgdBody b;
  const std::size_t n_buckets = (n + bucket - 1) / bucket;
  for (std::size_t j = 0; j < n_buckets; ++j)
    b.scales.push_back(load<float>(p.data() + 32 + 4 * j));
  const std::uint8_t* codes = p.data() + 32 + 4 * n_buckets;
  for (std::size_t i = 0; i < n; ++i) {
    std::uint32_t c = 0;
    for (int t = 0; t < bits; ++t) {
      const std::size_t bit = i * static_cast<std::size_t>(bits) + static_cast<std::size_t>(t);
      c |= static_cast<std::uint32_t>((codes[bit / 8] >> (bit % 8)) & 1u) << t;
    }
    b.codes.push_back(c);
  }
  return b;
}

EncodeKey qsgd_key(std::uint64_t seed, std::uint64_t step, std::uint32_t layer = 0,
                   std::uint32_t rank = 0, std::uint32_t phase = kPhaseWorker) {
  EncodeKey k;
  k.seed = seed;
  k.step = step;
  k.layer = layer;
  k.rank = rank;
  k.phase = phase;
  return k;
}

TEST(QsgdCodec, RoundTripEveryBitWidth) {
  for (int bits = 2; bits <= 8; ++bits) {
    const int L = levels_for(bits);
    for (std::size_t bucket : {std::size_t{1}, std::size_t{7}, std::size_t{64}, std::size_t{512}}) {
      QsgdCodec codec(bits, bucket);
      for (std::size_t n : {std::size_t{0}, std::size_t{1}, std::size_t{63}, std::size_t{1000},
                            std::size_t{1030}}) {
        const std::string what = "qsgd bits=" + std::to_string(bits) +
                                 " bucket=" + std::to_string(bucket) + " n=" + std::to_string(n);
        std::vector<float> x = normal_data(n, static_cast<std::uint32_t>(n * 8 + bits), 3.0f);
        for (std::size_t i = 5; i < n; i += 17) x[i] = 0.0f;
        EncodeKey key = qsgd_key(1, 2, 3, 4);
        key.dtype = DType::f32;
        const std::vector<float> decoded = check_round_trip(codec, x, key, what);
        const std::size_t n_buckets = (n + bucket - 1) / bucket;
        EXPECT_EQ(codec.encoded_bytes(n),
                  32 + 4 * n_buckets + (n * static_cast<std::size_t>(bits) + 7) / 8);
        const std::vector<std::uint8_t> p = encode_checked(codec, x, key, nullptr);
        expect_header(p, Method::qsgd, DType::f32, n, static_cast<std::uint32_t>(bits),
                      static_cast<std::uint32_t>(bucket));
        const QsgdBody body = unpack_qsgd(p, n, bits, bucket);
        for (std::size_t b = 0; b < n_buckets; ++b) {
          float max_abs = 0.0f;
          for (std::size_t i = b * bucket; i < std::min(n, (b + 1) * bucket); ++i)
            max_abs = std::max(max_abs, std::fabs(x[i]));
          ASSERT_EQ(body.scales[b], max_abs) << what << " bucket " << b;
        }
        for (std::size_t i = 0; i < n; ++i) {
          ASSERT_LE(body.codes[i], static_cast<std::uint32_t>(2 * L)) << what << " code " << i;
          const float scale = body.scales[i / bucket];
          const float unit = scale / static_cast<float>(L);
          const int q = static_cast<int>(body.codes[i]) - L;
          ASSERT_EQ(bits_of(decoded[i]), bits_of(static_cast<float>(q) * unit))
              << what << " at " << i;
          // Stochastic rounding picks one of the two levels around x.
          ASSERT_LE(std::fabs(decoded[i] - x[i]), unit * (1.0f + 1e-5f)) << what << " at " << i;
          if (x[i] > 0.0f) {
            ASSERT_GE(q, 0) << what << " at " << i;
          }
          if (x[i] < 0.0f) {
            ASSERT_LE(q, 0) << what << " at " << i;
          }
          if (x[i] == 0.0f) {
            ASSERT_EQ(q, 0) << what << " at " << i;
          }
          if (scale > 0.0f && std::fabs(x[i]) == scale) {
            ASSERT_EQ(std::abs(q), L) << what << " at " << i;
          }
        }
        const std::size_t code_bits = n * static_cast<std::size_t>(bits);
        const std::uint8_t* codes = p.data() + 32 + 4 * n_buckets;
        for (std::size_t bit = code_bits; bit < 8 * ((code_bits + 7) / 8); ++bit)
          ASSERT_EQ((codes[bit / 8] >> (bit % 8)) & 1u, 0u) << what << " padding bit " << bit;
      }
    }
  }
}

TEST(QsgdCodec, ValuesOnTheLevelsAreExact) {
  for (int bits = 2; bits <= 8; ++bits) {
    const int L = levels_for(bits);
    QsgdCodec codec(bits, 64);
    std::mt19937 rng(static_cast<std::uint32_t>(bits));
    std::vector<float> x(640);
    for (std::size_t b = 0; b < 10; ++b) {
      const int e = static_cast<int>(b) - 5;  // unit 2^e, scale L * 2^e
      for (std::size_t i = 0; i < 64; ++i) {
        const int q = static_cast<int>(rng() % static_cast<unsigned>(2 * L + 1)) - L;
        x[b * 64 + i] = std::ldexp(static_cast<float>(q), e);
      }
      x[b * 64 + 3] = std::ldexp(static_cast<float>(L), e);  // the bucket's max is the top level
    }
    for (std::uint64_t step = 0; step < 20; ++step) {
      std::vector<float> residual(x.size(), 1.0f);
      const auto p = encode_checked(codec, x, qsgd_key(42, step), residual.data());
      ASSERT_EQ(decode_assign(codec, p, x.size()), x) << "bits " << bits << " step " << step;
      for (float r : residual) ASSERT_EQ(r, 0.0f);
    }
  }
}

TEST(QsgdCodec, UnbiasedInExpectation) {
  const std::size_t n = 1500, bucket = 512, steps = 400;
  const std::vector<float> x = normal_data(n, 31, 2.0f);
  for (int bits : {2, 3, 4, 8}) {
    QsgdCodec codec(bits, bucket);
    const int L = levels_for(bits);
    std::vector<double> sum(n, 0.0);
    for (std::uint64_t step = 0; step < steps; ++step) {
      const auto p = encode_checked(codec, x, qsgd_key(7, step, 1, 0), nullptr);
      const std::vector<float> d = decode_assign(codec, p, n);
      for (std::size_t i = 0; i < n; ++i) sum[i] += d[i];
    }
    // Each decoded value is one of two levels a unit apart: variance <= unit^2 / 4.
    double total_z = 0.0;
    for (std::size_t i = 0; i < n; ++i) {
      float scale = 0.0f;
      for (std::size_t j = (i / bucket) * bucket; j < std::min(n, (i / bucket + 1) * bucket); ++j)
        scale = std::max(scale, std::fabs(x[j]));
      const double unit = scale / L;
      const double sigma = unit / 2.0 / std::sqrt(static_cast<double>(steps));
      const double mean = sum[i] / steps;
      ASSERT_NEAR(mean, x[i], 6.0 * sigma + 1e-6 * scale) << "bits " << bits << " element " << i;
      // Signed by x: a rounding that shrinks (or grows) magnitudes shows up as a drift.
      total_z += (mean - x[i]) / sigma * (x[i] < 0.0f ? -1.0 : 1.0);
    }
    // The average standardised deviation over all elements is ~N(0, <=1/n).
    EXPECT_LT(std::fabs(total_z / n), 6.0 / std::sqrt(static_cast<double>(n))) << "bits " << bits;
  }
}

TEST(QsgdCodec, RandomnessIsKeyed) {
  QsgdCodec codec(4, 128);
  const std::vector<float> x = normal_data(4096, 13);
  const EncodeKey base = qsgd_key(100, 5, 2, 1, kPhaseWorker);
  const auto p = encode_checked(codec, x, base, nullptr);
  QsgdCodec other(4, 128);
  EXPECT_EQ(encode_checked(other, x, base, nullptr), p) << "same key, same bytes";
  EXPECT_EQ(encode_checked(codec, x, base, nullptr), p);

  const EncodeKey variants[] = {
      qsgd_key(101, 5, 2, 1, kPhaseWorker), qsgd_key(100, 6, 2, 1, kPhaseWorker),
      qsgd_key(100, 5, 3, 1, kPhaseWorker), qsgd_key(100, 5, 2, 0, kPhaseWorker),
      qsgd_key(100, 5, 2, 1, kPhaseServer),
  };
  const char* names[] = {"seed", "step", "layer", "rank", "phase"};
  const QsgdBody b0 = unpack_qsgd(p, x.size(), 4, 128);
  for (std::size_t v = 0; v < std::size(variants); ++v) {
    const auto q = encode_checked(codec, x, variants[v], nullptr);
    const QsgdBody b1 = unpack_qsgd(q, x.size(), 4, 128);
    EXPECT_EQ(b1.scales, b0.scales) << names[v];  // scales are not random
    std::size_t differ = 0;
    for (std::size_t i = 0; i < x.size(); ++i) differ += b1.codes[i] != b0.codes[i];
    // About half of the elements round differently under an independent stream.
    EXPECT_GT(differ, x.size() / 5) << "changing the " << names[v] << " should change the codes";
  }
  // The dtype only goes into the header.
  EncodeKey bf = base;
  bf.dtype = DType::bf16;
  const auto pb = encode_checked(codec, x, bf, nullptr);
  EXPECT_EQ(pb[7], static_cast<std::uint8_t>(DType::bf16));
  EXPECT_TRUE(std::equal(pb.begin() + 32, pb.end(), p.begin() + 32));
}

TEST(QsgdCodec, OffsetPlacesAChunkInTheLayersStream) {
  // A chunk encoded with offset o draws the same numbers as elements o.. of the whole layer:
  // with bucket-aligned chunks, its codes are the layer's codes.
  const std::size_t n = 2048, bucket = 256, o = 512, len = 768;
  QsgdCodec codec(3, bucket);
  const std::vector<float> x = normal_data(n, 21);
  const EncodeKey whole = qsgd_key(3, 9, 4, 2);
  const QsgdBody full = unpack_qsgd(encode_checked(codec, x, whole, nullptr), n, 3, bucket);
  const std::vector<float> chunk(x.begin() + o, x.begin() + o + len);
  EncodeKey part = whole;
  part.offset = o;
  const QsgdBody sub = unpack_qsgd(encode_checked(codec, chunk, part, nullptr), len, 3, bucket);
  for (std::size_t i = 0; i < len; ++i) ASSERT_EQ(sub.codes[i], full.codes[o + i]) << i;
  EncodeKey unshifted = whole;
  const QsgdBody wrong =
      unpack_qsgd(encode_checked(codec, chunk, unshifted, nullptr), len, 3, bucket);
  std::size_t differ = 0;
  for (std::size_t i = 0; i < len; ++i) differ += wrong.codes[i] != full.codes[o + i];
  EXPECT_GT(differ, len / 10);
}

TEST(QsgdCodec, ContractiveShrinksTheScaleOnly) {
  // The contractive codec (error feedback) draws the same levels as the unbiased one and
  // scales each bucket by c = ||x||^2 / (||x||^2 + V) with V the rounding variance.
  const std::size_t n = 1000, bucket = 128;
  for (int bits : {2, 4, 8}) {
    const int L = levels_for(bits);
    QsgdCodec plain(bits, bucket), contractive(bits, bucket, true);
    const std::vector<float> x = normal_data(n, static_cast<std::uint32_t>(40 + bits));
    const EncodeKey key = qsgd_key(8, 3, 1, 1);
    const std::string what = "contractive bits=" + std::to_string(bits);
    const QsgdBody a = unpack_qsgd(encode_checked(plain, x, key, nullptr), n, bits, bucket);
    check_round_trip(contractive, x, key, what);
    const QsgdBody b = unpack_qsgd(encode_checked(contractive, x, key, nullptr), n, bits, bucket);
    EXPECT_EQ(a.codes, b.codes) << what;
    for (std::size_t j = 0; j < a.scales.size(); ++j) {
      double sq = 0, var = 0;
      const double unit = static_cast<double>(a.scales[j]) / L;
      for (std::size_t i = j * bucket; i < std::min(n, (j + 1) * bucket); ++i) {
        sq += static_cast<double>(x[i]) * x[i];
        const double t = std::fabs(x[i]) / unit;
        const double frac = t - std::floor(t);
        var += frac * (1 - frac) * unit * unit;
      }
      const double want = a.scales[j] * (sq / (sq + var));
      EXPECT_NEAR(b.scales[j], want, 1e-5 * want) << what << " bucket " << j;
      EXPECT_LE(b.scales[j], a.scales[j]) << what << " bucket " << j;
    }
  }
}

TEST(QsgdCodec, ContractiveIsContractiveWhereUnbiasedIsNot) {
  // 2-bit codes on Gaussian buckets: the unbiased codec's expected error exceeds ||x||^2,
  // the contractive one's stays below it.
  const std::size_t n = 4096, bucket = 512, steps = 50;
  const std::vector<float> x = normal_data(n, 77);
  QsgdCodec plain(2, bucket), contractive(2, bucket, true);
  double err_plain = 0, err_contractive = 0, norm = 0;
  for (std::uint64_t step = 0; step < steps; ++step) {
    EncodeResult r;
    (void)encode_checked(plain, x, qsgd_key(1, step), nullptr, &r);
    err_plain += r.sq_error;
    norm += r.sq_norm;
    (void)encode_checked(contractive, x, qsgd_key(1, step), nullptr, &r);
    err_contractive += r.sq_error;
  }
  EXPECT_GT(err_plain / norm, 1.0);
  EXPECT_LT(err_contractive / norm, 0.9);
  // Values on the levels have no rounding variance: no shrinking, exact.
  std::vector<float> on_levels(256);
  for (std::size_t i = 0; i < on_levels.size(); ++i)
    on_levels[i] = static_cast<float>(static_cast<int>(i % 3) - 1) * 0.5f;
  std::vector<float> residual(on_levels.size());
  const auto p = encode_checked(contractive, on_levels, qsgd_key(2, 2), residual.data());
  EXPECT_EQ(decode_assign(contractive, p, on_levels.size()), on_levels);
}

TEST(QsgdCodec, NonFiniteInputsSaturate) {
  QsgdCodec codec(4, 8);
  const float inf = std::numeric_limits<float>::infinity();
  const std::vector<float> x = {0.5f,  inf,  -inf, std::numeric_limits<float>::quiet_NaN(),
                                -1.0f, 0.25f};
  const auto p = encode_checked(codec, x, qsgd_key(1, 1), nullptr);
  const QsgdBody b = unpack_qsgd(p, x.size(), 4, 8);
  EXPECT_EQ(b.scales[0], 1.0f);  // the largest finite magnitude
  const std::vector<float> d = decode_assign(codec, p, x.size());
  EXPECT_EQ(d[1], 1.0f);
  EXPECT_EQ(d[2], -1.0f);
  EXPECT_EQ(d[3], 0.0f);
  EXPECT_EQ(d[4], -1.0f);
}

TEST(QsgdCodec, RejectsCorruptPayloads) {
  const std::size_t n = 300, bucket = 64;
  for (int bits : {2, 3, 5, 8}) {
    QsgdCodec codec(bits, bucket);
    const std::string tag = "bits " + std::to_string(bits) + ": ";
    const std::vector<float> x = normal_data(n, 8);
    const std::vector<std::uint8_t> good = encode_checked(codec, x, qsgd_key(1, 1), nullptr);
    for (std::size_t size = 0; size < good.size(); size += (size < 40 ? 1 : 7))
      expect_rejected(codec, good, size, n, tag + "truncated to " + std::to_string(size));
    expect_rejected(codec, good, good.size() - 1, n, tag + "one byte short");
    auto patched = [&](std::size_t offset, auto value) {
      std::vector<std::uint8_t> p = good;
      store(p.data() + offset, value);
      return p;
    };
    expect_rejected(codec, patched(0, std::uint32_t{0x54575231u}), good.size(), n, tag + "magic",
                    "magic");
    expect_rejected(codec, patched(4, std::uint16_t{0xffff}), good.size(), n, tag + "version",
                    "version");
    expect_rejected(codec, patched(6, std::uint8_t{2}), good.size(), n, tag + "method", "method");
    expect_rejected(codec, good, good.size(), n * 2, tag + "n", "n = ");
    expect_rejected(codec, patched(16, std::uint32_t(bits == 8 ? 7 : bits + 1)), good.size(), n,
                    tag + "bits", "bits");
    expect_rejected(codec, patched(20, std::uint32_t{128}), good.size(), n, tag + "bucket",
                    "bucket");
    expect_rejected(codec, patched(24, std::uint64_t{good.size() - 33}), good.size(), n,
                    tag + "body", "body");
    // A payload of another bit width or bucket, as a whole.
    QsgdCodec wider(bits == 8 ? 7 : bits + 1, bucket), other_bucket(bits, 32);
    const auto pw = encode_checked(wider, x, qsgd_key(1, 1), nullptr);
    expect_rejected(codec, pw, pw.size(), n, tag + "other bits");
    const auto pb = encode_checked(other_bucket, x, qsgd_key(1, 1), nullptr);
    expect_rejected(codec, pb, pb.size(), n, tag + "other bucket");
    // The all-ones code (2L + 1) is out of range, at the first, a middle and the last element.
    const std::size_t codes_at = 32 + 4 * ((n + bucket - 1) / bucket);
    for (std::size_t i : {std::size_t{0}, std::size_t{137}, n - 1}) {
      std::vector<std::uint8_t> p = good;
      for (int t = 0; t < bits; ++t) {
        const std::size_t bit = i * static_cast<std::size_t>(bits) + static_cast<std::size_t>(t);
        p[codes_at + bit / 8] |= static_cast<std::uint8_t>(1u << (bit % 8));
      }
      expect_rejected(codec, p, p.size(), n, tag + "all-ones code at " + std::to_string(i),
                      "exceeds");
    }
  }
}

// ---- every codec: corruption never crashes ---------------------------------------------------

struct CodecCase {
  std::string name;
  std::unique_ptr<Compressor> codec;
};

std::vector<CodecCase> all_codecs() {
  std::vector<CodecCase> v;
  v.push_back({"topk 0.05", std::make_unique<TopkCodec>(0.05, Selection::exact)});
  v.push_back({"topk 1.0", std::make_unique<TopkCodec>(1.0, Selection::exact)});
  v.push_back({"onebit", std::make_unique<OnebitCodec>()});
  v.push_back({"qsgd 3/16", std::make_unique<QsgdCodec>(3, 16)});
  v.push_back({"qsgd 8/512", std::make_unique<QsgdCodec>(8, 512)});
  v.push_back({"qsgd 2/1", std::make_unique<QsgdCodec>(2, 1)});
  return v;
}

TEST(CodecCorruption, RandomisedFlipsNeverCrash) {
  std::mt19937_64 rng(0xc0ffee);
  std::size_t accepted = 0, rejected = 0;
  for (CodecCase& cc : all_codecs()) {
    for (std::size_t n : {std::size_t{0}, std::size_t{1}, std::size_t{37}, std::size_t{500}}) {
      const std::vector<float> x = normal_data(n, static_cast<std::uint32_t>(n + 17));
      const std::vector<std::uint8_t> good = encode_checked(*cc.codec, x, qsgd_key(4, 4), nullptr);
      for (int trial = 0; trial < 400; ++trial) {
        std::vector<std::uint8_t> p = good;
        const int flips = 1 + static_cast<int>(rng() % 4);
        for (int f = 0; f < flips; ++f) {
          // Half the flips hit the header, where the checks are.
          const std::size_t at = (rng() & 1) ? rng() % 32 : rng() % p.size();
          p[at] ^= static_cast<std::uint8_t>(1 + rng() % 255);
        }
        std::size_t size = p.size();
        if (rng() % 8 == 0) size = rng() % (p.size() + 1);  // sometimes truncated too
        const GuardedBytes g(p.data(), size);
        std::vector<float> out(n + 8, 1.0f);
        try {
          cc.codec->decode(g.data(), g.size(), n, out.data(),
                           (trial & 1) ? DecodeMode::assign : DecodeMode::accumulate, kSrc);
          ++accepted;
        } catch (const Error& e) {
          ASSERT_EQ(e.code(), ErrorCode::invalid_argument) << cc.name << ": " << e.what();
          ++rejected;
          for (std::size_t i = 0; i < n; ++i)
            ASSERT_EQ(out[i], 1.0f) << cc.name << " wrote before throwing";
        }
        for (std::size_t i = n; i < out.size(); ++i)
          ASSERT_EQ(out[i], 1.0f) << cc.name << " wrote past n";
      }
    }
  }
  EXPECT_GT(rejected, 1000u);
  EXPECT_GT(accepted, 100u);  // flips in values, scales or sign bits still decode
}

TEST(CodecCorruption, RandomBytesNeverCrash) {
  std::mt19937_64 rng(99);
  for (CodecCase& cc : all_codecs()) {
    for (int trial = 0; trial < 300; ++trial) {
      const std::size_t n = rng() % 64;
      // A header that claims the right method and n, then garbage.
      std::vector<std::uint8_t> p(rng() % 200);
      for (auto& b : p) b = static_cast<std::uint8_t>(rng());
      if (p.size() >= 32) {
        PayloadHeader h;
        h.method = cc.codec->method();
        h.n = n;
        h.param = static_cast<std::uint32_t>(rng() % 70);
        h.aux = static_cast<std::uint32_t>(rng() % 600);
        h.body_bytes = rng() % 2 ? p.size() - 32 : rng();
        write_header(p.data(), h);
      }
      const GuardedBytes g(p.data(), p.size());
      std::vector<float> out(n);
      try {
        cc.codec->decode(g.data(), g.size(), n, out.data(), DecodeMode::assign, kSrc);
      } catch (const Error& e) {
        ASSERT_EQ(e.code(), ErrorCode::invalid_argument) << cc.name;
      }
    }
  }
}

}  // namespace
}  // namespace thinwire::detail
