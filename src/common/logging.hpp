// THINWIRE_DEBUG=WARN|INFO|TRACE: log lines to stderr prefixed with host:rank, as NCCL_DEBUG.
#pragma once

#include <string>

#include "common/strcat.hpp"

namespace thinwire::detail {

enum class LogLevel { off = 0, warn = 1, info = 2, trace = 3 };

// Read once from THINWIRE_DEBUG; an unknown value logs a warning and means WARN.
LogLevel log_level();
void log_line(LogLevel level, const std::string& message);

}  // namespace thinwire::detail

// Arguments are only evaluated when the level is enabled.
#define TW_LOG(level, ...)                                                      \
  do {                                                                          \
    if (::thinwire::detail::log_level() >= ::thinwire::detail::LogLevel::level) \
      ::thinwire::detail::log_line(::thinwire::detail::LogLevel::level,         \
                                   ::thinwire::detail::cat(__VA_ARGS__));       \
  } while (0)
