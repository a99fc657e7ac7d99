// Ranks must agree (DESIGN.md section 5). At construction and at every step each rank
// contributes one fixed-size control block (status, step, per-layer digest) to an
// allgather. If any rank failed locally (bad tensor, bad spec) every rank throws that
// rank's error; if ranks are out of step or their layers/specs/dtypes differ, every rank
// throws Error(mismatch) naming the first differing layer. Every rank decides from the
// same gathered bytes, so all take the same path: no rank is left waiting in a collective.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "thinwire/error.hpp"
#include "thinwire/transport.hpp"

namespace thinwire::detail {

struct LocalStatus {
  bool ok = true;
  ErrorCode code = ErrorCode::internal;
  std::string message;

  static LocalStatus failure(ErrorCode code, std::string message) {
    return {false, code, std::move(message)};
  }
};

constexpr std::size_t kControlBlockBytes = 256;

// Flags a rank can raise for everyone in the control block.
enum ControlFlag : std::uint32_t {
  kFlagSkipStep = 1u,  // a non-finite gradient under nan=skip: every rank drops the step
};

struct AgreementResult {
  std::uint64_t bytes_sent = 0;
  std::uint32_t flags = 0;  // OR over all ranks
};

// Collective. `what` names the occasion ("construction", "step"). describe(i) renders this
// rank's view of layer i for the mismatch message.
AgreementResult check_agreement(Transport& transport, const char* what, const LocalStatus& status,
                                std::uint64_t step, const std::vector<std::uint64_t>& layer_hashes,
                                const std::function<std::string(std::size_t)>& describe,
                                std::uint32_t flags = 0);

}  // namespace thinwire::detail
