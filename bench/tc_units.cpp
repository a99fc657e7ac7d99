#include "tc_units.hpp"

#include <cmath>
#include <map>
#include <stdexcept>
#include <utility>

namespace thinwire::bench {

namespace {

// A tc quantity: the number and its unit, or invalid_argument saying what `like` is.
std::pair<double, std::string> number_and_unit(const std::string& text, const char* like) {
  std::size_t pos = 0;
  try {
    const double v = std::stod(text, &pos);
    return {v, text.substr(pos)};
  } catch (const std::exception&) {
    throw std::invalid_argument("'" + text + "' is not " + like);
  }
}

}  // namespace

double parse_rate_bits(const std::string& text) {
  constexpr const char* kLike = "a rate like 200mbit or 1gbit";
  auto [v, unit] = number_and_unit(text, kLike);
  if (!(v > 0) || !std::isfinite(v)) throw std::invalid_argument("'" + text + "' is not " + kLike);
  double scale = 1;
  if (!unit.empty() && (unit[0] == 'k' || unit[0] == 'm' || unit[0] == 'g')) {
    scale = unit[0] == 'k' ? 1e3 : unit[0] == 'm' ? 1e6 : 1e9;
    unit = unit.substr(1);
  }
  if (unit == "bps") return v * scale * 8;
  if (unit == "bit") return v * scale;
  throw std::invalid_argument("'" + text + "' is not " + kLike);
}

double parse_size_bytes(const std::string& text) {
  constexpr const char* kLike = "a size like 131072 or 64kb";
  const auto [v, unit] = number_and_unit(text, kLike);
  const std::map<std::string, double> scale = {{"", 1},          {"b", 1},         {"k", 1024},
                                               {"kb", 1024},     {"m", 1 << 20},   {"mb", 1 << 20},
                                               {"g", 1 << 30},   {"gb", 1 << 30},  {"kbit", 128},
                                               {"mbit", 131072}, {"gbit", 1 << 27}};
  const auto it = scale.find(unit);
  if (it == scale.end()) throw std::invalid_argument("'" + text + "' is not " + kLike);
  return v * it->second;
}

}  // namespace thinwire::bench
