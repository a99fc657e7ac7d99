// A user's program, written against DESIGN.md section 2 only, built against the installed
// package: a few steps of top-k with error feedback on an MLP layer, then checks that every
// rank holds the same bits, that the uncompressed bias is the exact average, and that a bad
// spec raises thinwire::Error across the shared-library boundary.
#include <mpi.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <vector>

#include <thinwire/thinwire.hpp>

namespace {

int failures = 0;

void check(bool ok, int rank, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "consumer: rank %d: FAILED: %s\n", rank, what);
    ++failures;
  }
}

// A deterministic value for (rank, step, index), in [-1, 1).
float value(int rank, int step, std::size_t i) {
  std::uint64_t x =
      (static_cast<std::uint64_t>(rank) << 48) ^ (static_cast<std::uint64_t>(step) << 32) ^ i;
  x = (x ^ (x >> 31)) * 0x7fb5d329728ea185ull;
  x = (x ^ (x >> 27)) * 0x81dadef4bc2dd44dull;
  x ^= x >> 33;
  return static_cast<float>(static_cast<double>(x >> 11) * 0x1.0p-52 - 1.0);
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0;
  try {
    thinwire::Communicator comm = thinwire::Communicator::from_mpi(MPI_COMM_WORLD);
    rank = comm.rank();
    const int size = comm.size();

    std::vector<thinwire::Layer> layers = {{"fc1.weight", {256, 784}}, {"fc1.bias", {256}}};
    thinwire::Config cfg = thinwire::Config::parse("topk:0.01,ef=ef");
    thinwire::Reducer reducer(comm, layers, cfg);

    std::vector<float> w_grad(256 * 784), b_grad(256);
    for (int step = 0; step < 3; ++step) {
      for (std::size_t i = 0; i < w_grad.size(); ++i) w_grad[i] = value(rank, step, i);
      for (std::size_t i = 0; i < b_grad.size(); ++i) b_grad[i] = value(rank, step, 1000000 + i);

      std::vector<thinwire::TensorView> grads = {
          thinwire::TensorView::host(w_grad.data(), 256 * 784),
          thinwire::TensorView::host(b_grad.data(), 256)};
      reducer.allreduce(grads);

      // Every rank must hold the same bits: compare with rank 0's result.
      std::vector<float> w0 = w_grad, b0 = b_grad;
      MPI_Bcast(w0.data(), static_cast<int>(w0.size()), MPI_FLOAT, 0, MPI_COMM_WORLD);
      MPI_Bcast(b0.data(), static_cast<int>(b0.size()), MPI_FLOAT, 0, MPI_COMM_WORLD);
      check(std::memcmp(w0.data(), w_grad.data(), w0.size() * sizeof(float)) == 0, rank,
            "fc1.weight differs from rank 0's result");
      check(std::memcmp(b0.data(), b_grad.data(), b0.size() * sizeof(float)) == 0, rank,
            "fc1.bias differs from rank 0's result");

      // fc1.bias has 256 < min_numel (1024) elements: sent uncompressed, so it is the average.
      double worst = 0.0;
      for (std::size_t i = 0; i < b_grad.size(); ++i) {
        double mean = 0.0;
        for (int r = 0; r < size; ++r) mean += value(r, step, 1000000 + i);
        mean /= size;
        worst = std::fmax(worst, std::fabs(mean - b_grad[i]));
      }
      check(worst < 1e-6, rank, "fc1.bias is not the average over ranks");

      // fc1.weight: top-k keeps k = ceil(0.01 * n) entries per rank, so at most size * k
      // entries of the result are non-zero.
      std::size_t nonzero = 0;
      for (float x : w_grad) nonzero += x != 0.0f;
      const std::size_t k = static_cast<std::size_t>(std::ceil(0.01 * 256 * 784));
      check(nonzero > 0 && nonzero <= static_cast<std::size_t>(size) * k, rank,
            "fc1.weight does not look like an average of top-k payloads");
    }

    thinwire::Stats s = reducer.stats();
    check(s.steps == 3, rank, "stats().steps != 3");
    check(s.bytes_sent > 0 && s.bytes_sent < s.bytes_dense, rank,
          "top-k sent no fewer bytes than dense");
    check(s.layers.size() == 2, rank, "stats().layers has not 2 entries");

    // Bad input is a thinwire::Error (a std::runtime_error), catchable across the library boundary.
    bool threw = false;
    try {
      thinwire::Config::parse("topk:2");
    } catch (const thinwire::Error& e) {
      threw = e.code() == thinwire::ErrorCode::invalid_argument;
    }
    check(threw, rank, "Config::parse(\"topk:2\") did not throw thinwire::Error(invalid_argument)");

    if (rank == 0)
      std::printf(
          "consumer: thinwire %s, %d ranks, spec '%s': %llu bytes sent vs %llu dense (ratio %.1fx) "
          "in %llu steps\n",
          THINWIRE_VERSION_STRING, size, reducer.config().to_string().c_str(),
          static_cast<unsigned long long>(s.bytes_sent),
          static_cast<unsigned long long>(s.bytes_dense), s.compression_ratio(),
          static_cast<unsigned long long>(s.steps));
  } catch (const thinwire::Error& e) {
    std::fprintf(stderr, "consumer: rank %d: thinwire::Error: %s\n", rank, e.what());
    ++failures;
  }

  int all_failures = 0;
  MPI_Allreduce(&failures, &all_failures, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  if (rank == 0)
    std::printf("consumer: %s\n", all_failures ? "FAILED" : "OK: identical results on all ranks");
  MPI_Finalize();
  return all_failures ? 1 : 0;
}
