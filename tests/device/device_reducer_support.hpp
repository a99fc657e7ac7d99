// Runs one spec through two Reducers on the same seeded gradients: one on host tensors (the
// host backend, the reference) and one on device tensors (the device pipeline: kernels over
// the device transport), so the device tests can compare them step by step.
#pragma once

#include <mpi.h>

#include <string>
#include <vector>

#include "thinwire/thinwire.hpp"

namespace thinwire::test {

struct PairRun {
  // [step][layer] results as f32 (f16/bf16 results widened exactly).
  std::vector<std::vector<std::vector<float>>> host, device;
  Stats host_stats, device_stats;
};

// Layers of odd sizes: matrices for PowerSGD, vectors, a scalar, an empty layer.
std::vector<Layer> device_test_layers();

// `steps` steps of `spec` on `comm` with gradients in `dtype`.
PairRun run_host_and_device(const std::vector<Layer>& layers, const std::string& spec, int steps,
                            DType dtype, MPI_Comm comm);

// Whether the device pipeline must match the host bit for bit for this spec on this backend:
// always over the CPU emulation; on a GPU for dense and top-k (exact selection, sums in rank
// order, element-wise formulas compiled without FMA contraction). 1-bit and qsgd scales are
// norms summed in another order (a few ulp), and PowerSGD's products run in cuBLAS.
bool device_matches_bitwise(const Config& config);

// max |a - b| / max(|b|, floor) over all steps and layers.
double max_relative_difference(const PairRun& run);

// The device's results equal the host's: bit for bit where device_matches_bitwise(config)
// says so (the first differing element is reported), else within 1e-3 relative.
void expect_device_matches_host(const PairRun& run, const Config& config, const std::string& what);

}  // namespace thinwire::test
