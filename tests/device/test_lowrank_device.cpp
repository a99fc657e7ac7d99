// PowerSGD's launchers (kernels/lowrank.cu; emulated/lowrank.cpp) against the host algebra of
// compress/low_rank.hpp. The emulation is the host code itself, so there everything is
// compared bit for bit; on a GPU the products (cuBLAS sums in another order) and the
// Gram-Schmidt (double sums in another order) are compared within tolerances, and the random
// numbers bit for bit (see RandomInitMatchesHostBits).
#include <gtest/gtest.h>
#include <mpi.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "common/half.hpp"
#include "compress/low_rank.hpp"
#include "device_reducer_support.hpp"
#include "device_test_support.hpp"

namespace thinwire::test {
namespace {

namespace lr = detail::low_rank;

std::vector<float> random_floats(std::size_t n, std::uint32_t seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = dist(gen);
  return v;
}

std::size_t first_bit_difference(const std::vector<float>& a, const std::vector<float>& b) {
  for (std::size_t i = 0; i < a.size(); ++i)
    if (detail::float_bits(a[i]) != detail::float_bits(b[i])) return i;
  return a.size();
}

class LowRankDevice : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why;
    if (!device_available(&why)) return;
    TW_ASSERT_OK(kernels::stream_create(&stream_));
    TW_ASSERT_OK(kernels::blas_create(&blas_));
  }
  void TearDown() override {
    if (blas_) {
      EXPECT_TRUE(kernels::blas_destroy(blas_).empty());
    }
    if (stream_) kernels::stream_destroy(stream_);
  }
  void sync() { TW_ASSERT_OK(kernels::stream_synchronize(stream_)); }

  // got ~ want (a product over `terms` terms of magnitudes |a_k b_k| summing to scale[i]):
  // exact in the emulation, else within 1e-5 of the sum of magnitudes (f32 sums in any order).
  static void expect_product(const std::vector<float>& got, const std::vector<float>& want,
                             const std::vector<double>& scale, const char* what) {
    ASSERT_EQ(got.size(), want.size());
    if (kernels::emulated()) {
      const std::size_t at = first_bit_difference(got, want);
      EXPECT_EQ(at, got.size()) << what << ": differs from the host at " << at;
      return;
    }
    for (std::size_t i = 0; i < got.size(); ++i)
      ASSERT_NEAR(got[i], want[i], 1e-5 * scale[i] + 1e-30) << what << " element " << i;
  }

  void* stream_ = nullptr;
  void* blas_ = nullptr;
};

struct Shape {
  std::size_t rows, cols, r;
};
const Shape kShapes[] = {{1, 1, 1},     {7, 5, 3}, {64, 33, 4}, {300, 17, 8},
                         {129, 257, 2}, {0, 5, 2}, {5, 0, 2},   {6, 4, 0}};

