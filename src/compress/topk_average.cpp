#include "compress/topk_average.hpp"

#include <cstring>

#include "common/bytes.hpp"
#include "compress/wire_format.hpp"

namespace thinwire::detail {

void average_topk(const TopkCodec::View* views, int p, float* out, std::size_t n,
                  std::vector<std::uint64_t>& touched) {
  if (n) std::memset(out, 0, n * sizeof(float));
  for (int r = 0; r < p; ++r)
    for (std::size_t j = 0; j < views[r].k; ++j)
      out[load_le<std::uint32_t>(views[r].indices + 4 * j)] +=
          load_le<float>(views[r].values + 4 * j);
  if (p <= 1) return;
  // Divide each touched entry once: the sum in rank order, then / P.
  touched.assign(ceil_div(n, 64), 0);
  const float fp = static_cast<float>(p);
  for (int r = 0; r < p; ++r)
    for (std::size_t j = 0; j < views[r].k; ++j) {
      const std::uint32_t i = load_le<std::uint32_t>(views[r].indices + 4 * j);
      const std::uint64_t bit = std::uint64_t{1} << (i & 63);
      if (touched[i >> 6] & bit) continue;
      touched[i >> 6] |= bit;
      out[i] /= fp;
    }
}

std::vector<std::uint8_t> shifted_topk_payload(const std::vector<std::uint8_t>& payload,
                                               std::size_t k, std::size_t n, std::size_t shift) {
  std::vector<std::uint8_t> out(payload);
  const std::uint8_t* idx = payload.data() + kHeaderBytes;
  const std::uint8_t* val = idx + 4 * k;
  shift %= n;
  std::size_t wrap = 0;  // the first entry whose index wraps around
  while (wrap < k && load_le<std::uint32_t>(idx + 4 * wrap) + shift < n) ++wrap;
  for (std::size_t j = 0; j < k; ++j) {
    const std::size_t from = (wrap + j) % k;
    const std::size_t i = (load_le<std::uint32_t>(idx + 4 * from) + shift) % n;
    store_le<std::uint32_t>(out.data() + kHeaderBytes + 4 * j, static_cast<std::uint32_t>(i));
    std::memcpy(out.data() + kHeaderBytes + 4 * (k + j), val + 4 * from, 4);
  }
  return out;
}

}  // namespace thinwire::detail
