// A running Reducer's steps touch no memory they did not touch before (run under mpiexec -n 2,
// 3 and 4, CTest mpi_np*). A step that allocated and freed large buffers would map fresh pages
// and fault them in on every step: page faults cost a step time on any machine, and on some VMs
// unmapping memory slows the process's next accesses to all of its memory ("The EPYC VM's
// stalls" in bench/results/scaling/HISTORY.md). A minor page fault is the observable: memory the
// process already has costs none.
#include <gtest/gtest.h>
#include <mpi.h>
#include <sys/resource.h>

#include <cctype>
#include <cstdlib>  // defines __GLIBC__ with glibc
#include <string>
#include <vector>

#include "test_support.hpp"

#if defined(__GLIBC__)
#include <malloc.h>
#endif

// GCC names the sanitizers with macros, clang with __has_feature.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define TW_TEST_SANITIZED_ALLOCATOR 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || \
    __has_feature(memory_sanitizer)
#define TW_TEST_SANITIZED_ALLOCATOR 1
#endif
#endif

namespace thinwire::test {
namespace {

long minor_faults() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_minflt;
}

class MpiSteadyState : public ::testing::TestWithParam<std::string> {};

TEST_P(MpiSteadyState, StepsTouchNoNewMemoryOnceRunning) {
#if defined(TW_TEST_SANITIZED_ALLOCATOR)
  GTEST_SKIP() << "SKIPPED under a sanitizer: its allocator hands out fresh memory for every "
                  "allocation (quarantine), so page faults say nothing about the library";
#else
  // A 1 Mi-element matrix (4 MiB: a transient buffer of its size would fault 1024 pages a
  // step) and a vector that goes uncompressed.
  const std::vector<Layer> layers = {{"w", {1024, 1024}}, {"b", {1024}}};
#if defined(__GLIBC__)
  // glibc serves a request below 32 MiB from its heap once one of that size was freed, so a
  // 4 MiB buffer allocated and freed every step would fault only once; a layer above 32 MiB
  // would fault on every step. Fixed thresholds make every request from 128 KiB on map fresh
  // pages and unmap them when freed, so this small layer shows what a large one would.
  ASSERT_EQ(mallopt(M_MMAP_THRESHOLD, 128 << 10), 1);
  ASSERT_EQ(mallopt(M_TRIM_THRESHOLD, 128 << 10), 1);
#endif
  const int me = world_rank();
  Reducer reducer(Communicator::from_mpi(MPI_COMM_WORLD), layers, Config::parse(GetParam()));
  std::vector<std::vector<float> > g;
  auto gradients = [&](int s) {
    return std::vector<std::vector<float> >{seeded_normal(7, me, 0, s, layers[0].numel()),
                                            seeded_normal(7, me, 1, s, layers[1].numel())};
  };
  // Warm-up: first calls allocate scratch, and a buffer sized by the data (top-k's candidates)
  // may grow once more within the first steps.
  int s = 0;
  for (; s < 8; ++s) {
    g = gradients(s);
    reducer.allreduce(views(g));
  }
  constexpr int kSteps = 10;
  long faults = 0;
  for (int k = 0; k < kSteps; ++k, ++s) {
    // The gradients are made outside the counted span: only the Reducer's step is counted.
    g = gradients(s);
    const long before = minor_faults();
    reducer.allreduce(views(g));
    faults += minor_faults() - before;
    ASSERT_TRUE(identical_on_all_ranks(g, MPI_COMM_WORLD)) << GetParam() << " step " << s;
  }
  // A few faults of other threads (the MPI library's) are tolerated; one 4 MiB buffer mapped
  // and freed per step would show as about 10240.
  EXPECT_LT(faults, 64) << GetParam() << ": " << faults << " minor page faults in " << kSteps
                        << " steps on rank " << me;
#endif
}

INSTANTIATE_TEST_SUITE_P(Mpi, MpiSteadyState,
                         ::testing::Values("none", "topk:0.01", "topk:0.01,select=sampled",
                                           "topk:0.01,dgc=on,momentum=0.9", "onebit", "qsgd:4",
                                           "powersgd:4", "topk:0.01,ef=econtrol", "auto"),
                         [](const ::testing::TestParamInfo<std::string>& param) {
                           std::string name;
                           for (char c : param.param)
                             name += std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
                           return name;
                         });

}  // namespace
}  // namespace thinwire::test