TEST_F(LowRankDevice, ProductsMatchHost) {
  TW_REQUIRE_DEVICE();
  for (const Shape& s : kShapes) {
    SCOPED_TRACE(::testing::Message() << s.rows << " x " << s.cols << ", r = " << s.r);
    const std::vector<float> m = random_floats(s.rows * s.cols, 1),
                             q = random_floats(s.cols * s.r, 2), p = random_floats(s.rows * s.r, 3);
    DeviceArray<float> dm(m.size()), dq(q.size()), dp(p.size());
    dm.upload(m);
    dq.upload(q);
    dp.upload(p);
    {  // P = M Q; the output starts as garbage (an empty sum must give zeros)
      std::vector<float> want(s.rows * s.r), scale_in(s.rows * s.r, 7.0f);
      std::vector<double> scale(want.size(), 0.0);
      lr::project(m.data(), s.rows, s.cols, q.data(), s.r, want.data());
      for (std::size_t i = 0; i < s.rows; ++i)
        for (std::size_t j = 0; j < s.r; ++j)
          for (std::size_t k = 0; k < s.cols; ++k)
            scale[i * s.r + j] += std::fabs(double(m[i * s.cols + k]) * q[k * s.r + j]);
      DeviceArray<float> out(want.size());
      out.upload(scale_in);
      TW_ASSERT_OK(kernels::lowrank_project(blas_, dm.get(), s.rows, s.cols, dq.get(), s.r,
                                            out.get(), stream_));
      sync();
      expect_product(out.download(), want, scale, "project");
    }
    {  // Q = M^T P
      std::vector<float> want(s.cols * s.r), garbage(s.cols * s.r, 7.0f);
      std::vector<double> scale(want.size(), 0.0);
      lr::back_project(m.data(), s.rows, s.cols, p.data(), s.r, want.data());
      for (std::size_t i = 0; i < s.cols; ++i)
        for (std::size_t j = 0; j < s.r; ++j)
          for (std::size_t k = 0; k < s.rows; ++k)
            scale[i * s.r + j] += std::fabs(double(m[k * s.cols + i]) * p[k * s.r + j]);
      DeviceArray<float> out(want.size());
      out.upload(garbage);
      TW_ASSERT_OK(kernels::lowrank_back_project(blas_, dm.get(), s.rows, s.cols, dp.get(), s.r,
                                                 out.get(), stream_));
      sync();
      expect_product(out.download(), want, scale, "back_project");
    }
    {  // out = P Q^T
      std::vector<float> want(s.rows * s.cols), garbage(s.rows * s.cols, 7.0f);
      std::vector<double> scale(want.size(), 0.0);
      lr::reconstruct(p.data(), q.data(), s.rows, s.cols, s.r, want.data());
      for (std::size_t i = 0; i < s.rows; ++i)
        for (std::size_t j = 0; j < s.cols; ++j)
          for (std::size_t k = 0; k < s.r; ++k)
            scale[i * s.cols + j] += std::fabs(double(p[i * s.r + k]) * q[j * s.r + k]);
      DeviceArray<float> out(want.size());
      out.upload(garbage);
      TW_ASSERT_OK(kernels::lowrank_reconstruct(blas_, dp.get(), dq.get(), s.rows, s.cols, s.r,
                                                out.get(), stream_));
      sync();
      expect_product(out.download(), want, scale, "reconstruct");
    }
  }
}

