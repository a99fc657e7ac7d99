// The median of a sample, for the benchmark programs (times per call, rates per run).
#pragma once

#include <algorithm>
#include <cstddef>
#include <vector>

namespace thinwire::bench {

// The middle value, or the mean of the two middle values; 0 for an empty sample.
inline double median(std::vector<double> v) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  const std::size_t m = v.size() / 2;
  return v.size() % 2 ? v[m] : 0.5 * (v[m - 1] + v[m]);
}

}  // namespace thinwire::bench
