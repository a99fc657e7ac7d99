// The CUDA dtype conversion kernels (kernels/convert.cu) against the host functions in
// common/half.hpp, bit for bit: every one of the 65536 16-bit patterns in both directions
// for f16 and bf16, and about a million floats chosen to hit rounding ties, subnormals,
// overflow, infinities and NaNs. Without a usable CUDA device every test skips, saying why.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "common/half.hpp"
#include "launch.hpp"

namespace {

using thinwire::detail::bf16_to_f32;
using thinwire::detail::bits_float;
using thinwire::detail::f16_to_f32;
using thinwire::detail::f32_to_bf16;
using thinwire::detail::f32_to_f16;
using thinwire::detail::float_bits;

// Device memory for n elements of T, freed on scope exit.
template <typename T>
class DeviceBuffer {
 public:
  explicit DeviceBuffer(std::size_t n) : n_(n) {
    error_ = cudaMalloc(reinterpret_cast<void**>(&p_), (n ? n : 1) * sizeof(T));
  }
  ~DeviceBuffer() {
    if (p_) cudaFree(p_);
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  T* get() const { return p_; }
  cudaError_t error() const { return error_; }

 private:
  T* p_ = nullptr;
  std::size_t n_;
  cudaError_t error_;
};

#define ASSERT_CUDA(expr)                                                       \
  do {                                                                          \
    const cudaError_t e_ = (expr);                                              \
    ASSERT_EQ(e_, cudaSuccess) << #expr << ": " << cudaGetErrorName(e_) << " (" \
                               << cudaGetErrorString(e_) << ")";                \
  } while (0)

class GpuConvert : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why;
    const int n = thinwire::kernels::device_count(&why);
    if (n == 0) {
      std::fprintf(stderr,
                   "\n*** thinwire GPU tests: NO USABLE CUDA DEVICE, SKIPPING: %s ***\n"
                   "*** (the CUDA kernels were built but not run on this machine) ***\n\n",
                   why.c_str());
      GTEST_SKIP() << "no usable CUDA device (" << why
                   << "): the CUDA conversion kernels were not tested";
    }
    ASSERT_CUDA(cudaSetDevice(0));
  }

  // Runs the f16/bf16 -> f32 kernel on `in` (on `stream`) and returns the result.
  void to_float(const std::vector<std::uint16_t>& in, bool bf16, std::vector<float>* out,
                cudaStream_t stream = nullptr) {
    const std::size_t n = in.size();
    DeviceBuffer<std::uint16_t> d_in(n);
    DeviceBuffer<float> d_out(n);
    ASSERT_CUDA(d_in.error());
    ASSERT_CUDA(d_out.error());
    ASSERT_CUDA(
        cudaMemcpy(d_in.get(), in.data(), n * sizeof(std::uint16_t), cudaMemcpyHostToDevice));
    ASSERT_CUDA(cudaMemset(d_out.get(), 0xff, n * sizeof(float)));
    const std::string err =
        thinwire::kernels::half_to_float(d_in.get(), d_out.get(), n, bf16, stream);
    ASSERT_EQ(err, "") << "half_to_float launch";
    ASSERT_CUDA(stream ? cudaStreamSynchronize(stream) : cudaDeviceSynchronize());
    out->resize(n);
    ASSERT_CUDA(cudaMemcpy(out->data(), d_out.get(), n * sizeof(float), cudaMemcpyDeviceToHost));
  }

  // Runs the f32 -> f16/bf16 kernel on `in` (on `stream`) and returns the result.
  void to_half(const std::vector<float>& in, bool bf16, std::vector<std::uint16_t>* out,
               cudaStream_t stream = nullptr) {
    const std::size_t n = in.size();
    DeviceBuffer<float> d_in(n);
    DeviceBuffer<std::uint16_t> d_out(n);
    ASSERT_CUDA(d_in.error());
    ASSERT_CUDA(d_out.error());
    ASSERT_CUDA(cudaMemcpy(d_in.get(), in.data(), n * sizeof(float), cudaMemcpyHostToDevice));
    ASSERT_CUDA(cudaMemset(d_out.get(), 0xff, n * sizeof(std::uint16_t)));
    const std::string err =
        thinwire::kernels::float_to_half(d_in.get(), d_out.get(), n, bf16, stream);
    ASSERT_EQ(err, "") << "float_to_half launch";
    ASSERT_CUDA(stream ? cudaStreamSynchronize(stream) : cudaDeviceSynchronize());
    out->resize(n);
    ASSERT_CUDA(
        cudaMemcpy(out->data(), d_out.get(), n * sizeof(std::uint16_t), cudaMemcpyDeviceToHost));
  }
};

