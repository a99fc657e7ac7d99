#include "common/env.hpp"

#include <charconv>
#include <cmath>
#include <cstdlib>

#include "common/fail.hpp"

namespace thinwire::detail {

std::string env_string(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::string(v) : fallback;
}

double env_number(const char* name, double fallback, const char* unit) {
  const char* v = std::getenv(name);
  if (!v || !*v) return fallback;
  double x = 0;
  const char* end = v + std::char_traits<char>::length(v);
  auto [ptr, ec] = std::from_chars(v, end, x);
  if (ec != std::errc() || ptr != end || !std::isfinite(x) || x < 0)
    fail_with(ErrorCode::invalid_argument, "environment", -1, name, "='", v,
              "' is not a number of ", unit, " >= 0");
  return x;
}

double env_seconds(const char* name, double fallback) {
  return env_number(name, fallback, "seconds");
}

double collective_timeout_s() {
  return env_seconds("THINWIRE_TIMEOUT_S", kDefaultTimeoutS);
}

}  // namespace thinwire::detail
