// MpiTransport: thinwire's collectives on host memory over an MPI communicator.
//
// Every wait is a polling loop with a deadline (THINWIRE_TIMEOUT_S), so a dead or stuck
// peer ends in Error(timeout) rather than a hang. Large f32 sums use a ring of nonblocking
// point-to-point messages: as fast as OpenMPI's tuned ring here, and a timeout can then name
// the neighbour that never answered. Everything else uses MPI's nonblocking collectives.
#pragma once

#include <mpi.h>

#include <cstddef>
#include <vector>

#include "thinwire/transport.hpp"

namespace thinwire::detail {

class MpiTransport final : public Transport {
 public:
  // Duplicates `comm`; the duplicate is freed with the transport (unless MPI is finalized).
  // timeout_s <= 0 waits forever with MPI's blocking calls.
  MpiTransport(MPI_Comm comm, double timeout_s);
  ~MpiTransport() override;
  MpiTransport(const MpiTransport&) = delete;
  MpiTransport& operator=(const MpiTransport&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  const char* name() const override { return "mpi"; }

  void allreduce(void* data, std::size_t count, ElementType type, ReduceOp op) override;
  void allgather(const void* send, void* recv, std::size_t bytes) override;
  void alltoall(const void* send, void* recv, std::size_t bytes) override;
  void broadcast(void* data, std::size_t bytes, int root) override;
  void barrier() override;

  MPI_Comm comm() const { return comm_; }
  double timeout_s() const { return timeout_s_; }

 private:
  // Waits for all requests, polling, until the deadline; on expiry throws Error(timeout)
  // with `what` and, when known, the peer that was awaited.
  void wait_all(MPI_Request* requests, int n, const char* what, std::size_t bytes, int peer);
  void check(int rc, const char* what) const;
  void ring_sum_f32(float* data, std::size_t count);

  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0;
  int size_ = 1;
  double timeout_s_ = 0;
  std::vector<float> ring_scratch_;
};

}  // namespace thinwire::detail
