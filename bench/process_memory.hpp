// How a benchmark process keeps the memory it frees.
#pragma once

namespace thinwire::bench {

// Keeps memory the process frees mapped, for reuse by its next allocations (glibc: large
// allocations come from the heap instead of their own mmap, and the heap is never trimmed).
// Call first in main.
//
// Why: on some VMs unmapping memory slows the process's next accesses to all of its memory,
// with no page fault the guest sees (measured on a Firecracker sandbox VM with an AMD EPYC: a
// 64 MiB powersgd:4 step took 25 ms in a loop and 100-180 ms right after the process had mapped,
// touched and unmapped 16-64 MiB; the step after that was back at 25 ms). The benchmark frees
// such buffers between timed calls (the kernel probes, Open MPI's ring allreduce), which made
// its calls bimodal there, where a training loop that runs one method sees the fast steps. The
// cost of keeping them: the process's resident memory stays at its peak.
// Returns a note for the output, or "" where the C library has no such setting.
const char* keep_freed_memory_mapped();

}  // namespace thinwire::bench
