// The CPU emulation of kernels/topk.cu: the host backend's TopkSelector on host memory, so
// that payloads, residuals and decoded averages equal the host TopkCodec's bit for bit.
#include <cstring>
#include <vector>

#include "common/half.hpp"
#include "common/philox.hpp"
#include "compress/topk_select.hpp"
#include "compress/wire_check.hpp"
#include "launch.hpp"
#include "thinwire/config.hpp"

namespace thinwire::kernels {

namespace {

constexpr std::size_t kHeader = 32;

std::string check_sizes(std::size_t n, std::size_t k) {
  if (n >= (std::size_t{1} << 32)) return "topk: n >= 2^32";
  if (k > n) return "topk: k > n";
  return {};
}

}  // namespace

std::size_t topk_workspace_bytes(std::size_t, std::size_t) {
  return 0;  // the emulation keeps its buffers in a per-thread TopkSelector
}

std::string topk_encode(const TopkEncode& a, void*) {
  if (std::string err = check_sizes(a.n, a.k); !err.empty()) return err;
  if (a.k == 0) return "topk_encode: k == 0";
  if (!a.x || !a.out) return "topk_encode: null x or out";
  const std::size_t n = a.n, k = a.k;

  thread_local detail::TopkSelector selector;
  thread_local std::vector<std::uint32_t> indices;
  thread_local std::vector<float> values;
  indices.resize(k);
  values.resize(k);
  double rest_sq = 0.0;
  const detail::TopkOutput sel{indices.data(), values.data(), &rest_sq};
  if (a.sampled) {
    const auto rng =
        detail::RandomStream::make(a.seed, a.layer, detail::kPhaseSample, a.step, a.rank);
    if (a.g)
      selector.select_sampled_ef(a.x, a.g, n, k, rng, sel);
    else
      selector.select_sampled(a.x, n, k, rng, sel);
  } else {
    if (a.g)
      selector.select_exact_ef(a.x, a.g, n, k, sel);
    else
      selector.select_exact(a.x, n, k, sel);
  }

  detail::wire_write_header(a.out, static_cast<std::uint8_t>(Method::topk),
                            static_cast<std::uint8_t>(a.dtype), n, static_cast<std::uint32_t>(k), 0,
                            8 * static_cast<std::uint64_t>(k));
  std::uint8_t* idx_out = a.out + kHeader;
  std::uint8_t* val_out = idx_out + 4 * k;
  double sent_sq = 0.0;
  for (std::size_t j = 0; j < k; ++j) {
    detail::wire_store_u32(idx_out + 4 * j, indices[j]);
    detail::wire_store_u32(val_out + 4 * j, detail::float_bits(values[j]));
    sent_sq += static_cast<double>(values[j]) * values[j];
  }
  if (a.residual) {
    if (a.residual != a.x) std::memcpy(a.residual, a.x, n * sizeof(float));
    for (std::size_t j = 0; j < k; ++j) a.residual[indices[j]] = 0.0f;
  }
  if (a.stats) {
    a.stats[0] += rest_sq;
    a.stats[1] += rest_sq + sent_sq;
  }
  return {};
}

std::string topk_decode_average(const std::uint8_t* in, std::size_t stride, std::size_t size, int p,
                                std::size_t n, std::size_t k, float* out, DecodeStatus* status,
                                void*) {
  if (std::string err = check_sizes(n, k); !err.empty()) return err;
  if (p < 1) return "topk_decode_average: p < 1";
  if (!in || !status || (n && !out)) return "topk_decode_average: null in, out or status";
  // An error recorded earlier in the step wins: the kernels then write nothing either.
  if (status->code != kDecodeOk) return {};

  const detail::WireExpect expect{
      static_cast<std::uint8_t>(Method::topk), n, static_cast<std::uint32_t>(k), 0, false,
      8 * static_cast<std::uint64_t>(k)};
  for (int r = 0; r < p; ++r) {
    const std::uint8_t* payload = in + static_cast<std::size_t>(r) * stride;
    std::uint64_t detail = 0;
    std::uint32_t code = detail::wire_check_header(payload, size, expect, &detail);
    if (code == kDecodeOk) {
      const std::uint8_t* idx = payload + kHeader;
      for (std::size_t j = 0; j < k; ++j) {
        const std::uint32_t i = detail::wire_load_u32(idx + 4 * j);
        if (i >= n || (j > 0 && i <= detail::wire_load_u32(idx + 4 * (j - 1)))) {
          code = kDecodeBadIndex;
          detail = j;
          break;
        }
      }
    }
    if (code != kDecodeOk) {
      status->code = code;
      status->from_rank = static_cast<std::uint32_t>(r);
      status->detail = detail;
      return {};
    }
  }

  for (std::size_t i = 0; i < n; ++i) out[i] = 0.0f;
  for (int r = 0; r < p; ++r) {
    const std::uint8_t* idx = in + static_cast<std::size_t>(r) * stride + kHeader;
    const std::uint8_t* val = idx + 4 * k;
    for (std::size_t j = 0; j < k; ++j) {
      const std::uint32_t bits = detail::wire_load_u32(val + 4 * j);
      float v;
      std::memcpy(&v, &bits, sizeof v);
      out[detail::wire_load_u32(idx + 4 * j)] += v;
    }
  }
  const float divisor = static_cast<float>(p);
  for (std::size_t i = 0; i < n; ++i) out[i] = out[i] / divisor;
  return {};
}

}  // namespace thinwire::kernels
