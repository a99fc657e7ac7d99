// Communicator: rank, size and the transports of one group of ranks.
#pragma once

#include <memory>
#include <string>

#include <mpi.h>

#include "thinwire/export.hpp"
#include "thinwire/transport.hpp"

namespace thinwire {

namespace detail {
struct CommunicatorState;
}

// Cheap to copy: copies share one group. Not thread-safe: use one Communicator (and the
// Reducers built on it) from one thread at a time, as with an MPI communicator.
class THINWIRE_API Communicator {
 public:
  // Collective over `comm`. thinwire duplicates the communicator, so its traffic never
  // matches the program's own messages. MPI must be initialised and stay so while any
  // copy of the Communicator is alive.
  static Communicator from_mpi(MPI_Comm comm);
  // A group whose collectives a framework supplies.
  static Communicator from_transport(std::shared_ptr<Transport> transport);

  int rank() const;
  int size() const;
  // "host:rank", as used in log lines and error messages.
  std::string where() const;

  // The transport for host memory.
  Transport& host_transport() const;

  // True after a collective failed or timed out: every later call throws at once, because
  // the ranks can no longer be assumed to be in step.
  bool broken() const;

  std::shared_ptr<detail::CommunicatorState> state() const { return state_; }

 private:
  explicit Communicator(std::shared_ptr<detail::CommunicatorState> state);
  std::shared_ptr<detail::CommunicatorState> state_;
};

}  // namespace thinwire
