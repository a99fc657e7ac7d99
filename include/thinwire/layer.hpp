// A named gradient tensor of the model: what the Reducer compresses one at a time.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "thinwire/export.hpp"

namespace thinwire {

struct Layer {
  std::string name;
  // Dimensions, outermost first. PowerSGD views the layer as a matrix with rows = shape[0]
  // and cols = the product of the rest; a 0-d (scalar) shape is one element.
  std::vector<std::int64_t> shape;

  THINWIRE_API std::size_t numel() const;
  THINWIRE_API std::size_t rows() const;
  THINWIRE_API std::size_t cols() const;
  // "fc1.weight[256,784]"
  THINWIRE_API std::string describe() const;
};

}  // namespace thinwire
