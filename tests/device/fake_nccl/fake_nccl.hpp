// A stand-in for NCCL's host API (the calls NcclTransport makes), over MPI on host memory:
// with the CPU emulation of the kernels a "device" pointer is host memory, so NcclTransport's
// own code - non-blocking init, ncclInProgress polling with ncclCommGetAsyncError against the
// deadline, ncclCommAbort, refusal after an abort - runs on machines without a GPU, with
// several ranks, and with failures a real GPU cannot be made to produce on demand.
//
// Semantics: the communicator is non-blocking. Init (MPI_Comm_idup) and every collective
// (MPI_I* on the buffers) return ncclInProgress; ncclCommGetAsyncError reports ncclInProgress
// until all of them completed, then ncclSuccess. So "enqueue" and "completion" are one here:
// NcclTransport waits in check() where real NCCL would have it wait in synchronize(); both
// waits are the same polling loop against the deadline.
//
// The test hooks below make the next init or collective of this rank misbehave.
#pragma once

#include <string>

namespace thinwire::test::fake_nccl {

enum class Fault {
  none,
  init_never_completes,  // the next ncclCommInitRankConfig stays in progress forever
  async_remote_error,    // the next collective reports ncclRemoteError asynchronously
  call_fails,            // the next collective returns ncclSystemError at once
};

// Applies to the next init or collective on this rank, then clears.
void inject(Fault fault);

struct Counters {
  int inits = 0, collectives = 0, aborts = 0, finalizes = 0, destroys = 0;
  int pending_after_abort = 0;  // MPI operations an abort left running (a peer never came)
};
Counters counters();

// MPI operations abandoned by aborts that have not completed yet; drive_abandoned() tests
// them once (after the missing peer finally joined, they complete and are freed).
int abandoned();
void drive_abandoned();

}  // namespace thinwire::test::fake_nccl
