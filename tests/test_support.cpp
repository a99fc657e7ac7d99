#include "test_support.hpp"

#include <cmath>
#include <cstring>
#include <random>

namespace thinwire::test {

std::vector<float> seeded_normal(std::uint64_t seed, int rank, std::size_t layer,
                                 std::uint64_t step, std::size_t n, float scale) {
  std::seed_seq seq{static_cast<std::uint32_t>(seed), static_cast<std::uint32_t>(seed >> 32),
                    static_cast<std::uint32_t>(rank), static_cast<std::uint32_t>(layer),
                    static_cast<std::uint32_t>(step), 0x7477u};
  std::mt19937_64 rng(seq);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

bool identical_on_all_ranks(const void* data, std::size_t bytes, MPI_Comm comm) {
  std::vector<unsigned char> root(static_cast<const unsigned char*>(data),
                                  static_cast<const unsigned char*>(data) + bytes);
  unsigned long long size = bytes, max_size = 0;
  MPI_Allreduce(&size, &max_size, 1, MPI_UNSIGNED_LONG_LONG, MPI_MAX, comm);
  int same = size == max_size;
  root.resize(max_size);
  MPI_Bcast(root.data(), static_cast<int>(max_size), MPI_BYTE, 0, comm);
  same = same && (bytes == 0 || std::memcmp(root.data(), data, bytes) == 0);
  MPI_Allreduce(MPI_IN_PLACE, &same, 1, MPI_INT, MPI_MIN, comm);
  return same != 0;
}

bool identical_on_all_ranks(const std::vector<std::vector<float>>& tensors, MPI_Comm comm) {
  std::vector<float> flat;
  for (const auto& t : tensors) flat.insert(flat.end(), t.begin(), t.end());
  return identical_on_all_ranks(flat.data(), flat.size() * sizeof(float), comm);
}

int world_rank() {
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  return rank;
}

int world_size() {
  int size = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  return size;
}

std::vector<TensorView> views(std::vector<std::vector<float>>& tensors) {
  std::vector<TensorView> v;
  for (auto& t : tensors) v.push_back(TensorView::host(t.data(), t.size()));
  return v;
}

double relative_error(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0, den = 0;
  for (std::size_t i = 0; i < a.size() && i < b.size(); ++i) {
    num += (static_cast<double>(a[i]) - b[i]) * (static_cast<double>(a[i]) - b[i]);
    den += static_cast<double>(b[i]) * b[i];
  }
  if (a.size() != b.size()) return INFINITY;
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

double relative_error(const std::vector<std::vector<float>>& a,
                      const std::vector<std::vector<float>>& b) {
  std::vector<float> fa, fb;
  for (const auto& t : a) fa.insert(fa.end(), t.begin(), t.end());
  for (const auto& t : b) fb.insert(fb.end(), t.begin(), t.end());
  return relative_error(fa, fb);
}

}  // namespace thinwire::test
