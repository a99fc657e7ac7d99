#include "common/logging.hpp"

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "common/fail.hpp"

namespace thinwire::detail {

namespace {
const char* level_name(LogLevel level) {
  switch (level) {
    case LogLevel::warn:
      return "WARN";
    case LogLevel::info:
      return "INFO";
    case LogLevel::trace:
      return "TRACE";
    default:
      return "";
  }
}
}  // namespace

LogLevel log_level() {
  static const LogLevel level = [] {
    const char* value = std::getenv("THINWIRE_DEBUG");
    if (!value || !*value) return LogLevel::off;
    if (!std::strcmp(value, "WARN")) return LogLevel::warn;
    if (!std::strcmp(value, "INFO")) return LogLevel::info;
    if (!std::strcmp(value, "TRACE")) return LogLevel::trace;
    std::fprintf(
        stderr,
        "%s:%d thinwire WARN THINWIRE_DEBUG=%s is not one of WARN, INFO, TRACE; using WARN\n",
        host_name().c_str(), process_rank(), value);
    return LogLevel::warn;
  }();
  return level;
}

void log_line(LogLevel level, const std::string& message) {
  // One fprintf per line so that lines of different ranks do not interleave mid-line.
  std::fprintf(stderr, "%s:%d thinwire %s %s\n", host_name().c_str(), process_rank(),
               level_name(level), message.c_str());
}

}  // namespace thinwire::detail
