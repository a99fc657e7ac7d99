#include "common/machine.hpp"

#include <fstream>

#include <unistd.h>

namespace thinwire::detail {

std::string machine_id() {
  std::string id;
  if (std::ifstream f("/proc/sys/kernel/random/boot_id"); f && std::getline(f, id) && !id.empty())
    return "boot:" + id;
  char name[256] = {};
  if (gethostname(name, sizeof name - 1) != 0) return "host:?";
  return std::string("host:") + name;
}

}  // namespace thinwire::detail
