// The first NaN or infinity in a gradient tensor, for the nan= policy.
#pragma once

#include <cstddef>

#include "thinwire/tensor_view.hpp"

namespace thinwire::detail {

constexpr std::size_t kAllFinite = static_cast<std::size_t>(-1);

// Index of the first non-finite element of a host tensor, or kAllFinite. One read pass,
// exponent bits only (no floating-point compares), blocks tested with OR-reductions.
std::size_t first_non_finite(const TensorView& v);

}  // namespace thinwire::detail
