// Every rank's verdict on its own THINWIRE_* settings, exchanged when a communicator is built.
// A bad setting on one rank (a typo in one node's environment) would otherwise fail that rank
// alone, before the collective that builds the communicator, and leave the others waiting for
// it until their deadline (THINWIRE_TIMEOUT_S, 300 s by default) ended in a `timeout` that
// does not say why.
#pragma once

#include <optional>

#include "thinwire/error.hpp"
#include "thinwire/transport.hpp"

namespace thinwire::detail {

// Collective over `t`: every rank passes the error its settings raised, if any. Returns when
// no rank had one; otherwise throws on every rank the error of the lowest such rank (its code,
// and its message prefixed with that rank), so that all ranks fail alike at once.
void agree_on_settings(Transport& t, const std::optional<Error>& mine);

}  // namespace thinwire::detail
