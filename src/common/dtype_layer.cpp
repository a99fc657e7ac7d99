// Small value types of the public API: DType names, Layer geometry.
#include <numeric>

#include "common/fail.hpp"
#include "thinwire/dtype.hpp"
#include "thinwire/layer.hpp"

namespace thinwire {

const char* to_string(DType t) {
  switch (t) {
    case DType::f32:
      return "f32";
    case DType::f16:
      return "f16";
    case DType::bf16:
      return "bf16";
  }
  return "?";
}

DType parse_dtype(const std::string& name) {
  if (name == "f32" || name == "float32") return DType::f32;
  if (name == "f16" || name == "float16") return DType::f16;
  if (name == "bf16" || name == "bfloat16") return DType::bf16;
  detail::fail_with(ErrorCode::invalid_argument, "dtype", -1, "unknown dtype '", name,
                    "'; valid: f32, f16, bf16");
}

std::size_t Layer::numel() const {
  std::size_t n = 1;
  for (std::int64_t d : shape) n *= static_cast<std::size_t>(d < 0 ? 0 : d);
  return n;
}

std::size_t Layer::rows() const {
  return shape.empty() ? 1 : static_cast<std::size_t>(shape[0] < 0 ? 0 : shape[0]);
}

std::size_t Layer::cols() const {
  const std::size_t r = rows();
  return r == 0 ? 0 : numel() / r;
}

std::string Layer::describe() const {
  std::string s = name + "[";
  for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? "," : "") + std::to_string(shape[i]);
  return s + "]";
}

}  // namespace thinwire
