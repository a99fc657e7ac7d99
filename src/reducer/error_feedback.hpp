// Error feedback around an algorithm's encode and decode, per DESIGN.md section 3:
//   ef:        x = g + e; transmit C(x); e <- x - C(x)
//   econtrol:  D = C(eta e + g - h); e <- e + g - h - D; h <- h + D; H <- H + mean(D)
// Algorithms call prepare_input() before encoding, after_encode() once the residual
// x - C(x) is in x (and g still holds the gradient), and finish() once the average is in g.
#pragma once

#include "reducer/step.hpp"

namespace thinwire::detail {

// e[i] += g[i]: classic error feedback's x = g + e, in the error memory.
void add_error_feedback(float* e, const float* g, std::size_t n);

// The layer's error memory e (ef), as a plain array of n floats (zero at first).
float* error_memory(StepLayer& sl);

void prepare_input(StepLayer& sl);
void after_encode(StepLayer& sl);
// EControl when the rank's own decoded increment D is known explicitly (PowerSGD): x still
// holds the input, delta holds D.
void after_encode_with_delta(StepLayer& sl, const float* delta);
void finish(StepLayer& sl);

}  // namespace thinwire::detail