// The batched products against the single ones on `kBatch` matrices of each shape (the
// empty sums included: their outputs start as garbage). In the emulation the batched
// launchers are the single ones in a loop: equal bit for bit. On a GPU cublasSgemmBatched
// may run another kernel than cublasSgemm (e.g. the single call may split the sum over k
// where the batched one does not), so each element is allowed the difference of two f32
// sums of the same k terms in different orders: 2 (k + 1) 2^-24 times the sum of the
// terms' magnitudes (a rigorous bound, so the test cannot flake).
TEST_F(LowRankDevice, BatchedProductsMatchSingle) {
  TW_REQUIRE_DEVICE();
  constexpr std::size_t kBatch = 4;
  const Shape shapes[] = {{1, 1, 1}, {7, 5, 3}, {64, 96, 2}, {300, 17, 8},
                          {0, 5, 2}, {5, 0, 2}, {6, 4, 0}};
  // got[b] against want[b]; terms[b][i] is the sum of magnitudes of element i's k terms.
  // With k == 0 every element is an empty sum and must be zero.
  auto expect_same =
      [](const std::vector<std::vector<float>>& got, const std::vector<std::vector<float>>& want,
         const std::vector<std::vector<double>>& terms, std::size_t k, const char* what) {
        if (k == 0) {
          for (const std::vector<float>& g : got)
            for (const float v : g) EXPECT_EQ(v, 0.0f) << what << ": an empty sum";
        }
        for (std::size_t b = 0; b < got.size(); ++b) {
          ASSERT_EQ(got[b].size(), want[b].size());
          if (kernels::emulated()) {
            const std::size_t at = first_bit_difference(got[b], want[b]);
            EXPECT_EQ(at, got[b].size()) << what << " matrix " << b << ": differs at " << at;
            continue;
          }
          const double ulp = std::ldexp(1.0, -24);
          for (std::size_t i = 0; i < got[b].size(); ++i)
            ASSERT_NEAR(got[b][i], want[b][i], 2.0 * (k + 1) * ulp * terms[b][i] + 1e-30)
                << what << " matrix " << b << " element " << i;
        }
      };
  for (const Shape& s : shapes) {
    SCOPED_TRACE(::testing::Message() << s.rows << " x " << s.cols << ", r = " << s.r);
    std::vector<std::vector<float>> m(kBatch), q(kBatch), p(kBatch);
    std::vector<DeviceArray<float>> dm(kBatch), dq(kBatch), dp(kBatch);
    for (std::size_t b = 0; b < kBatch; ++b) {
      const auto seed = static_cast<std::uint32_t>(10 * b);
      m[b] = random_floats(s.rows * s.cols, seed + 1);
      q[b] = random_floats(s.cols * s.r, seed + 2);
      p[b] = random_floats(s.rows * s.r, seed + 3);
      dm[b].resize(m[b].size());  // never empty: upload() would keep a null pointer
      dq[b].resize(q[b].size());
      dp[b].resize(p[b].size());
      dm[b].upload(m[b]);
      dq[b].upload(q[b]);
      dp[b].upload(p[b]);
    }
    // Pointer arrays in device memory, as cuBLAS wants them.
    auto pointers = [](const std::vector<DeviceArray<float>>& a) {
      std::vector<float*> v;
      for (const DeviceArray<float>& x : a) v.push_back(x.get());
      return v;
    };
    DeviceArray<float*> pm, pq, pp;
    pm.upload(pointers(dm));
    pq.upload(pointers(dq));
    pp.upload(pointers(dp));
    // Runs one product both ways: single(b, out) per matrix and batched(out pointers) at once.
    auto both = [&](std::size_t elems, const auto& single, const auto& batched,
                    std::vector<std::vector<float>>* want, std::vector<std::vector<float>>* got) {
      const std::vector<float> garbage(elems, 7.0f);
      std::vector<DeviceArray<float>> one(kBatch), many(kBatch);
      for (std::size_t b = 0; b < kBatch; ++b) {
        one[b].resize(elems);
        many[b].resize(elems);
        one[b].upload(garbage);
        many[b].upload(garbage);
        TW_ASSERT_OK(single(b, one[b].get()));
      }
      DeviceArray<float*> out;
      out.upload(pointers(many));
      TW_ASSERT_OK(batched(out.get()));
      sync();
      want->clear();
      got->clear();
      for (std::size_t b = 0; b < kBatch; ++b) {
        want->push_back(one[b].download());
        got->push_back(many[b].download());
      }
    };
    std::vector<std::vector<float>> want, got;
    std::vector<std::vector<double>> terms(kBatch);
    {  // P = M Q
      both(
          s.rows * s.r,
          [&](std::size_t b, float* out) {
            return kernels::lowrank_project(blas_, dm[b].get(), s.rows, s.cols, dq[b].get(), s.r,
                                            out, stream_);
          },
          [&](float* const* out) {
            return kernels::lowrank_project_batched(blas_, pm.get(), s.rows, s.cols, pq.get(), s.r,
                                                    out, kBatch, stream_);
          },
          &want, &got);
      for (std::size_t b = 0; b < kBatch; ++b) {
        terms[b].assign(s.rows * s.r, 0.0);
        for (std::size_t i = 0; i < s.rows; ++i)
          for (std::size_t j = 0; j < s.r; ++j)
            for (std::size_t k = 0; k < s.cols; ++k)
              terms[b][i * s.r + j] += std::fabs(double(m[b][i * s.cols + k]) * q[b][k * s.r + j]);
      }
      expect_same(got, want, terms, s.cols, "project");
    }
    {  // Q = M^T P
      both(
          s.cols * s.r,
          [&](std::size_t b, float* out) {
            return kernels::lowrank_back_project(blas_, dm[b].get(), s.rows, s.cols, dp[b].get(),
                                                 s.r, out, stream_);
          },
          [&](float* const* out) {
            return kernels::lowrank_back_project_batched(blas_, pm.get(), s.rows, s.cols, pp.get(),
                                                         s.r, out, kBatch, stream_);
          },
          &want, &got);
      for (std::size_t b = 0; b < kBatch; ++b) {
        terms[b].assign(s.cols * s.r, 0.0);
        for (std::size_t i = 0; i < s.cols; ++i)
          for (std::size_t j = 0; j < s.r; ++j)
            for (std::size_t k = 0; k < s.rows; ++k)
              terms[b][i * s.r + j] += std::fabs(double(m[b][k * s.cols + i]) * p[b][k * s.r + j]);
      }
      expect_same(got, want, terms, s.rows, "back_project");
    }
    {  // out = P Q^T
      both(
          s.rows * s.cols,
          [&](std::size_t b, float* out) {
            return kernels::lowrank_reconstruct(blas_, dp[b].get(), dq[b].get(), s.rows, s.cols,
                                                s.r, out, stream_);
          },
          [&](float* const* out) {
            return kernels::lowrank_reconstruct_batched(blas_, pp.get(), pq.get(), s.rows, s.cols,
                                                        s.r, out, kBatch, stream_);
          },
          &want, &got);
      for (std::size_t b = 0; b < kBatch; ++b) {
        terms[b].assign(s.rows * s.cols, 0.0);
        for (std::size_t i = 0; i < s.rows; ++i)
          for (std::size_t j = 0; j < s.cols; ++j)
            for (std::size_t k = 0; k < s.r; ++k)
              terms[b][i * s.cols + j] += std::fabs(double(p[b][i * s.r + k]) * q[b][j * s.r + k]);
      }
      expect_same(got, want, terms, s.r, "reconstruct");
    }
  }
  // count == 0 touches nothing (null arrays are never read).
  TW_ASSERT_OK(
      kernels::lowrank_project_batched(blas_, nullptr, 4, 4, nullptr, 2, nullptr, 0, stream_));
  TW_ASSERT_OK(
      kernels::lowrank_back_project_batched(blas_, nullptr, 4, 4, nullptr, 2, nullptr, 0, stream_));
  TW_ASSERT_OK(
      kernels::lowrank_reconstruct_batched(blas_, nullptr, nullptr, 4, 4, 2, nullptr, 0, stream_));
  sync();
}

