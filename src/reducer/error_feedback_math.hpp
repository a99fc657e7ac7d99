// Per-element formulas of error feedback and EControl, shared by the host pipeline
// (reducer/error_feedback.cpp) and the CUDA kernels (kernels/elementwise.cu), so that both
// round the same way.
#pragma once

#include "common/host_device.hpp"

namespace thinwire::detail {

// EControl's compressor input: x = eta e + g - h.
TW_HD float econtrol_input_of(float e, float g, float h, float eta) {
  return eta * e + g - h;
}

// EControl after encoding x into D with r = x - D (x = eta e + g - h):
//   h + D = eta e + g - r,   e + g - h - D = (1 - eta) e + r.
struct EcontrolNext {
  float e, h;
};
TW_HD EcontrolNext econtrol_next(float e, float g, float r, float eta) {
  return EcontrolNext{(1.0f - eta) * e + r, eta * e + g - r};
}

// EControl with this rank's increment delta (PowerSGD): h += delta; e = (1 - eta) e + (x - delta).
TW_HD EcontrolNext econtrol_next_delta(float e, float h, float x, float delta, float eta) {
  return EcontrolNext{(1.0f - eta) * e + (x - delta), h + delta};
}

}  // namespace thinwire::detail
