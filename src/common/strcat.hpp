// cat(a, b, ...): concatenate anything streamable into a std::string.
#pragma once

#include <sstream>
#include <string>
#include <utility>

namespace thinwire::detail {

template <typename... Args>
std::string cat(Args&&... args) {
  std::ostringstream out;
  (out << ... << std::forward<Args>(args));
  return out.str();
}

}  // namespace thinwire::detail