// Column j of the row-major rows x r matrix p is all zeros.
bool zero_column(const std::vector<float>& p, std::size_t rows, std::size_t r, std::size_t j) {
  for (std::size_t i = 0; i < rows; ++i)
    if (p[i * r + j] != 0.0f) return false;
  return true;
}

void expect_orthonormal(const std::vector<float>& p, std::size_t rows, std::size_t r) {
  for (std::size_t a = 0; a < r; ++a) {
    if (zero_column(p, rows, r, a)) continue;
    for (std::size_t b = a; b < r; ++b) {
      if (zero_column(p, rows, r, b)) continue;
      double dot = 0.0;
      for (std::size_t i = 0; i < rows; ++i) dot += double(p[i * r + a]) * p[i * r + b];
      EXPECT_NEAR(dot, a == b ? 1.0 : 0.0, 1e-5) << "columns " << a << ", " << b;
    }
  }
}

struct OrthoCase {
  std::size_t rows, r;
  std::vector<std::size_t> duplicate;  // column j := column duplicate[j] (j >= 1), or j itself
  std::vector<std::size_t> zero;       // columns set to zero
};

TEST_F(LowRankDevice, OrthonormalizeMatchesHost) {
  TW_REQUIRE_DEVICE();
  // Small shapes run in one block on a GPU; 20000 and 70001 rows in one launch per step over
  // many blocks. r > rows and copied / zero columns are rank-deficient.
  const std::vector<OrthoCase> cases = {
      {1, 1, {}, {}},
      {10, 3, {}, {}},
      {1000, 8, {}, {}},
      {3, 5, {}, {}},
      {1000, 4, {0, 1, 0, 3}, {3}},
      {8192, 4, {}, {1}},
      {20000, 6, {0, 1, 2, 1, 4, 5}, {5}},
      {70001, 3, {}, {}},
      {20000, 1, {}, {0}},
  };
  for (const OrthoCase& c : cases) {
    SCOPED_TRACE(::testing::Message() << c.rows << " x " << c.r);
    std::vector<float> p = random_floats(c.rows * c.r, 5);
    for (std::size_t j = 0; j < c.duplicate.size(); ++j)
      if (c.duplicate[j] != j)
        for (std::size_t i = 0; i < c.rows; ++i)
          p[i * c.r + j] = 2.0f * p[i * c.r + c.duplicate[j]];
    for (const std::size_t j : c.zero)
      for (std::size_t i = 0; i < c.rows; ++i) p[i * c.r + j] = 0.0f;
    std::vector<float> want = p;
    lr::orthonormalize(want.data(), c.rows, c.r);
    DeviceArray<float> dp(p.size());
    dp.upload(p);
    TW_ASSERT_OK(kernels::lowrank_orthonormalize(dp.get(), c.rows, c.r, stream_));
    sync();
    const std::vector<float> got = dp.download();
    // The host's zero columns: the copies, the zeros, and those beyond rank rows.
    for (std::size_t j = 0; j < c.r; ++j) {
      const bool deficient = (j < c.duplicate.size() && c.duplicate[j] != j) ||
                             std::count(c.zero.begin(), c.zero.end(), j) > 0 || j >= c.rows;
      EXPECT_EQ(zero_column(want, c.rows, c.r, j), deficient) << "host column " << j;
      EXPECT_EQ(zero_column(got, c.rows, c.r, j), zero_column(want, c.rows, c.r, j))
          << "column " << j;
    }
    expect_orthonormal(got, c.rows, c.r);
    if (kernels::emulated()) {
      EXPECT_EQ(first_bit_difference(got, want), got.size());
    } else {
      for (std::size_t i = 0; i < got.size(); ++i)
        ASSERT_NEAR(got[i], want[i], 1e-5) << "element " << i;
    }
  }
}

