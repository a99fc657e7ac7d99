#include "device_reducer_support.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "common/half.hpp"
#include "device_test_support.hpp"
#include "test_support.hpp"

namespace thinwire::test {

std::vector<Layer> device_test_layers() {
  return {{"fc1.weight", {37, 53}}, {"fc1.bias", {37}},  {"fc2.weight", {64, 129}},
          {"scalar", {}},           {"empty", {0}},      {"conv.weight", {6, 3, 5, 23}},
          {"fc3.weight", {3, 701}}, {"fc3.bias", {1031}}};
}

namespace {

std::vector<std::uint16_t> to16(const std::vector<float>& v, DType dtype) {
  std::vector<std::uint16_t> out(v.size());
  for (std::size_t i = 0; i < v.size(); ++i)
    out[i] = dtype == DType::bf16 ? detail::f32_to_bf16(v[i]) : detail::f32_to_f16(v[i]);
  return out;
}

std::vector<float> from16(const std::vector<std::uint16_t>& v, DType dtype) {
  std::vector<float> out(v.size());
  for (std::size_t i = 0; i < v.size(); ++i)
    out[i] = dtype == DType::bf16 ? detail::bf16_to_f32(v[i]) : detail::f16_to_f32(v[i]);
  return out;
}

}  // namespace

PairRun run_host_and_device(const std::vector<Layer>& layers, const std::string& spec, int steps,
                            DType dtype, MPI_Comm comm) {
  int rank = 0;
  MPI_Comm_rank(comm, &rank);
  const Config config = Config::parse(spec);
  Communicator c = Communicator::from_mpi(comm);
  Reducer host(c, layers, config), device(c, layers, config);
  PairRun run;
  std::vector<DeviceArray<float>> d32(layers.size());
  std::vector<DeviceArray<std::uint16_t>> d16(layers.size());
  for (int step = 0; step < steps; ++step) {
    std::vector<std::vector<float>> g32(layers.size());
    std::vector<std::vector<std::uint16_t>> g16(layers.size());
    std::vector<TensorView> hv, dv;
    for (std::size_t l = 0; l < layers.size(); ++l) {
      const std::size_t n = layers[l].numel();
      std::vector<float> g = seeded_normal(77, rank, l, static_cast<std::uint64_t>(step), n);
      if (dtype == DType::f32) {
        g32[l] = g;
        d32[l].upload(g);
        hv.push_back(TensorView::host(g32[l].data(), n));
        dv.push_back(TensorView::cuda(d32[l].get(), n, DType::f32, 0));
      } else {
        g16[l] = to16(g, dtype);
        d16[l].upload(g16[l]);
        hv.push_back(TensorView::host(g16[l].data(), n, dtype));
        dv.push_back(TensorView::cuda(d16[l].get(), n, dtype, 0));
      }
    }
    host.allreduce(hv);
    device.allreduce(dv);
    std::vector<std::vector<float>> h(layers.size()), d(layers.size());
    for (std::size_t l = 0; l < layers.size(); ++l) {
      if (dtype == DType::f32) {
        h[l] = g32[l];
        d[l] = d32[l].download();
      } else {
        h[l] = from16(g16[l], dtype);
        d[l] = from16(d16[l].download(), dtype);
      }
    }
    run.host.push_back(std::move(h));
    run.device.push_back(std::move(d));
  }
  run.host_stats = host.stats();
  run.device_stats = device.stats();
  return run;
}

bool device_matches_bitwise(const Config& config) {
  if (kernels::emulated()) return true;
  return config.method == Method::none || config.method == Method::topk;
}

double max_relative_difference(const PairRun& run) {
  double worst = 0.0;
  for (std::size_t s = 0; s < run.host.size(); ++s)
    for (std::size_t l = 0; l < run.host[s].size(); ++l) {
      const std::vector<float>& h = run.host[s][l];
      const std::vector<float>& d = run.device[s][l];
      double scale = 1e-3;
      for (float v : h) scale = std::max(scale, static_cast<double>(std::fabs(v)));
      for (std::size_t i = 0; i < h.size() && i < d.size(); ++i)
        worst = std::max(worst, std::fabs(static_cast<double>(h[i]) - d[i]) / scale);
    }
  return worst;
}

void expect_device_matches_host(const PairRun& run, const Config& config, const std::string& what) {
  ASSERT_EQ(run.host.size(), run.device.size()) << what;
  if (!device_matches_bitwise(config)) {
    EXPECT_LT(max_relative_difference(run), 1e-3) << what << " (" << backend_name() << ")";
    return;
  }
  for (std::size_t s = 0; s < run.host.size(); ++s)
    for (std::size_t l = 0; l < run.host[s].size(); ++l) {
      const std::vector<float>& h = run.host[s][l];
      const std::vector<float>& d = run.device[s][l];
      ASSERT_EQ(h.size(), d.size()) << what;
      for (std::size_t i = 0; i < h.size(); ++i)
        ASSERT_EQ(std::memcmp(&h[i], &d[i], 4), 0)
            << what << " (" << backend_name() << "): step " << s << " layer " << l << " element "
            << i << ": host " << h[i] << " device " << d[i];
    }
}

}  // namespace thinwire::test
