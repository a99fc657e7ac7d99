// Algorithm: how the layers of one route are combined across ranks in one step (Gloo style:
// a small class over a transport, owning its buffers across steps).
#pragma once

#include <vector>

#include "reducer/step.hpp"

namespace thinwire::detail {

class Algorithm {
 public:
  virtual ~Algorithm() = default;
  // Collective. Every rank passes the same layers (by index and spec) in the same order.
  // On return each layer's result is in its g, identical on every rank.
  virtual void run(const std::vector<StepLayer*>& layers, StepContext& ctx) = 0;
};

}  // namespace thinwire::detail
