// Provenance for benchmark JSON: the commit, the machine and the command that produced it.
#pragma once

#include <nlohmann/json.hpp>

namespace thinwire::bench {

// {"commit", "dirty", "host", "cpu", "cores", "command", "date_utc", "compiler"}
nlohmann::json provenance(int argc, char** argv);

}  // namespace thinwire::bench