TEST_F(LowRankDevice, OrthonormalizeIsDeterministic) {
  TW_REQUIRE_DEVICE();
  for (const std::size_t rows : {std::size_t{500}, std::size_t{30000}}) {
    const std::size_t r = 5;
    const std::vector<float> p = random_floats(rows * r, 9);
    DeviceArray<float> a(p.size()), b(p.size());
    a.upload(p);
    b.upload(p);
    TW_ASSERT_OK(kernels::lowrank_orthonormalize(a.get(), rows, r, stream_));
    TW_ASSERT_OK(kernels::lowrank_orthonormalize(b.get(), rows, r, nullptr));
    sync();
    TW_ASSERT_OK(kernels::stream_synchronize(nullptr));
    const std::vector<float> x = a.download(), y = b.download();
    EXPECT_EQ(first_bit_difference(x, y), x.size()) << rows << " rows";
  }
}

// Bit for bit on both backends. The device evaluates Box-Muller's log and cos in double with
// CUDA's libdevice (within 1-2 ulp of glibc's), then rounds to f32: the f32 results can
// differ only where the exact value lies within a few double ulps of an f32 rounding
// boundary, about 1e-8 per element (~1e-4 for the ~26000 elements here), so this test demands
// exact equality; a failure at an isolated element off by one f32 ulp is that event, not a
// wrong stream.
TEST_F(LowRankDevice, RandomInitMatchesHostBits) {
  TW_REQUIRE_DEVICE();
  const Shape shapes[] = {{0, 0, 3}, {0, 1, 1}, {0, 7, 3}, {0, 33, 5}, {0, 1000, 4}, {0, 4097, 3}};
  for (const Shape& s : shapes)
    for (const std::uint64_t salt : {std::uint64_t{0}, std::uint64_t{3}}) {
      SCOPED_TRACE(::testing::Message() << s.cols << " x " << s.r << ", salt " << salt);
      std::vector<float> want(s.cols * s.r);
      lr::random_init(want.data(), s.cols, s.r, 0x1234567890abcdefull, 17, salt);
      DeviceArray<float> dq(want.size());
      TW_ASSERT_OK(kernels::lowrank_random_init(dq.get(), s.cols, s.r, 0x1234567890abcdefull, 17,
                                                salt, stream_));
      sync();
      const std::vector<float> got = dq.download();
      const std::size_t at = first_bit_difference(got, want);
      EXPECT_EQ(at, got.size()) << "first difference at " << at << ": "
                                << (at < got.size() ? got[at] : 0.0f) << " vs host "
                                << (at < got.size() ? want[at] : 0.0f);
    }
}

TEST_F(LowRankDevice, RefreshRedrawsOnlyZeroColumnsLikeHost) {
  TW_REQUIRE_DEVICE();
  const std::uint64_t seed = 99;
  for (const std::size_t cols : {std::size_t{1}, std::size_t{5}, std::size_t{1000}}) {
    const std::size_t r = 6;
    SCOPED_TRACE(::testing::Message() << cols << " x " << r);
    std::vector<float> q = random_floats(cols * r, 4);
    // Column 1: zeros; 2: zeros but the last entry; 3: -0.0 (zero); 5: zeros. 0 and 4 random.
    for (std::size_t i = 0; i < cols; ++i) {
      q[i * r + 1] = 0.0f;
      q[i * r + 2] = i + 1 == cols ? 1e-30f : 0.0f;
      q[i * r + 3] = -0.0f;
      q[i * r + 5] = 0.0f;
    }
    std::vector<float> want = q;
    const std::size_t redrawn = lr::refresh_zero_columns(want.data(), cols, r, seed, 4, 1);
    EXPECT_EQ(redrawn, 3u);  // columns 1, 3, 5 (column 2 is not zero)
    DeviceArray<float> dq(q.size());
    dq.upload(q);
    TW_ASSERT_OK(kernels::lowrank_refresh_zero_columns(dq.get(), cols, r, seed, 4, 1, stream_));
    sync();
    const std::vector<float> got = dq.download();
    const std::size_t at = first_bit_difference(got, want);
    EXPECT_EQ(at, got.size()) << "first difference at " << at;
    EXPECT_FALSE(zero_column(got, cols, r, 1));
    EXPECT_EQ(got[(cols - 1) * r + 2], 1e-30f);  // kept
    // Nothing to redraw: unchanged.
    TW_ASSERT_OK(kernels::lowrank_refresh_zero_columns(dq.get(), cols, r, seed, 4, 1, stream_));
    sync();
    EXPECT_EQ(first_bit_difference(dq.download(), want), got.size());
  }
  // cols == 0 is a no-op.
  DeviceArray<float> empty(0);
  TW_ASSERT_OK(kernels::lowrank_refresh_zero_columns(empty.get(), 0, 4, seed, 4, 1, stream_));
  TW_ASSERT_OK(kernels::lowrank_random_init(empty.get(), 0, 4, seed, 4, 1, stream_));
  sync();
}

