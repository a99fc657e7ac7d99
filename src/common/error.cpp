#include <mpi.h>
#include <unistd.h>

#include "common/fail.hpp"
#include "thinwire/error.hpp"

namespace thinwire {

const char* to_string(ErrorCode code) {
  switch (code) {
    case ErrorCode::invalid_argument:
      return "invalid_argument";
    case ErrorCode::mismatch:
      return "mismatch";
    case ErrorCode::timeout:
      return "timeout";
    case ErrorCode::transport_error:
      return "transport_error";
    case ErrorCode::unsupported:
      return "unsupported";
    case ErrorCode::internal:
      return "internal";
  }
  return "unknown";
}

Error::Error(ErrorCode code, const std::string& message)
    : std::runtime_error(message), code_(code) {}

namespace detail {

int process_rank() {
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (!initialized || finalized) return -1;
  int rank = -1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  return rank;
}

const std::string& host_name() {
  static const std::string name = [] {
    char buf[256] = {};
    if (gethostname(buf, sizeof buf - 1) != 0) return std::string("?");
    return std::string(buf);
  }();
  return name;
}

std::string error_message(const char* component, int rank, const std::string& message) {
  if (rank < 0) rank = process_rank();
  if (rank < 0) return cat("thinwire ", component, " error: ", message);
  return cat("thinwire ", component, " error [rank ", rank, "]: ", message);
}

void fail(ErrorCode code, const char* component, int rank, const std::string& message) {
  throw Error(code, error_message(component, rank, message));
}

}  // namespace detail
}  // namespace thinwire
