#include "compress/topk_average.hpp"

#include <cstring>

#include "common/bytes.hpp"

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

}  // namespace thinwire::detail
