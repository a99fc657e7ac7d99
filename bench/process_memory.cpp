#include "process_memory.hpp"

#include <cstdlib>  // defines __GLIBC__ where the C library is glibc

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace thinwire::bench {

const char* keep_freed_memory_mapped() {
#if defined(__GLIBC__)
  // mallopt(3): M_MMAP_MAX 0 serves every request from the heap; M_TRIM_THRESHOLD -1 never
  // gives the heap's free top back. Both return 1 on success.
  if (mallopt(M_MMAP_MAX, 0) == 1 && mallopt(M_TRIM_THRESHOLD, -1) == 1)
    return "freed memory stays mapped (glibc mallopt: M_MMAP_MAX 0, M_TRIM_THRESHOLD -1), so "
           "that buffers freed between timed calls do not slow the next call on VMs where "
           "unmapping does";
#endif
  return "";
}

}  // namespace thinwire::bench
