// The element-wise launchers (kernels/elementwise.cu; emulated/elementwise.cpp) against the
// host formulas they share: bit-identical results on odd sizes, both the vector and the scalar
// (misaligned) paths, the non-finite scan for every dtype, and the residual norms.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "common/half.hpp"
#include "compress/low_rank.hpp"
#include "device_test_support.hpp"
#include "reducer/error_feedback_math.hpp"
#include "reducer/non_finite.hpp"
#include "thinwire/tensor_view.hpp"

namespace thinwire::test {
namespace {

const std::size_t kSizes[] = {0, 1, 3, 4, 7, 33, 1001, 65539};

std::vector<float> random_floats(std::size_t n, std::uint32_t seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> dist(0.0f, 3.0f);
  std::vector<float> v(n);
  for (float& x : v) x = dist(gen);
  return v;
}

// Bit equality, with the first differing index in the message.
void expect_same_bits(const std::vector<float>& got, const std::vector<float>& want,
                      const char* what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (std::size_t i = 0; i < got.size(); ++i)
    if (detail::float_bits(got[i]) != detail::float_bits(want[i])) {
      ADD_FAILURE() << what << " (" << backend_name() << "): element " << i << " of " << got.size()
                    << " is " << got[i] << ", host " << want[i];
      return;
    }
}

// A device array of n + 1 floats holding v at offset `shift` (0 or 1): shift 1 makes the
// pointer misaligned for 16-byte vector loads.
struct Shifted {
  DeviceArray<float> buf;
  std::size_t shift;
  Shifted(const std::vector<float>& v, std::size_t s) : buf(v.size() + 1), shift(s) {
    std::vector<float> padded(v.size() + 1, 12345.0f);
    std::copy(v.begin(), v.end(), padded.begin() + static_cast<std::ptrdiff_t>(s));
    buf.upload(padded);
  }
  float* get() const { return buf.get() + shift; }
  std::vector<float> download() const {
    const std::vector<float> all = buf.download();
    std::vector<float> v(all.begin() + static_cast<std::ptrdiff_t>(shift),
                         all.begin() + static_cast<std::ptrdiff_t>(shift + all.size() - 1));
    // The padding element is never written.
    EXPECT_EQ(all[shift ? 0 : all.size() - 1], 12345.0f) << "write outside [0, n)";
    return v;
  }
};

class ElementwiseDevice : public ::testing::TestWithParam<std::size_t> {
 protected:
  void SetUp() override {
    if (!device_available(&why_)) return;
    TW_ASSERT_OK(kernels::stream_create(&stream_));
  }
  void TearDown() override {
    if (stream_) kernels::stream_destroy(stream_);
  }
  void sync() { TW_ASSERT_OK(kernels::stream_synchronize(stream_)); }
  std::string why_;
  void* stream_ = nullptr;
};

TEST_P(ElementwiseDevice, MapsMatchHostFormulas) {
  TW_REQUIRE_DEVICE();
  const std::size_t shift = GetParam();
  const float eta = 0.37f;
  for (const std::size_t n : kSizes) {
    SCOPED_TRACE(::testing::Message() << "n = " << n << ", shift = " << shift);
    const std::vector<float> e0 = random_floats(n, 1), g = random_floats(n, 2),
                             h0 = random_floats(n, 3), r = random_floats(n, 4),
                             x = random_floats(n, 5), delta = random_floats(n, 6);

    {  // e += g
      std::vector<float> want = e0;
      for (std::size_t i = 0; i < n; ++i) want[i] += g[i];
      Shifted de(e0, shift), dg(g, shift);
      TW_ASSERT_OK(kernels::ef_accumulate(de.get(), dg.get(), n, stream_));
      sync();
      expect_same_bits(de.download(), want, "ef_accumulate");
    }
    {  // x = eta e + g - h
      std::vector<float> want(n);
      for (std::size_t i = 0; i < n; ++i)
        want[i] = detail::econtrol_input_of(e0[i], g[i], h0[i], eta);
      Shifted dx(std::vector<float>(n, 0.0f), shift), de(e0, shift), dg(g, shift), dh(h0, shift);
      TW_ASSERT_OK(
          kernels::econtrol_input(dx.get(), de.get(), dg.get(), dh.get(), eta, n, stream_));
      sync();
      expect_same_bits(dx.download(), want, "econtrol_input");
    }
    {  // after encode
      std::vector<float> want_e(n), want_h(n);
      for (std::size_t i = 0; i < n; ++i) {
        const detail::EcontrolNext next = detail::econtrol_next(e0[i], g[i], r[i], eta);
        want_e[i] = next.e;
        want_h[i] = next.h;
      }
      Shifted de(e0, shift), dh(h0, shift), dg(g, shift), dr(r, shift);
      TW_ASSERT_OK(
          kernels::econtrol_after_encode(de.get(), dh.get(), dg.get(), dr.get(), eta, n, stream_));
      sync();
      expect_same_bits(de.download(), want_e, "econtrol_after_encode e");
      expect_same_bits(dh.download(), want_h, "econtrol_after_encode h");
    }
    {  // after delta
      std::vector<float> want_e(n), want_h(n);
      for (std::size_t i = 0; i < n; ++i) {
        const detail::EcontrolNext next =
            detail::econtrol_next_delta(e0[i], h0[i], x[i], delta[i], eta);
        want_e[i] = next.e;
        want_h[i] = next.h;
      }
      Shifted de(e0, shift), dh(h0, shift), dx(x, shift), dd(delta, shift);
      TW_ASSERT_OK(
          kernels::econtrol_after_delta(de.get(), dh.get(), dx.get(), dd.get(), eta, n, stream_));
      sync();
      expect_same_bits(de.download(), want_e, "econtrol_after_delta e");
      expect_same_bits(dh.download(), want_h, "econtrol_after_delta h");
    }
    {  // H += g; g = H
      std::vector<float> want = h0;
      for (std::size_t i = 0; i < n; ++i) want[i] += g[i];
      Shifted dH(h0, shift), dg(g, shift);
      TW_ASSERT_OK(kernels::econtrol_finish(dH.get(), dg.get(), n, stream_));
      sync();
      expect_same_bits(dH.download(), want, "econtrol_finish H");
      expect_same_bits(dg.download(), want, "econtrol_finish g");
    }
    {  // out = in / d, out of place and in place
      const float divisor = 3.0f;
      std::vector<float> want(n);
      for (std::size_t i = 0; i < n; ++i) want[i] = x[i] / divisor;
      Shifted dout(std::vector<float>(n, 0.0f), shift), din(x, shift);
      TW_ASSERT_OK(kernels::divide(dout.get(), din.get(), divisor, n, stream_));
      TW_ASSERT_OK(kernels::divide(din.get(), din.get(), divisor, n, stream_));
      sync();
      expect_same_bits(dout.download(), want, "divide");
      expect_same_bits(din.download(), want, "divide in place");
    }
    {  // x -= y
      std::vector<float> want = x;
      for (std::size_t i = 0; i < n; ++i) want[i] -= delta[i];
      Shifted dx(x, shift), dy(delta, shift);
      TW_ASSERT_OK(kernels::subtract(dx.get(), dy.get(), n, stream_));
      sync();
      expect_same_bits(dx.download(), want, "subtract");
    }
  }
}

INSTANTIATE_TEST_SUITE_P(AlignedAndMisaligned, ElementwiseDevice, ::testing::Values(0, 1));

// Host bit patterns of a finite value and of the non-finite ones, per dtype.
struct Patterns {
  DType dtype;
  std::uint32_t finite, nan, pinf, ninf;
};
const Patterns kPatterns[] = {
    {DType::f32, detail::float_bits(1.5f), 0x7fc00000u, 0x7f800000u, 0xff800000u},
    {DType::f16, detail::f32_to_f16(1.5f), 0x7e00u, 0x7c00u, 0xfc00u},
    {DType::bf16, detail::f32_to_bf16(1.5f), 0x7fc0u, 0x7f80u, 0xff80u},
};

// n elements of `pat`'s dtype, finite (varied) except `bad` at the given positions.
std::vector<std::uint8_t> tensor_bytes(
    const Patterns& pat, std::size_t n,
    const std::vector<std::pair<std::size_t, std::uint32_t>>& bad) {
  const std::size_t size = dtype_size(pat.dtype);
  std::vector<std::uint8_t> bytes(n * size);
  std::mt19937 gen(7);
  for (std::size_t i = 0; i < n; ++i) {
    const float v = std::ldexp(static_cast<float>(gen() % 2000) - 1000.0f, -5);
    std::uint32_t bits = pat.dtype == DType::f32   ? detail::float_bits(v)
                         : pat.dtype == DType::f16 ? detail::f32_to_f16(v)
                                                   : detail::f32_to_bf16(v);
    for (const auto& [at, value] : bad)
      if (at == i) bits = value;
    std::memcpy(bytes.data() + i * size, &bits, size);  // little-endian
  }
  return bytes;
}

TEST(ElementwiseDeviceNonFinite, FindsTheFirstNonFiniteOfEveryDtype) {
  TW_REQUIRE_DEVICE();
  void* stream = nullptr;
  TW_ASSERT_OK(kernels::stream_create(&stream));
  for (const Patterns& pat : kPatterns)
    for (const std::size_t n :
         {std::size_t{0}, std::size_t{1}, std::size_t{5}, std::size_t{1000}, std::size_t{100003}}) {
      std::vector<std::vector<std::pair<std::size_t, std::uint32_t>>> cases = {{}};
      if (n > 0) {
        cases.push_back({{0, pat.nan}});
        cases.push_back({{n - 1, pat.pinf}});
        cases.push_back({{n / 2, pat.ninf}});
        cases.push_back({{n - 1, pat.nan}, {n / 3, pat.pinf}, {n / 2, pat.ninf}});
        if (n > 600) cases.push_back({{n - 2, pat.nan}, {517, pat.nan}, {600, pat.pinf}});
      }
      for (const auto& bad : cases) {
        SCOPED_TRACE(::testing::Message() << to_string(pat.dtype) << " n = " << n << ", "
                                          << bad.size() << " non-finite");
        std::vector<std::uint8_t> bytes = tensor_bytes(pat, n, bad);
        const std::size_t host =
            detail::first_non_finite(TensorView::host(bytes.data(), n, pat.dtype));
        DeviceArray<std::uint8_t> dx(bytes.size());
        if (!bytes.empty()) dx.upload(bytes);
        // *first starts at n (the caller's convention) and, second, below the answer: min().
        for (const std::uint64_t start : {static_cast<std::uint64_t>(n), std::uint64_t{0}}) {
          DeviceArray<std::uint64_t> first(1);
          first.upload({start});
          TW_ASSERT_OK(kernels::first_non_finite(dx.get(), pat.dtype, n, first.get(), stream));
          TW_ASSERT_OK(kernels::stream_synchronize(stream));
          const std::uint64_t want =
              host == detail::kAllFinite ? start : std::min<std::uint64_t>(start, host);
          EXPECT_EQ(first.download()[0], want) << "start " << start;
        }
        if (!bad.empty()) {
          std::size_t earliest = n;
          for (const auto& b : bad) earliest = std::min(earliest, b.first);
          EXPECT_EQ(host, earliest);  // the host reference itself
        }
      }
    }
  TW_ASSERT_OK(kernels::stream_destroy(stream));
}

TEST(ElementwiseDeviceResidualNorms, AddsTheHostSumsInDouble) {
  TW_REQUIRE_DEVICE();
  void* stream = nullptr;
  TW_ASSERT_OK(kernels::stream_create(&stream));
  for (const std::size_t n : kSizes) {
    SCOPED_TRACE(::testing::Message() << "n = " << n);
    const std::vector<float> x = random_floats(n, 11), y = random_floats(n, 12);
    double err = 0.0, norm = 0.0;
    detail::low_rank::residual_norms(x.data(), y.data(), n, &err, &norm);
    const std::vector<double> start = {1.25, 2.5};  // accumulates: +=
    DeviceArray<float> dx(n), dy(n);
    if (n) {
      dx.upload(x);
      dy.upload(y);
    }
    DeviceArray<double> stats(2);
    stats.upload(start);
    TW_ASSERT_OK(kernels::residual_norms(dx.get(), dy.get(), n, stats.get(), stream));
    TW_ASSERT_OK(kernels::stream_synchronize(stream));
    const std::vector<double> got = stats.download();
    const double want_err = start[0] + err, want_norm = start[1] + norm;
    if (kernels::emulated()) {  // the host function itself
      EXPECT_EQ(got[0], want_err);
      EXPECT_EQ(got[1], want_norm);
    }
    EXPECT_NEAR(got[0], want_err, 1e-12 * want_err);
    EXPECT_NEAR(got[1], want_norm, 1e-12 * want_norm);
  }
  TW_ASSERT_OK(kernels::stream_destroy(stream));
}

}  // namespace
}  // namespace thinwire::test
