#include "device_test_support.hpp"

#include <cstdio>

namespace thinwire::test {

bool device_available(std::string* why) {
  static int count = -1;
  static std::string reason;
  if (count < 0) {
    count = kernels::device_count(&reason);
    if (count == 0)
      std::fprintf(stderr,
                   "\n*** thinwire device tests: NO USABLE CUDA DEVICE, SKIPPING: %s ***\n"
                   "*** (the CUDA kernels were built but not run on this machine) ***\n\n",
                   reason.c_str());
    else
      kernels::set_device(0);
  }
  *why = reason;
  return count > 0;
}

const char* backend_name() {
  return kernels::emulated() ? "cpu-emulation" : "cuda";
}

}  // namespace thinwire::test
