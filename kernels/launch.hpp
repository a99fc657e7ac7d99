// Host launchers of thinwire's CUDA kernels. src/ includes only this header; it carries no
// CUDA types (streams are passed as void*, i.e. cudaStream_t), and every launcher is
// asynchronous on the given stream and reports launch errors through its return value.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace thinwire::kernels {

// Number of usable CUDA devices; 0 with the reason in *why when there are none (no driver,
// no device). Never throws.
int device_count(std::string* why);

// dtype conversion (f16/bf16 <-> f32) with the same rounding as the host backend.
// `from16`/`to16` are uint16 bit patterns; bf16 selects bfloat16 instead of IEEE half.
// Return an empty string on success, else the CUDA error.
std::string half_to_float(const std::uint16_t* from16, float* to, std::size_t n, bool bf16,
                          void* stream);
std::string float_to_half(const float* from, std::uint16_t* to16, std::size_t n, bool bf16,
                          void* stream);

}  // namespace thinwire::kernels
