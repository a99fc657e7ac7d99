// PowerSGD's linear algebra (src/compress/low_rank.hpp) against naive loops in double.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "common/simd.hpp"
#include "compress/low_rank.hpp"

namespace thinwire::detail::low_rank {
namespace {

using Matrix = std::vector<float>;  // row-major

Matrix random_matrix(std::size_t rows, std::size_t cols, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, 1.0f);
  Matrix m(rows * cols);
  for (float& v : m) v = d(rng);
  return m;
}

// a (n x k) * b^T (b is m x k) -> n x m, in double.
Matrix mul_abt(const Matrix& a, const Matrix& b, std::size_t n, std::size_t m, std::size_t k) {
  Matrix out(n * m);
  for (std::size_t i = 0; i < n; ++i)
    for (std::size_t j = 0; j < m; ++j) {
      double s = 0;
      for (std::size_t t = 0; t < k; ++t) s += static_cast<double>(a[i * k + t]) * b[j * k + t];
      out[i * m + j] = static_cast<float>(s);
    }
  return out;
}

double rel_diff(const Matrix& a, const Matrix& b) {
  double num = 0, den = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    num += (static_cast<double>(a[i]) - b[i]) * (static_cast<double>(a[i]) - b[i]);
    den += static_cast<double>(b[i]) * b[i];
  }
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

// max |(P^T P)_ij - I_ij| over the non-zero columns (zero columns must be exactly zero).
double orthonormality_error(const Matrix& p, std::size_t rows, std::size_t r,
                            std::size_t* nonzero) {
  std::vector<bool> live(r);
  *nonzero = 0;
  for (std::size_t c = 0; c < r; ++c) {
    bool any = false;
    for (std::size_t i = 0; i < rows; ++i) any |= p[i * r + c] != 0.0f;
    live[c] = any;
    *nonzero += any;
  }
  double worst = 0;
  for (std::size_t a = 0; a < r; ++a)
    for (std::size_t b = 0; b < r; ++b) {
      if (!live[a] || !live[b]) continue;
      double s = 0;
      for (std::size_t i = 0; i < rows; ++i) s += static_cast<double>(p[i * r + a]) * p[i * r + b];
      worst = std::max(worst, std::fabs(s - (a == b ? 1.0 : 0.0)));
    }
  return worst;
}

TEST(LowRank, ProductsMatchNaiveLoops) {
  const std::size_t rows = 37, cols = 23, r = 5;
  const Matrix m = random_matrix(rows, cols, 1), q = random_matrix(cols, r, 2),
               p0 = random_matrix(rows, r, 3);
  Matrix p(rows * r), q2(cols * r), out(rows * cols);
  project(m.data(), rows, cols, q.data(), r, p.data());
  back_project(m.data(), rows, cols, p0.data(), r, q2.data());
  reconstruct(p0.data(), q.data(), rows, cols, r, out.data());
  for (std::size_t i = 0; i < rows; ++i)
    for (std::size_t c = 0; c < r; ++c) {
      double s = 0;
      for (std::size_t j = 0; j < cols; ++j)
        s += static_cast<double>(m[i * cols + j]) * q[j * r + c];
      EXPECT_NEAR(p[i * r + c], s, 1e-4 * (1 + std::fabs(s)));
    }
  for (std::size_t j = 0; j < cols; ++j)
    for (std::size_t c = 0; c < r; ++c) {
      double s = 0;
      for (std::size_t i = 0; i < rows; ++i)
        s += static_cast<double>(m[i * cols + j]) * p0[i * r + c];
      EXPECT_NEAR(q2[j * r + c], s, 1e-4 * (1 + std::fabs(s)));
    }
  const Matrix want = mul_abt(p0, q, rows, cols, r);
  EXPECT_LT(rel_diff(out, want), 1e-6);
}

// The products' documented order (compress/low_rank_kernels.cpp), as plain f32 loops.
Matrix project_in_order(const Matrix& m, const Matrix& q, std::size_t rows, std::size_t cols,
                        std::size_t r) {
  Matrix p(rows * r);
  for (std::size_t i = 0; i < rows; ++i)
    for (std::size_t c = 0; c < r; ++c) {
      float lane[8] = {0, 0, 0, 0, 0, 0, 0, 0};
      for (std::size_t j = 0; j < cols; ++j) lane[j % 8] += m[i * cols + j] * q[j * r + c];
      p[i * r + c] =
          ((lane[0] + lane[4]) + (lane[2] + lane[6])) + ((lane[1] + lane[5]) + (lane[3] + lane[7]));
    }
  return p;
}
Matrix back_project_in_order(const Matrix& m, const Matrix& p, std::size_t rows, std::size_t cols,
                             std::size_t r) {
  Matrix q(cols * r, 0.0f);
  for (std::size_t i = 0; i < rows; ++i)
    for (std::size_t j = 0; j < cols; ++j)
      for (std::size_t c = 0; c < r; ++c) q[j * r + c] += m[i * cols + j] * p[i * r + c];
  return q;
}
Matrix reconstruct_in_order(const Matrix& p, const Matrix& q, std::size_t rows, std::size_t cols,
                            std::size_t r) {
  Matrix out(rows * cols);
  for (std::size_t i = 0; i < rows; ++i)
    for (std::size_t j = 0; j < cols; ++j) {
      float acc = p[i * r] * q[j * r];
      for (std::size_t c = 1; c < r; ++c) acc += p[i * r + c] * q[j * r + c];
      out[i * cols + j] = acc;
    }
  return out;
}

bool same_bits(const Matrix& a, const Matrix& b) {
  return a.size() == b.size() &&
         (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
}

TEST(LowRank, ProductsGiveTheDocumentedBitsOnEverySimdPath) {
  // Identical bits on every rank whatever its CPU: each SIMD path must compute exactly the
  // documented order. Shapes cover column tails (cols % 8), odd row counts (the row pairs
  // and blocks of four) and ranks that split into groups of 4, 2 and 1.
  struct Case {
    std::size_t rows, cols, r;
  };
  for (const Case& c : {Case{1, 1, 1}, Case{3, 7, 1}, Case{9, 8, 2}, Case{17, 29, 3},
                        Case{64, 64, 4}, Case{33, 515, 5}, Case{130, 96, 7}, Case{5, 1024, 11}}) {
    const std::string what =
        std::to_string(c.rows) + "x" + std::to_string(c.cols) + " r=" + std::to_string(c.r);
    const Matrix m = random_matrix(c.rows, c.cols, 11), q = random_matrix(c.cols, c.r, 12),
                 p = random_matrix(c.rows, c.r, 13);
    const Matrix want_p = project_in_order(m, q, c.rows, c.cols, c.r);
    const Matrix want_q = back_project_in_order(m, p, c.rows, c.cols, c.r);
    const Matrix want_out = reconstruct_in_order(p, q, c.rows, c.cols, c.r);
    for (SimdLevel level : {SimdLevel::scalar, SimdLevel::sse2, SimdLevel::avx2}) {
      set_simd_cap(level);
      Matrix got_p(c.rows * c.r), got_q(c.cols * c.r), got_out(c.rows * c.cols);
      project(m.data(), c.rows, c.cols, q.data(), c.r, got_p.data());
      back_project(m.data(), c.rows, c.cols, p.data(), c.r, got_q.data());
      reconstruct(p.data(), q.data(), c.rows, c.cols, c.r, got_out.data());
      set_simd_cap(SimdLevel::avx2);
      const std::string at = what + " simd level " + std::to_string(static_cast<int>(level));
      EXPECT_TRUE(same_bits(got_p, want_p)) << "P = M Q, " << at;
      EXPECT_TRUE(same_bits(got_q, want_q)) << "Q = M^T P, " << at;
      EXPECT_TRUE(same_bits(got_out, want_out)) << "P Q^T, " << at;
    }
  }
  if (simd_level() != SimdLevel::avx2)
    std::fprintf(stderr, "WARNING: this CPU has no AVX2; the AVX2 path was not tested here\n");
}

TEST(LowRank, ResidualPassGivesTheDocumentedBitsOnEverySimdPath) {
  for (std::size_t n : {std::size_t{0}, std::size_t{5}, std::size_t{8}, std::size_t{1003}}) {
    const Matrix x0 = random_matrix(1, n, 21), y = random_matrix(1, n, 22);
    double lanes_err[8] = {0, 0, 0, 0, 0, 0, 0, 0}, lanes_norm[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    Matrix want_x = x0;
    for (std::size_t i = 0; i < n; ++i) {
      const float d = x0[i] - y[i];
      lanes_err[i % 8] += static_cast<double>(d) * d;
      lanes_norm[i % 8] += static_cast<double>(x0[i]) * x0[i];
      want_x[i] = d;
    }
    auto combine = [](const double* l) {
      return ((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7]));
    };
    for (SimdLevel level : {SimdLevel::scalar, SimdLevel::sse2, SimdLevel::avx2}) {
      set_simd_cap(level);
      Matrix x = x0;
      double err = -1, norm = -1, err2 = -1, norm2 = -1;
      residual_norms(x.data(), y.data(), n, &err, &norm);
      residual_update(x.data(), y.data(), n, true, &err2, &norm2);
      set_simd_cap(SimdLevel::avx2);
      const std::string at =
          "n=" + std::to_string(n) + " simd level " + std::to_string(static_cast<int>(level));
      EXPECT_EQ(err, combine(lanes_err)) << at;
      EXPECT_EQ(norm, combine(lanes_norm)) << at;
      EXPECT_EQ(err2, err) << at;
      EXPECT_EQ(norm2, norm) << at;
      EXPECT_TRUE(same_bits(x, want_x)) << "x <- x - y, " << at;
    }
  }
}

TEST(LowRank, OneStepReproducesLowRankMatrices) {
  struct Case {
    std::size_t rows, cols, true_rank, r;
  };
  for (const Case& c : {Case{64, 48, 4, 4}, Case{64, 48, 2, 4}, Case{100, 30, 1, 1},
                        Case{30, 100, 3, 8}, Case{256, 128, 8, 8}, Case{7, 5, 5, 5}}) {
    const Matrix a = random_matrix(c.rows, c.true_rank, static_cast<std::uint32_t>(c.rows + c.r));
    const Matrix b =
        random_matrix(c.cols, c.true_rank, static_cast<std::uint32_t>(c.cols * 3 + c.r));
    const Matrix m = mul_abt(a, b, c.rows, c.cols, c.true_rank);  // rank true_rank <= r
    Matrix q(c.cols * c.r), p(c.rows * c.r), m_hat(c.rows * c.cols);
    random_init(q.data(), c.cols, c.r, 7, 1, 0);
    project(m.data(), c.rows, c.cols, q.data(), c.r, p.data());
    orthonormalize(p.data(), c.rows, c.r);
    std::size_t live = 0;
    EXPECT_LT(orthonormality_error(p, c.rows, c.r, &live), 1e-5);
    EXPECT_GE(live, c.true_rank);
    back_project(m.data(), c.rows, c.cols, p.data(), c.r, q.data());
    reconstruct(p.data(), q.data(), c.rows, c.cols, c.r, m_hat.data());
    EXPECT_LT(rel_diff(m_hat, m), 1e-5)
        << c.rows << "x" << c.cols << " rank " << c.true_rank << " r " << c.r;
  }
}

TEST(LowRank, OneStepIsAnOrthogonalProjection) {
  // For a full-rank matrix one step does not reproduce M, but M_hat = P P^T M is a
  // projection: ||M - M_hat||^2 = ||M||^2 - ||M_hat||^2.
  const std::size_t rows = 40, cols = 30, r = 4;
  const Matrix m = random_matrix(rows, cols, 9);
  Matrix q(cols * r), p(rows * r), m_hat(rows * cols);
  random_init(q.data(), cols, r, 1, 0, 0);
  project(m.data(), rows, cols, q.data(), r, p.data());
  orthonormalize(p.data(), rows, r);
  back_project(m.data(), rows, cols, p.data(), r, q.data());
  reconstruct(p.data(), q.data(), rows, cols, r, m_hat.data());
  double mm = 0, hh = 0, ee = 0;
  for (std::size_t i = 0; i < m.size(); ++i) {
    mm += static_cast<double>(m[i]) * m[i];
    hh += static_cast<double>(m_hat[i]) * m_hat[i];
    ee += (static_cast<double>(m[i]) - m_hat[i]) * (static_cast<double>(m[i]) - m_hat[i]);
  }
  EXPECT_NEAR(ee, mm - hh, 1e-4 * mm);
  EXPECT_GT(ee, 0.1 * mm);
}

TEST(LowRank, OrthonormalizeRandomAndIllConditioned) {
  for (std::size_t r : {std::size_t{1}, std::size_t{3}, std::size_t{8}, std::size_t{32}}) {
    const std::size_t rows = 200;
    Matrix p = random_matrix(rows, r, static_cast<std::uint32_t>(r));
    const Matrix original = p;
    orthonormalize(p.data(), rows, r);
    std::size_t live = 0;
    EXPECT_LT(orthonormality_error(p, rows, r, &live), 1e-5) << "r " << r;
    EXPECT_EQ(live, r);
    // Gram-Schmidt keeps the span of the leading columns: column c of P is in the span of
    // columns 0..c of the input, so P^T * original is upper triangular.
    for (std::size_t a = 0; a < r; ++a)
      for (std::size_t b = 0; b < a; ++b) {
        double s = 0;
        for (std::size_t i = 0; i < rows; ++i)
          s += static_cast<double>(p[i * r + a]) * original[i * r + b];
        EXPECT_NEAR(s, 0.0, 1e-4) << a << "," << b;
      }
  }
  // Nearly dependent columns: column 1 = column 0 + eps * noise. One Gram-Schmidt pass
  // loses orthogonality in proportion to 1/eps; the second pass restores it.
  for (float eps : {1e-3f, 1e-4f, 1e-5f}) {
    const std::size_t rows = 100, r = 3;
    Matrix p = random_matrix(rows, r, 5);
    for (std::size_t i = 0; i < rows; ++i) p[i * r + 1] = p[i * r + 0] + eps * p[i * r + 1];
    orthonormalize(p.data(), rows, r);
    std::size_t live = 0;
    EXPECT_LT(orthonormality_error(p, rows, r, &live), 1e-5) << "eps " << eps;
    EXPECT_EQ(live, 3u) << "eps " << eps;
  }
}

TEST(LowRank, OrthonormalizeZeroesDependentAndZeroColumns) {
  const std::size_t rows = 50, r = 5;
  Matrix p = random_matrix(rows, r, 11);
  for (std::size_t i = 0; i < rows; ++i) {
    p[i * r + 1] = 2.0f * p[i * r + 0];                 // a multiple of column 0
    p[i * r + 2] = 0.0f;                                // zero
    p[i * r + 4] = p[i * r + 0] * 0.5f - p[i * r + 3];  // in the span of columns 0 and 3
  }
  orthonormalize(p.data(), rows, r);
  for (std::size_t i = 0; i < rows; ++i) {
    EXPECT_EQ(p[i * r + 1], 0.0f) << i;
    EXPECT_EQ(p[i * r + 2], 0.0f) << i;
    EXPECT_EQ(p[i * r + 4], 0.0f) << i;
    EXPECT_FALSE(std::isnan(p[i * r + 0]) || std::isnan(p[i * r + 3]));
  }
  std::size_t live = 0;
  EXPECT_LT(orthonormality_error(p, rows, r, &live), 1e-5);
  EXPECT_EQ(live, 2u);
  // All zero: stays zero, no NaN.
  Matrix z(rows * r, 0.0f);
  orthonormalize(z.data(), rows, r);
  for (float v : z) EXPECT_EQ(v, 0.0f);
  // More columns than rows: at most `rows` survive, orthonormal.
  Matrix wide = random_matrix(3, 6, 12);
  orthonormalize(wide.data(), 3, 6);
  EXPECT_LT(orthonormality_error(wide, 3, 6, &live), 1e-5);
  EXPECT_EQ(live, 3u);
  for (float v : wide) EXPECT_FALSE(std::isnan(v));
}

TEST(LowRank, RandomInitIsDeterministicAndStandardNormal) {
  const std::size_t cols = 500, r = 40;
  Matrix a(cols * r), b(cols * r);
  random_init(a.data(), cols, r, 1234, 5, 0);
  random_init(b.data(), cols, r, 1234, 5, 0);
  EXPECT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * sizeof(float)));
  for (auto [seed, layer, salt] :
       {std::tuple<std::uint64_t, std::uint32_t, std::uint64_t>{1235, 5, 0},
        {1234, 6, 0},
        {1234, 5, 1}}) {
    random_init(b.data(), cols, r, seed, layer, salt);
    std::size_t same = 0;
    for (std::size_t i = 0; i < a.size(); ++i) same += a[i] == b[i];
    EXPECT_LT(same, 10u) << seed << " " << layer << " " << salt;
  }
  // Moments of N(0, 1) over 20000 draws.
  double s1 = 0, s2 = 0, s4 = 0;
  std::size_t within1 = 0;
  for (float v : a) {
    ASSERT_TRUE(std::isfinite(v));
    s1 += v;
    s2 += static_cast<double>(v) * v;
    s4 += static_cast<double>(v) * v * v * v;
    within1 += std::fabs(v) < 1.0f;
  }
  const double n = static_cast<double>(a.size());
  EXPECT_NEAR(s1 / n, 0.0, 5.0 / std::sqrt(n));
  EXPECT_NEAR(s2 / n, 1.0, 5.0 * std::sqrt(2.0 / n));
  EXPECT_NEAR(s4 / n, 3.0, 5.0 * std::sqrt(96.0 / n));
  EXPECT_NEAR(within1 / n, 0.682689, 5.0 * std::sqrt(0.2166 / n));
}