std::vector<std::uint16_t> all_patterns() {
  std::vector<std::uint16_t> v(65536);
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = static_cast<std::uint16_t>(i);
  return v;
}

// Floats that exercise every rounding path of f32 -> f16 and f32 -> bf16.
std::vector<float> test_floats() {
  std::vector<float> v = {0.0f,
                          -0.0f,
                          1.0f,
                          -1.0f,
                          65504.0f,                      // largest f16
                          65519.996f,                    // rounds down to 65504
                          65520.0f,                      // rounds up to inf
                          std::ldexp(1.0f, -14),         // smallest normal f16
                          std::ldexp(1.0f, -24),         // smallest subnormal f16
                          std::ldexp(1.0f, -25),         // tie: rounds to 0
                          std::ldexp(1.5f, -25),         // rounds up to 2^-24
                          std::ldexp(3.0f, -25),         // tie between subnormals
                          1.0f + std::ldexp(1.0f, -11),  // f16 tie, to even (down)
                          1.0f + std::ldexp(3.0f, -11),  // f16 tie, to even (up)
                          1.0f + std::ldexp(1.0f, -8),   // bf16 tie
                          1.0f + std::ldexp(3.0f, -8),   // bf16 tie
                          std::numeric_limits<float>::max(),
                          std::numeric_limits<float>::min(),
                          std::numeric_limits<float>::denorm_min(),
                          std::numeric_limits<float>::infinity(),
                          -std::numeric_limits<float>::infinity(),
                          std::numeric_limits<float>::quiet_NaN(),
                          bits_float(0x7f800001u),  // signalling NaN
                          bits_float(0xffc00001u)};
  // Every f16 value and the midpoints and near-midpoints between neighbours.
  for (std::uint32_t h = 0; h < 0x7c00u; ++h) {
    const float a = f16_to_f32(static_cast<std::uint16_t>(h));
    const float b = f16_to_f32(static_cast<std::uint16_t>(h + 1));
    const float mid = a + (b - a) / 2;
    for (float x : {a, mid, std::nextafter(mid, 0.0f), std::nextafter(mid, b)}) {
      v.push_back(x);
      v.push_back(-x);
    }
  }
  std::mt19937_64 rng(20240501);
  // Random bit patterns (all exponents, NaN payloads) ...
  for (int i = 0; i < 1 << 18; ++i) v.push_back(bits_float(static_cast<std::uint32_t>(rng())));
  // ... and random values around the f16 range, subnormals to overflow.
  std::uniform_real_distribution<float> mant(1.0f, 2.0f);
  std::uniform_int_distribution<int> expo(-28, 17);
  for (int i = 0; i < 1 << 18; ++i)
    v.push_back((rng() & 1 ? -1.0f : 1.0f) * std::ldexp(mant(rng), expo(rng)));
  return v;
}

::testing::AssertionResult same_bits(std::uint32_t got, std::uint32_t want, std::size_t i,
                                     std::uint32_t input) {
  if (got == want) return ::testing::AssertionSuccess();
  char buf[160];
  std::snprintf(buf, sizeof buf, "element %zu: input 0x%08x: CUDA gives 0x%08x, host 0x%08x", i,
                input, got, want);
  return ::testing::AssertionFailure() << buf;
}

TEST_F(GpuConvert, F16ToF32AllPatterns) {
  const std::vector<std::uint16_t> in = all_patterns();
  std::vector<float> out;
  ASSERT_NO_FATAL_FAILURE(to_float(in, false, &out));
  int bad = 0;
  for (std::size_t i = 0; i < in.size() && bad < 10; ++i) {
    const auto r = same_bits(float_bits(out[i]), float_bits(f16_to_f32(in[i])), i, in[i]);
    EXPECT_TRUE(r);
    bad += !r;
  }
}

