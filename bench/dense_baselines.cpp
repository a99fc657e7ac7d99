#include "dense_baselines.hpp"

#include <algorithm>
#include <climits>
#include <cstdlib>

namespace thinwire::bench {

namespace {

class MpiAllreduce final : public DenseBaseline {
 public:
  MpiAllreduce(MPI_Comm world, std::string name) : name_(std::move(name)) {
    MPI_Comm_dup(world, &comm_);
  }
  ~MpiAllreduce() override {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) MPI_Comm_free(&comm_);
  }
  const std::string& name() const override { return name_; }
  void allreduce(float* data, std::size_t n) override {
    for (std::size_t off = 0; off < n;) {
      const int count = static_cast<int>(std::min<std::size_t>(n - off, INT_MAX / 4));
      MPI_Allreduce(MPI_IN_PLACE, data + off, count, MPI_FLOAT, MPI_SUM, comm_);
      off += static_cast<std::size_t>(count);
    }
  }

 private:
  std::string name_;
  MPI_Comm comm_ = MPI_COMM_NULL;
};

// An integer MPI_T control variable (Open MPI exposes its MCA parameters this way).
class ControlVariable {
 public:
  explicit ControlVariable(const char* name) {
    int provided = 0;
    if (MPI_T_init_thread(MPI_THREAD_SINGLE, &provided) != MPI_SUCCESS) return;
    initialized_ = true;
    int index = 0, count = 0;
    if (MPI_T_cvar_get_index(name, &index) != MPI_SUCCESS) return;
    if (MPI_T_cvar_handle_alloc(index, nullptr, &handle_, &count) != MPI_SUCCESS || count != 1)
      return;
    found_ = true;
  }
  ~ControlVariable() {
    if (found_) MPI_T_cvar_handle_free(&handle_);
    if (initialized_) MPI_T_finalize();
  }
  bool found() const { return found_; }
  bool read(int* value) const { return found_ && MPI_T_cvar_read(handle_, value) == MPI_SUCCESS; }
  bool write(int value) { return found_ && MPI_T_cvar_write(handle_, &value) == MPI_SUCCESS; }

 private:
  bool initialized_ = false, found_ = false;
  MPI_T_cvar_handle handle_{};
};

}  // namespace

void enable_forced_algorithms() {
  setenv("OMPI_MCA_coll_tuned_use_dynamic_rules", "1", /*overwrite=*/0);
}

std::vector<std::unique_ptr<DenseBaseline>> make_mpi_baselines(MPI_Comm world,
                                                               std::vector<std::string>* notes) {
  std::vector<std::unique_ptr<DenseBaseline>> out;
  // The default first, before any algorithm is forced: a communicator takes Open MPI's
  // forced-algorithm settings when it is created.
  out.push_back(std::make_unique<MpiAllreduce>(world, "MPI_Allreduce(default)"));

  ControlVariable dynamic("coll_tuned_use_dynamic_rules");
  ControlVariable algorithm("coll_tuned_allreduce_algorithm");
  int dynamic_on = 0, previous = 0;
  if (!algorithm.found()) {
    notes->push_back(
        "MPI_Allreduce(ring): not measured: this MPI has no coll_tuned_allreduce_algorithm "
        "control variable (not Open MPI's tuned component)");
  } else if (!dynamic.read(&dynamic_on) || !dynamic_on) {
    notes->push_back(
        "MPI_Allreduce(ring): not measured: Open MPI ignores forced algorithms unless "
        "coll_tuned_use_dynamic_rules is on at MPI_Init (OMPI_MCA_coll_tuned_use_dynamic_rules=1)");
  } else if (!algorithm.read(&previous) || !algorithm.write(4)) {
    notes->push_back(
        "MPI_Allreduce(ring): not measured: coll_tuned_allreduce_algorithm is not writable");
  } else {
    // Algorithm 4 of Open MPI's tuned allreduce is the ring.
    out.push_back(std::make_unique<MpiAllreduce>(world, "MPI_Allreduce(ring)"));
    algorithm.write(previous);
  }
  return out;
}

}  // namespace thinwire::bench
