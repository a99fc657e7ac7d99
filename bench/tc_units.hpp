// tc's units, as the emulated cluster's launcher passes them to tc (cluster/emulate/run.sh)
// and records them for the benchmark: rates ("200mbit") and sizes ("64kb").
#pragma once

#include <string>

namespace thinwire::bench {

// A tc rate ("200mbit", "1gbit", "12500kbps") in bits per second, > 0; else invalid_argument.
double parse_rate_bits(const std::string& text);

// A tc size ("131072", "64kb", "1mb", "512kbit") in bytes (tc's k and m are 1024 and 1024^2);
// else invalid_argument.
double parse_size_bytes(const std::string& text);

}  // namespace thinwire::bench
