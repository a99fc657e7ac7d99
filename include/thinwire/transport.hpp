// Transport: the collectives thinwire needs, on raw memory. MpiTransport (host memory) ships
// with the library; a framework can supply its own (e.g. over its process group) by
// implementing this interface and building a Communicator with Communicator::from_transport.
#pragma once

#include <cstddef>
#include <cstdint>

#include "thinwire/export.hpp"

namespace thinwire {

enum class ElementType : std::uint8_t { f32 = 0, f64 = 1, i64 = 2, u64 = 3 };
enum class ReduceOp : std::uint8_t { sum = 0, min = 1, max = 2 };

constexpr std::size_t element_size(ElementType t) {
  return t == ElementType::f32 ? 4 : 8;
}

// All calls are collective: every rank of the group calls them in the same order with the
// same sizes. Buffers are in the transport's memory space (host for MpiTransport).
// Implementations report failures (including timeouts) by throwing thinwire::Error.
//
// Every rank must end with identical bits: an allreduce must deliver the same reduced value
// to all ranks (ring and tree algorithms do; per-rank local reductions in different orders
// do not).
class THINWIRE_API Transport {
 public:
  virtual ~Transport();

  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual const char* name() const = 0;

  // In-place reduction of `count` elements.
  virtual void allreduce(void* data, std::size_t count, ElementType type, ReduceOp op) = 0;
  // recv holds size() blocks of `bytes` each, block r from rank r.
  virtual void allgather(const void* send, void* recv, std::size_t bytes) = 0;
  // send and recv hold size() blocks of `bytes` each; block j of send goes to rank j and
  // block r of recv comes from rank r.
  virtual void alltoall(const void* send, void* recv, std::size_t bytes) = 0;
  virtual void broadcast(void* data, std::size_t bytes, int root) = 0;
  virtual void barrier() = 0;
};

}  // namespace thinwire
