// Per-element arithmetic of 1-bit compression, shared by the host codec and the kernels.
#pragma once

#include <cstdint>

#include "common/host_device.hpp"

namespace thinwire::detail {

// sign(0) = +1 (and -0.0 counts as 0); NaN encodes as negative.
TW_HD bool onebit_sign(float x) {
  return x >= 0.0f;
}
TW_HD float onebit_value(bool positive, float scale) {
  return positive ? scale : -scale;
}

}  // namespace thinwire::detail
