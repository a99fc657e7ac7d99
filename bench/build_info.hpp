// The commit the benchmark programs were built from (bench/build_info.cmake writes the
// definitions at every build).
#pragma once

namespace thinwire::bench {

extern const char* const kBuildCommit;
// The programs' code (src, include, kernels, bench, CMakeLists.txt) had uncommitted changes.
extern const bool kBuildDirty;

}  // namespace thinwire::bench
