// Deep Gradient Compression's extras around top-k (Lin et al., ICLR 2018):
//
//   momentum correction   u <- m u + g;  v <- v + u;  send top-k of v      (v is the error
//                         memory e of classic error feedback, so x = e + u is what top-k sees)
//   factor masking        u and v are zeroed where an entry was sent (v by the residual)
//   local clipping        before any of this, each rank scales its gradient so that its
//                         contribution g/P to the average has norm <= clip * P^-1/2, i.e.
//                         ||g|| <= clip * sqrt(P); the norm is over the whole model (every
//                         layer whose spec has this clip value), see clip_gradients()
//   density warm-up       the first dgc_warmup steps use larger densities, decreasing
//                         exponentially towards the target (dgc_warmup_density())
//
// With dgc=on the Reducer's result is the averaged velocity: the optimizer applies it as
// w <- w - lr * result and must not add momentum of its own. Layers that the spec sends
// dense (below min_numel, warmup= steps) get ordinary momentum on the average instead,
// U <- m U + mean(g), identical on every rank, so that the same rule holds for every layer.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace thinwire::detail {

struct StepLayer;

// The number of stages of the density warm-up, and the density of step `step`: the
// warm-up's `warmup_steps` steps are split into kDgcWarmupStages equal stages; stage j
// (0-based) uses target^((j+1)/(kDgcWarmupStages+1)), after that the target. For a target of
// 0.001 this is DGC's schedule: 25.1 %, 6.3 %, 1.58 %, 0.40 %, then 0.1 %.
constexpr int kDgcWarmupStages = 4;
double dgc_warmup_density(double target, std::size_t warmup_steps, std::uint64_t step);

// u <- m u + g (u sized n, zero at first), then returns u.
float* dgc_momentum(std::vector<float>& u, const float* g, float m, std::size_t n);

// The dense route under dgc=on: U <- m U + g (g the average, so U is the same on every
// rank), then g <- U.
void dgc_dense_momentum(StepLayer& sl);

// Momentum factor masking: u[i] = 0 for the k indices (little-endian uint32) of a payload.
void dgc_mask(float* u, const std::uint8_t* indices_le, std::size_t k);

// Local gradient clipping of this step's f32 gradients: layers are grouped by their
// spec's clip value c > 0; each group's gradients are scaled by min(1, c sqrt(P) / norm),
// norm being the L2 norm of the group's gradients concatenated. A non-finite norm
// (nan=propagate) leaves the gradients as they are.
void clip_gradients(const std::vector<StepLayer*>& layers, int ranks);

}  // namespace thinwire::detail
