// What a Reducer did: bytes, errors and time, per layer and in total.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "thinwire/export.hpp"

namespace thinwire {

// Byte counts are what this rank puts on the wire, summed over the steps since construction
// (or reset_stats()), for ring/pairwise collectives: allreduce of B bytes sends
// 2(P-1)/P*B, allgather and alltoall of b bytes per block send (P-1)*b. bytes_dense is what
// a dense f32 ring allreduce of the same layers would have sent.
struct LayerStats {
  std::string name;
  std::string spec;   // the spec in force at the last step (canonical form)
  std::string route;  // how the last step moved it: dense, topk, onebit, qsgd, powersgd
  std::size_t numel = 0;
  std::uint64_t bytes_sent = 0;
  std::uint64_t bytes_dense = 0;
  // ||x - C(x)||^2 of what this rank transmitted (x after error feedback), summed over steps,
  // and the same for the last step alone; ||x||^2 likewise, to form relative errors.
  double sq_error = 0.0;
  double sq_norm = 0.0;
  double last_sq_error = 0.0;
  double last_sq_norm = 0.0;

  double compression_ratio() const {
    return bytes_sent ? static_cast<double>(bytes_dense) / static_cast<double>(bytes_sent) : 1.0;
  }
};

struct Stats {
  std::uint64_t steps = 0;
  std::uint64_t skipped_steps = 0;  // steps dropped on every rank by nan=skip
  std::uint64_t bytes_sent = 0;     // all layers plus thinwire's per-step control exchange
  std::uint64_t bytes_dense = 0;
  // Non-finite check, error feedback, selection, quantisation, packing.
  double seconds_encode = 0.0;
  double seconds_comm = 0.0;    // inside transport calls
  double seconds_decode = 0.0;  // unpacking, averaging, writing results
  double seconds_total = 0.0;   // wall time inside allreduce()
  std::vector<LayerStats> layers;

  double compression_ratio() const {
    return bytes_sent ? static_cast<double>(bytes_dense) / static_cast<double>(bytes_sent) : 1.0;
  }
  THINWIRE_API std::string to_json() const;
};

}  // namespace thinwire