// run_host_and_device() on `layers`: the device equals the host (bit for bit where
// device_matches_bitwise() says so), every layer but "bias" went low-rank.
void expect_low_rank_matches_host(const std::vector<Layer>& layers, const char* spec, int steps) {
  SCOPED_TRACE(spec);
  const Config config = Config::parse(spec);
  const PairRun run = run_host_and_device(layers, spec, steps, DType::f32, MPI_COMM_SELF);
  expect_device_matches_host(run, config, spec);
  EXPECT_EQ(run.host_stats.bytes_sent, run.device_stats.bytes_sent);
  ASSERT_EQ(run.device_stats.layers.size(), layers.size());
  for (std::size_t l = 0; l < layers.size(); ++l) {
    const LayerStats& h = run.host_stats.layers[l];
    const LayerStats& d = run.device_stats.layers[l];
    EXPECT_EQ(d.route, layers[l].name == "bias" ? "dense" : "powersgd") << layers[l].name;
    EXPECT_EQ(h.route, d.route) << layers[l].name;
    EXPECT_NEAR(h.sq_error, d.sq_error, 1e-6 * (1.0 + h.sq_norm)) << layers[l].name;
    EXPECT_NEAR(h.sq_norm, d.sq_norm, 1e-6 * (1.0 + h.sq_norm)) << layers[l].name;
  }
}

// The Reducer's PowerSGD route on the device batches the products of layers of one shape
// (DeviceAlgorithms::low_rank): two groups of same-shaped matrices, interleaved with each
// other, with a singleton of the transposed shape and with a dense bias, must give the
// host backend's results (bit for bit in the emulation) under every error feedback:
// {a, b, c} (64 x 96) and {d, e, g} (32 x 40, g as a 32 x 4 x 10 tensor) run batched, f
// (40 x 32) alone.
TEST(LowRankDeviceReducer, SameShapedLayersMatchTheHostBackend) {
  TW_REQUIRE_DEVICE();
  const std::vector<Layer> layers = {{"a", {64, 96}}, {"d", {32, 40}},   {"b", {64, 96}},
                                     {"f", {40, 32}}, {"c", {64, 96}},   {"bias", {37}},
                                     {"e", {32, 40}}, {"g", {32, 4, 10}}};
  for (const char* spec : {"powersgd:2", "powersgd:2,ef=none", "powersgd:2,ef=econtrol"})
    expect_low_rank_matches_host(layers, spec, 4);
}

// Layers so large that a group reconstructs two at a time (2^24 floats of scratch hold two
// of 2048 x 2731, just not three): batched pairs {a, b}, {c, d}, then e alone. EControl's
// first low-rank step is its second.
TEST(LowRankDeviceReducer, LargeSameShapedLayersReconstructInChunks) {
  TW_REQUIRE_DEVICE();
  const std::vector<Layer> layers = {{"a", {2048, 2731}}, {"bias", {37}},      {"b", {2048, 2731}},
                                     {"c", {2048, 2731}}, {"d", {2048, 2731}}, {"e", {2048, 2731}}};
  expect_low_rank_matches_host(layers, "powersgd:2", 1);
  expect_low_rank_matches_host(layers, "powersgd:2,ef=econtrol", 2);
}

}  // namespace
}  // namespace thinwire::test
