// The MPI benchmark programs' check of --json before they run: an unwritable path fails at
// once, on every rank, not after the whole benchmark.
#pragma once

#include <mpi.h>

#include <fstream>
#include <iostream>
#include <string>

namespace thinwire::bench {

// Whether rank 0 of `comm` can write `path` (empty: nothing to write), agreed on every rank; on
// rank 0 a "PROGRAM: --json: cannot write PATH" line when not. Opened for appending, so that an
// existing file is left as it is until the results replace it.
inline bool json_path_writable(const std::string& path, const char* program, MPI_Comm comm) {
  if (path.empty()) return true;
  int rank = 0, ok = 1;
  MPI_Comm_rank(comm, &rank);
  if (rank == 0) ok = std::ofstream(path, std::ios::app) ? 1 : 0;
  MPI_Bcast(&ok, 1, MPI_INT, 0, comm);
  if (!ok && rank == 0) std::cerr << program << ": --json: cannot write " << path << "\n";
  return ok != 0;
}

}  // namespace thinwire::bench