TEST_F(GpuConvert, Bf16ToF32AllPatterns) {
  const std::vector<std::uint16_t> in = all_patterns();
  std::vector<float> out;
  ASSERT_NO_FATAL_FAILURE(to_float(in, true, &out));
  int bad = 0;
  for (std::size_t i = 0; i < in.size() && bad < 10; ++i) {
    const auto r = same_bits(float_bits(out[i]), float_bits(bf16_to_f32(in[i])), i, in[i]);
    EXPECT_TRUE(r);
    bad += !r;
  }
}

TEST_F(GpuConvert, F32ToF16RoundTripsAllPatterns) {
  // f16 -> f32 -> f16 on the device matches the same round trip on the host.
  const std::vector<std::uint16_t> in = all_patterns();
  std::vector<float> wide;
  std::vector<std::uint16_t> back;
  ASSERT_NO_FATAL_FAILURE(to_float(in, false, &wide));
  ASSERT_NO_FATAL_FAILURE(to_half(wide, false, &back));
  int bad = 0;
  for (std::size_t i = 0; i < in.size() && bad < 10; ++i) {
    const auto r = same_bits(back[i], f32_to_f16(f16_to_f32(in[i])), i, in[i]);
    EXPECT_TRUE(r);
    bad += !r;
  }
}

TEST_F(GpuConvert, F32ToF16Floats) {
  const std::vector<float> in = test_floats();
  std::vector<std::uint16_t> out;
  ASSERT_NO_FATAL_FAILURE(to_half(in, false, &out));
  int bad = 0;
  for (std::size_t i = 0; i < in.size() && bad < 10; ++i) {
    const auto r = same_bits(out[i], f32_to_f16(in[i]), i, float_bits(in[i]));
    EXPECT_TRUE(r);
    bad += !r;
  }
}

TEST_F(GpuConvert, F32ToBf16Floats) {
  const std::vector<float> in = test_floats();
  std::vector<std::uint16_t> out;
  ASSERT_NO_FATAL_FAILURE(to_half(in, true, &out));
  int bad = 0;
  for (std::size_t i = 0; i < in.size() && bad < 10; ++i) {
    const auto r = same_bits(out[i], f32_to_bf16(in[i]), i, float_bits(in[i]));
    EXPECT_TRUE(r);
    bad += !r;
  }
}

TEST_F(GpuConvert, OnAStreamAndOddSizes) {
  // A non-default stream, and sizes that are not multiples of the block size.
  cudaStream_t stream = nullptr;
  ASSERT_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> dist(-70000.0f, 70000.0f);
  for (std::size_t n :
       {std::size_t{1}, std::size_t{255}, std::size_t{257}, std::size_t{(1 << 20) + 3}}) {
    std::vector<float> in(n);
    for (float& x : in) x = dist(rng);
    for (bool bf16 : {false, true}) {
      std::vector<std::uint16_t> half;
      std::vector<float> back;
      ASSERT_NO_FATAL_FAILURE(to_half(in, bf16, &half, stream));
      ASSERT_NO_FATAL_FAILURE(to_float(half, bf16, &back, stream));
      for (std::size_t i = 0; i < n; ++i) {
        const std::uint16_t h = bf16 ? f32_to_bf16(in[i]) : f32_to_f16(in[i]);
        ASSERT_EQ(half[i], h) << "n " << n << " element " << i << (bf16 ? " bf16" : " f16");
        const float f = bf16 ? bf16_to_f32(h) : f16_to_f32(h);
        ASSERT_EQ(float_bits(back[i]), float_bits(f)) << "n " << n << " element " << i;
      }
    }
  }
  ASSERT_CUDA(cudaStreamDestroy(stream));
}

TEST_F(GpuConvert, ZeroElementsIsANoOp) {
  EXPECT_EQ(thinwire::kernels::half_to_float(nullptr, nullptr, 0, false, nullptr), "");
  EXPECT_EQ(thinwire::kernels::float_to_half(nullptr, nullptr, 0, true, nullptr), "");
}

}  // namespace
