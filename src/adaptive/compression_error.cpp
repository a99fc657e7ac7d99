#include "adaptive/compression_error.hpp"

#include <Eigen/Dense>
#include <algorithm>
#include <functional>
#include <random>

#include "algorithm/two_phase.hpp"

namespace thinwire::detail {

std::vector<double> topk_errors(const float* x, std::size_t n, const std::vector<std::size_t>& ks) {
  std::vector<float> sq(n);
  for (std::size_t i = 0; i < n; ++i) sq[i] = x[i] * x[i];
  std::sort(sq.begin(), sq.end(), std::greater<float>());
  // suffix[k] = sum of the n - k smallest squares, summed from the smallest up.
  std::vector<double> suffix(n + 1, 0.0);
  for (std::size_t i = n; i-- > 0;) suffix[i] = suffix[i + 1] + static_cast<double>(sq[i]);
  std::vector<double> out;
  for (std::size_t k : ks) out.push_back(suffix[k < n ? k : n]);
  return out;
}

double codec_error(Compressor& codec, const float* x, std::size_t n, int p, const EncodeKey& key,
                   std::vector<std::uint8_t>& scratch) {
  double err = 0.0;
  for (int j = 0; j < p; ++j) {
    const std::size_t b = chunk_begin(n, j, p), e = chunk_begin(n, j + 1, p);
    scratch.resize(codec.encoded_bytes(e - b));
    EncodeKey k = key;
    k.offset = b;
    err += codec.encode(x + b, e - b, k, scratch.data(), nullptr).sq_error;
  }
  return err;
}

std::vector<double> low_rank_errors(const float* x, std::size_t rows, std::size_t cols,
                                    const std::vector<std::size_t>& ranks, std::uint64_t seed) {
  using Mat = Eigen::MatrixXd;
  const auto r_ = static_cast<Eigen::Index>(rows), c_ = static_cast<Eigen::Index>(cols);
  const Mat m =
      Eigen::Map<const Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>(x, r_,
                                                                                              c_)
          .cast<double>();
  const double total = m.squaredNorm();
  std::size_t r_max = 0;
  for (std::size_t r : ranks) r_max = std::max(r_max, r);
  const Eigen::Index k =
      std::min<Eigen::Index>(static_cast<Eigen::Index>(r_max) + 8, std::min(r_, c_));
  std::vector<double> out;
  if (k <= 0) {
    out.assign(ranks.size(), total);
    return out;
  }
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal;
  Mat omega(c_, k);
  for (Eigen::Index j = 0; j < k; ++j)
    for (Eigen::Index i = 0; i < c_; ++i) omega(i, j) = normal(rng);
  auto orthonormal = [](const Mat& a) -> Mat {
    Eigen::HouseholderQR<Mat> qr(a);
    return qr.householderQ() * Mat::Identity(a.rows(), a.cols());
  };
  Mat q = orthonormal(m * omega);
  for (int it = 0; it < 2; ++it) q = orthonormal(m * orthonormal(m.transpose() * q));
  const Mat b = q.transpose() * m;  // k x cols; its singular values approximate M's top k
  Eigen::SelfAdjointEigenSolver<Mat> eig(b * b.transpose(), Eigen::EigenvaluesOnly);
  const Eigen::VectorXd& ev = eig.eigenvalues();  // ascending
  for (std::size_t r : ranks) {
    double captured = 0.0;
    for (Eigen::Index i = 0; i < std::min<Eigen::Index>(static_cast<Eigen::Index>(r), k); ++i)
      captured += std::max(0.0, ev(k - 1 - i));
    out.push_back(std::max(0.0, total - captured));
  }
  return out;
}

}  // namespace thinwire::detail
