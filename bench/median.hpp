// The median of a sample, for the benchmark programs (times per call, rates per run).
#pragma once

#include <algorithm>
#include <cstddef>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace thinwire::bench {

// The middle value, or the mean of the two middle values; 0 for an empty sample.
inline double median(std::vector<double> v) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  const std::size_t m = v.size() / 2;
  return v.size() % 2 ? v[m] : 0.5 * (v[m - 1] + v[m]);
}

// Per key, the median of the positive numbers that the objects hold under it (compute rates:
// 0 marks a kernel not timed). Keys with none are left out.
inline nlohmann::json median_per_key(const std::vector<nlohmann::json>& objects) {
  std::map<std::string, std::vector<double>> samples;
  for (const auto& o : objects)
    for (const auto& [name, v] : o.items())
      if (v.get<double>() > 0) samples[name].push_back(v.get<double>());
  nlohmann::json out = nlohmann::json::object();
  for (const auto& [name, v] : samples) out[name] = median(v);
  return out;
}

}  // namespace thinwire::bench
