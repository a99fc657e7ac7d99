// The CPU emulation of kernels/convert.cu: the same common/half.hpp functions in a loop.
#include "common/half.hpp"
#include "launch.hpp"

namespace thinwire::kernels {

std::string half_to_float(const std::uint16_t* from16, float* to, std::size_t n, bool bf16,
                          void*) {
  for (std::size_t i = 0; i < n; ++i)
    to[i] = bf16 ? detail::bf16_to_f32(from16[i]) : detail::f16_to_f32(from16[i]);
  return {};
}

std::string float_to_half(const float* from, std::uint16_t* to16, std::size_t n, bool bf16,
                          void*) {
  for (std::size_t i = 0; i < n; ++i)
    to16[i] = bf16 ? detail::f32_to_bf16(from[i]) : detail::f32_to_f16(from[i]);
  return {};
}

}  // namespace thinwire::kernels
