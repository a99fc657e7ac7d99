// fail(): throw a thinwire::Error whose message names the component and the rank.
#pragma once

#include <string>

#include "common/strcat.hpp"
#include "thinwire/error.hpp"

namespace thinwire::detail {

// The rank of this process in MPI_COMM_WORLD, or -1 before MPI_Init / after MPI_Finalize.
int process_rank();
// The host name, for log lines and messages.
const std::string& host_name();

// Builds "thinwire <component> error [rank R]: message". rank < 0 means process_rank().
std::string error_message(const char* component, int rank, const std::string& message);

[[noreturn]] void fail(ErrorCode code, const char* component, int rank, const std::string& message);

template <typename... Args>
[[noreturn]] void fail_with(ErrorCode code, const char* component, int rank, Args&&... parts) {
  fail(code, component, rank, cat(std::forward<Args>(parts)...));
}

}  // namespace thinwire::detail