TEST(LowRank, RefreshRedrawsOnlyZeroColumns) {
  const std::size_t cols = 64, r = 6;
  Matrix q = random_matrix(cols, r, 21);
  for (std::size_t i = 0; i < cols; ++i) {
    q[i * r + 1] = 0.0f;
    q[i * r + 4] = -0.0f;
  }
  q[10 * r + 3] = 0.0f;  // one zero entry does not make a zero column
  const Matrix before = q;
  EXPECT_EQ(refresh_zero_columns(q.data(), cols, r, 77, 3, 9), 2u);
  Matrix fresh(cols * r);
  random_init(fresh.data(), cols, r, 77, 3, 9);
  for (std::size_t i = 0; i < cols; ++i)
    for (std::size_t c = 0; c < r; ++c) {
      if (c == 1 || c == 4)
        EXPECT_EQ(q[i * r + c], fresh[i * r + c]) << i << "," << c;
      else
        EXPECT_EQ(std::memcmp(&q[i * r + c], &before[i * r + c], 4), 0) << i << "," << c;
    }
  std::size_t nonzero = 0;
  for (std::size_t i = 0; i < cols; ++i) nonzero += q[i * r + 1] != 0.0f;
  EXPECT_GT(nonzero, cols / 2);
  // Nothing to refresh: nothing changes.
  const Matrix again = q;
  EXPECT_EQ(refresh_zero_columns(q.data(), cols, r, 77, 3, 10), 0u);
  EXPECT_EQ(q, again);
  EXPECT_EQ(refresh_zero_columns(q.data(), 0, r, 77, 3, 10), 0u);
}

}  // namespace
}  // namespace thinwire::detail::low_rank
