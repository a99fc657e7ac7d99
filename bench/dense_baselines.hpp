// Dense allreduce baselines that the allreduce benchmark measures in the same run as the
// compressed methods: MPI_Allreduce with the MPI library's default algorithm choice and, where
// Open MPI lets a program force it at run time (MPI_T control variables), Open MPI's ring.
// A baseline for device tensors (ncclAllReduce) belongs here too once thinwire has its NCCL
// transport; the benchmark only sees the DenseBaseline interface.
#pragma once

#include <mpi.h>

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

namespace thinwire::bench {

class DenseBaseline {
 public:
  virtual ~DenseBaseline() = default;
  // How the JSON and the table name it, e.g. "MPI_Allreduce(ring)".
  virtual const std::string& name() const = 0;
  // Collective: in-place f32 sum of `n` elements over all ranks.
  virtual void allreduce(float* data, std::size_t n) = 0;
};

// The MPI baselines available in this process, each on a communicator of its own duplicated
// from `world`. `notes` receives one line per baseline that could not be set up and why.
// Open MPI only honours a forced algorithm when coll_tuned_use_dynamic_rules was on at
// MPI_Init: call enable_forced_algorithms() before MPI_Init for the ring to be available.
std::vector<std::unique_ptr<DenseBaseline>> make_mpi_baselines(MPI_Comm world,
                                                               std::vector<std::string>* notes);

// Before MPI_Init: lets Open MPI's tuned collectives accept forced algorithms
// (OMPI_MCA_coll_tuned_use_dynamic_rules=1, unless the environment already says otherwise).
// With no algorithm forced, Open MPI's choices stay its defaults.
void enable_forced_algorithms();

}  // namespace thinwire::bench
