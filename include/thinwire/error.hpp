// thinwire::Error: the one exception type the library throws.
#pragma once

#include <stdexcept>
#include <string>

#include "thinwire/export.hpp"

namespace thinwire {

// Error classes. The C API maps them one to one onto tw_status codes.
enum class ErrorCode {
  invalid_argument = 1,  // bad input from this program: config string, tensor sizes, payload bytes
  mismatch = 2,          // ranks disagree: layers, shapes, dtypes, specs, step counters
  timeout = 3,           // a collective did not complete within THINWIRE_TIMEOUT_S
  transport_error = 4,   // MPI/NCCL reported a failure, or the communicator is broken
  unsupported = 5,       // a valid request this build or machine cannot serve
  internal = 6,          // a bug in thinwire
};

THINWIRE_API const char* to_string(ErrorCode code);

// Thrown for every failure. what() reads
//   "thinwire <component> error [rank R]: <what happened and what was expected>"
// so a log line from any rank says which layer of the library failed and where.
class THINWIRE_API Error : public std::runtime_error {
 public:
  Error(ErrorCode code, const std::string& message);
  ErrorCode code() const noexcept { return code_; }

 private:
  ErrorCode code_;
};

}  // namespace thinwire
