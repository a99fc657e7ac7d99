// Helpers shared by the tests: seeded inputs that any rank can regenerate, and the check
// that every rank holds identical bits.
#pragma once

#include <mpi.h>

#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "thinwire/thinwire.hpp"

namespace thinwire::test {

// N(0, scale^2) numbers, a pure function of (seed, rank, layer, step): every rank can
// regenerate every other rank's input for a one-process reference.
std::vector<float> seeded_normal(std::uint64_t seed, int rank, std::size_t layer,
                                 std::uint64_t step, std::size_t n, float scale = 1.0f);

// True on every rank iff all ranks of `comm` hold exactly the same bytes.
bool identical_on_all_ranks(const void* data, std::size_t bytes, MPI_Comm comm);
bool identical_on_all_ranks(const std::vector<std::vector<float>>& tensors, MPI_Comm comm);

// This process's rank and the number of ranks in MPI_COMM_WORLD.
int world_rank();
int world_size();

std::vector<TensorView> views(std::vector<std::vector<float>>& tensors);

// ||a - b|| / ||b|| (0 when both are empty or zero).
double relative_error(const std::vector<float>& a, const std::vector<float>& b);
double relative_error(const std::vector<std::vector<float>>& a,
                      const std::vector<std::vector<float>>& b);

// Runs `body` and returns the thinwire::Error it threw, or nothing.
template <typename F>
std::optional<Error> error_from(F&& body) {
  try {
    body();
  } catch (const Error& e) {
    return e;
  }
  return std::nullopt;
}

// A Transport that passes every collective on to `inner`'s host transport. Tests derive from
// it and override the collective they interfere with (corrupt, delay).
class ForwardingTransport : public Transport {
 public:
  ForwardingTransport(Communicator inner, const char* name)
      : inner_(std::move(inner)), name_(name) {}
  int rank() const override { return inner_.rank(); }
  int size() const override { return inner_.size(); }
  const char* name() const override { return name_; }
  void allreduce(void* d, std::size_t c, ElementType t, ReduceOp o) override {
    inner_.host_transport().allreduce(d, c, t, o);
  }
  void allgather(const void* s, void* r, std::size_t b) override {
    inner_.host_transport().allgather(s, r, b);
  }
  void alltoall(const void* s, void* r, std::size_t b) override {
    inner_.host_transport().alltoall(s, r, b);
  }
  void broadcast(void* d, std::size_t b, int root) override {
    inner_.host_transport().broadcast(d, b, root);
  }
  void barrier() override { inner_.host_transport().barrier(); }

 private:
  Communicator inner_;
  const char* name_;
};

// Sets (or, with nullptr, unsets) the environment variable `name` for the scope and restores
// its previous value.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = std::string(old);
    if (value)
      setenv(name, value, 1);
    else
      unsetenv(name);
  }
  ~ScopedEnv() {
    if (old_)
      setenv(name_.c_str(), old_->c_str(), 1);
    else
      unsetenv(name_.c_str());
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  std::string name_;
  std::optional<std::string> old_;
};

}  // namespace thinwire::test
