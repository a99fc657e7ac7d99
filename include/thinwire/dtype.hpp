// Element types of gradient tensors. Computation and error memories are always f32.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "thinwire/export.hpp"

namespace thinwire {

enum class DType : std::uint8_t { f32 = 0, f16 = 1, bf16 = 2 };

constexpr std::size_t dtype_size(DType t) {
  return t == DType::f32 ? 4 : 2;
}
THINWIRE_API const char* to_string(DType t);
// Parses "f32" | "f16" | "bf16" (also "float32", "float16", "bfloat16"); throws Error otherwise.
THINWIRE_API DType parse_dtype(const std::string& name);

}  // namespace thinwire
