#include "bench_layers.hpp"

#include <algorithm>
#include <cmath>
#include <sstream>
#include <stdexcept>

namespace thinwire::bench {

std::vector<Layer> make_layers(const std::string& kind, std::size_t bytes) {
  const std::size_t n = bytes / 4;
  if (kind == "single") {
    std::size_t rows = 1;
    while ((rows * 2) * (rows * 2) <= n && n % (rows * 2) == 0) rows *= 2;
    if (rows == 1) return {{"grad", {static_cast<std::int64_t>(n)}}};
    return {{"grad", {static_cast<std::int64_t>(rows), static_cast<std::int64_t>(n / rows)}}};
  }
  if (kind == "mix") {
    constexpr int kBlocks = 4;
    const double d_exact = std::sqrt(static_cast<double>(n) / (12.0 * kBlocks));
    const auto d = static_cast<std::int64_t>(std::max(1.0, std::round(d_exact / 32.0)) * 32.0);
    std::vector<Layer> layers;
    for (int b = 0; b < kBlocks; ++b) {
      const std::string p = "blocks." + std::to_string(b) + ".";
      layers.push_back({p + "attn.qkv.weight", {3 * d, d}});
      layers.push_back({p + "attn.qkv.bias", {3 * d}});
      layers.push_back({p + "attn.proj.weight", {d, d}});
      layers.push_back({p + "attn.proj.bias", {d}});
      layers.push_back({p + "ln1.weight", {d}});
      layers.push_back({p + "ln1.bias", {d}});
      layers.push_back({p + "mlp.fc1.weight", {4 * d, d}});
      layers.push_back({p + "mlp.fc1.bias", {4 * d}});
      layers.push_back({p + "mlp.fc2.weight", {d, 4 * d}});
      layers.push_back({p + "mlp.fc2.bias", {d}});
      layers.push_back({p + "ln2.weight", {d}});
      layers.push_back({p + "ln2.bias", {d}});
    }
    return layers;
  }
  throw std::invalid_argument("layer set must be 'single' or 'mix', got '" + kind + "'");
}

std::size_t total_bytes(const std::vector<Layer>& layers) {
  std::size_t n = 0;
  for (const Layer& l : layers) n += l.numel();
  return 4 * n;
}

std::size_t parse_size(const std::string& text) {
  const std::string usage = "'" + text + "' is not a size like 4096, 64K, 16M or 1G";
  std::size_t digits = 0;
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') ++digits;
  if (digits == 0 || digits > 18) throw std::invalid_argument(usage);
  const unsigned long long v = std::stoull(text.substr(0, digits));
  const std::string suffix = text.substr(digits);
  int shift = 0;
  if (suffix == "K" || suffix == "k")
    shift = 10;
  else if (suffix == "M" || suffix == "m")
    shift = 20;
  else if (suffix == "G" || suffix == "g")
    shift = 30;
  else if (!suffix.empty())
    throw std::invalid_argument(usage);
  if (v > (~0ull >> shift)) throw std::invalid_argument("size '" + text + "' is too large");
  return static_cast<std::size_t>(v << shift);
}

std::string format_size(std::size_t bytes) {
  const char* units[] = {"", "K", "M", "G", "T"};
  int u = 0;
  while (u < 4 && bytes >= 1024 && bytes % 1024 == 0) {
    bytes /= 1024;
    ++u;
  }
  return std::to_string(bytes) + units[u];
}

std::vector<std::string> split_specs(const std::string& list) {
  std::vector<std::string> out;
  std::stringstream ss(list);
  std::string item;
  while (std::getline(ss, item, ',')) {
    item.erase(0, item.find_first_not_of(" \t"));
    item.erase(item.find_last_not_of(" \t") + 1);
    if (item.empty()) continue;
    if (item.find('=') != std::string::npos && !out.empty())
      out.back() += "," + item;
    else
      out.push_back(item);
  }
  return out;
}

}  // namespace thinwire::bench
