// What the benchmark programs share about their JSON: provenance (the commit, the machine and the
// command that produced it) and the wording the cost model reads back.
#pragma once

#include <nlohmann/json.hpp>

namespace thinwire::bench {

// {"commit", "dirty" (the source tree when the program runs), "build": {"commit", "dirty"} (the
// tree it was built from), "host", "cpu", "cores", "command", "date_utc", "compiler"}
nlohmann::json provenance(int argc, char** argv);

// In thinwire-bench-allreduce's compute_rates_probe "when": its kernel samples are means of cold
// calls. thinwire-cost-model --validate takes a result's own size's rates only from such runs
// (older runs' single calls were too noisy for that).
inline constexpr const char* kProbeSamplesAreMeans = "mean of cold calls";

}  // namespace thinwire::bench
