#include "transport/env_verdict.hpp"

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "common/fail.hpp"

namespace thinwire::detail {

namespace {

// Per rank: the error code (0: none), then the start of its message, NUL-terminated.
constexpr std::size_t kVerdictBytes = 512;

}  // namespace

void agree_on_settings(Transport& t, const std::optional<Error>& mine) {
  const int p = t.size();
  std::vector<char> send(kVerdictBytes, 0);
  if (mine) {
    send[0] = static_cast<char>(mine->code());
    const std::string text = mine->what();
    std::memcpy(send.data() + 1, text.data(), std::min(text.size(), kVerdictBytes - 2));
  }
  std::vector<char> all(kVerdictBytes * static_cast<std::size_t>(p));
  t.allgather(send.data(), all.data(), kVerdictBytes);
  for (int r = 0; r < p; ++r) {
    const char* verdict = all.data() + kVerdictBytes * static_cast<std::size_t>(r);
    if (verdict[0] == 0) continue;
    // A block from a rank of another build, or a corrupt one, still fails every rank.
    const int code = static_cast<unsigned char>(verdict[0]);
    const bool known = code >= static_cast<int>(ErrorCode::invalid_argument) &&
                       code <= static_cast<int>(ErrorCode::internal);
    fail_with(known ? static_cast<ErrorCode>(code) : ErrorCode::internal, "communicator", t.rank(),
              "rank ", r, "'s environment is not usable, so no rank builds the communicator: ",
              std::string(verdict + 1, strnlen(verdict + 1, kVerdictBytes - 1)));
  }
}

}  // namespace thinwire::detail
