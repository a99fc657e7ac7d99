// Environment variables, read the NCCL way: THINWIRE_* overrides, checked and named in errors.
#pragma once

#include <string>

namespace thinwire::detail {

// The value, or `fallback` when unset or empty.
std::string env_string(const char* name, const std::string& fallback);
// A number >= 0; throws Error naming the variable and `unit` on anything else.
double env_number(const char* name, double fallback, const char* unit);
double env_seconds(const char* name, double fallback);

// THINWIRE_TIMEOUT_S: seconds a collective may take (kDefaultTimeoutS when unset); 0 disables
// the deadline.
inline constexpr double kDefaultTimeoutS = 300.0;
double collective_timeout_s();

}  // namespace thinwire::detail
