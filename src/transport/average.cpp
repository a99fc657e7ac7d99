#include "transport/average.hpp"

#include "transport/communicator_state.hpp"
#include "transport/mpi_transport.hpp"

namespace thinwire::detail {

void allreduce_average_f32(Transport& t, float* data, std::size_t count) {
  if (auto* guarded = dynamic_cast<GuardedTransport*>(&t)) {
    guarded->average_f32(data, count);
    return;
  }
  if (auto* mpi = dynamic_cast<MpiTransport*>(&t)) {
    mpi->average_f32(data, count);
    return;
  }
  t.allreduce(data, count, ElementType::f32, ReduceOp::sum);
  if (t.size() > 1) divide_f32(data, data, count, static_cast<float>(t.size()));
}

}  // namespace thinwire::detail
