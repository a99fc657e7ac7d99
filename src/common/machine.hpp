// Which machine this process runs on, for finding the ranks that share its cores.
#pragma once

#include <string>

namespace thinwire::detail {

// The running kernel's boot id (/proc/sys/kernel/random/boot_id): the same for every process
// on one machine, also across network and UTS namespaces and containers (the emulated
// cluster gives each host its own hostname, yet its ranks share this machine's cores). Where
// it cannot be read, the hostname.
std::string machine_id();

}  // namespace thinwire::detail
