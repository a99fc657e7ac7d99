// LayerState: what one layer carries from step to step on this rank.
#pragma once

#include <vector>

#include "compress/onebit_error_memory.hpp"

namespace thinwire::detail {

struct LayerState {
  std::vector<float> error;         // e: error feedback memory (ef, econtrol)
  OnebitErrorMemory onebit_error;   // e of a 1-bit layer under ef, factored (TwoPhase)
  std::vector<float> h;             // EControl: this rank's estimate h
  std::vector<float> global;        // EControl: H, the running sum of averaged increments
  std::vector<float> server_error;  // two-phase: error of the chunk this rank serves
  std::vector<float> q;             // PowerSGD: warm-start factor Q (cols x rank)
  bool econtrol_started = false;    // EControl's first step (h = g, sent dense) is done
  // DGC (dgc=on): the velocity u, this rank's on the topk route, the averaged one on the
  // dense route (see reducer/dgc.hpp).
  std::vector<float> momentum;

  // Scratch, not state: the f32 copy of an f16/bf16 gradient, EControl's input.
  std::vector<float> gradient32;
  std::vector<float> input;
};

}  // namespace thinwire::detail
