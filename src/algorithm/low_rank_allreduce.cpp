#include "algorithm/low_rank_allreduce.hpp"

#include <cstring>

#include "common/timer.hpp"
#include "compress/low_rank.hpp"
#include "reducer/error_feedback.hpp"

namespace thinwire::detail {

void LowRankAllreduce::run(const std::vector<StepLayer*>& layers, StepContext& ctx) {
  if (layers.empty()) return;
  const float fp = static_cast<float>(ctx.size);
  std::vector<std::size_t> p_off(layers.size() + 1, 0), q_off(layers.size() + 1, 0);
  for (std::size_t l = 0; l < layers.size(); ++l) {
    const LayerPlan& plan = *layers[l]->plan;
    p_off[l + 1] = p_off[l] + plan.rows * plan.rank;
    q_off[l + 1] = q_off[l] + plan.cols * plan.rank;
  }
  p_.resize(p_off.back());
  q_.resize(q_off.back());

  {
    ScopedTimer t(&ctx.times->encode);
    for (std::size_t l = 0; l < layers.size(); ++l) {
      StepLayer& sl = *layers[l];
      const LayerPlan& plan = *sl.plan;
      prepare_input(sl);
      std::vector<float>& q = sl.state->q;
      if (q.size() != plan.cols * plan.rank) {
        q.resize(plan.cols * plan.rank);
        low_rank::random_init(q.data(), plan.cols, plan.rank, plan.config.seed, sl.index, 0);
      } else {
        // Q is the same on every rank, so every rank re-draws the same columns.
        low_rank::refresh_zero_columns(q.data(), plan.cols, plan.rank, plan.config.seed, sl.index,
                                       ctx.step + 1);
      }
      low_rank::project(sl.x, plan.rows, plan.cols, q.data(), plan.rank, p_.data() + p_off[l]);
    }
  }
  {
    ScopedTimer t(&ctx.times->comm);
    ctx.transport.allreduce(p_.data(), p_.size(), ElementType::f32, ReduceOp::sum);
  }
  {
    ScopedTimer t(&ctx.times->encode);
    for (float& v : p_) v /= fp;
    for (std::size_t l = 0; l < layers.size(); ++l) {
      const LayerPlan& plan = *layers[l]->plan;
      low_rank::orthonormalize(p_.data() + p_off[l], plan.rows, plan.rank);
      low_rank::back_project(layers[l]->x, plan.rows, plan.cols, p_.data() + p_off[l], plan.rank,
                             q_.data() + q_off[l]);
    }
    q_local_ = q_;  // this rank's own Q, for EControl's local increment
  }
  {
    ScopedTimer t(&ctx.times->comm);
    ctx.transport.allreduce(q_.data(), q_.size(), ElementType::f32, ReduceOp::sum);
  }
  ScopedTimer t(&ctx.times->decode);
  for (float& v : q_) v /= fp;
  for (std::size_t l = 0; l < layers.size(); ++l) {
    StepLayer& sl = *layers[l];
    const LayerPlan& plan = *sl.plan;
    const float* p = p_.data() + p_off[l];
    const float* q = q_.data() + q_off[l];
    std::memcpy(sl.state->q.data(), q, plan.cols * plan.rank * sizeof(float));
    sl.bytes_sent = allreduce_bytes(4 * plan.rows * plan.rank, ctx.size) +
                    allreduce_bytes(4 * plan.cols * plan.rank, ctx.size);

    // M_hat = P Q^T is the output, so it goes straight into g, unless x aliases g (no error
    // feedback): x is still needed for the error statistics, so scratch first.
    float* x = sl.x;
    const bool in_place = x == sl.g;
    if (in_place) delta_.resize(sl.n);
    float* mhat = in_place ? delta_.data() : sl.g;
    low_rank::reconstruct(p, q, plan.rows, plan.cols, plan.rank, mhat);
    // One pass: the statistics and, with error feedback, e <- M - M_hat. EControl updates
    // its memories from its own increment instead.
    const bool econtrol = sl.feedback == StepFeedback::econtrol;
    low_rank::residual_update(x, mhat, sl.n, sl.want_residual && !econtrol, &sl.sq_error,
                              &sl.sq_norm);
    if (in_place) std::memcpy(sl.g, mhat, sl.n * sizeof(float));
    if (econtrol) {
      // This rank's own increment D = P Q_local^T (its mean over ranks is P Q^T): the error
      // and h updates use it, H uses the average.
      delta_.resize(sl.n);
      low_rank::reconstruct(p, q_local_.data() + q_off[l], plan.rows, plan.cols, plan.rank,
                            delta_.data());
      after_encode_with_delta(sl, delta_.data());
    }
    finish(sl);
  }
}

}  // namespace thinwire::detail
