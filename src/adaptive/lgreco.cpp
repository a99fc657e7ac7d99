#include "adaptive/lgreco.hpp"

#include <algorithm>
#include <cstring>

#include "adaptive/compression_error.hpp"
#include "adaptive/knapsack.hpp"
#include "common/logging.hpp"
#include "compress/topk_codec.hpp"

namespace thinwire::detail {

namespace {

// x as this step's error feedback would form it, without changing any state.
void error_corrected_input(const StepLayer& sl, std::vector<float>& x) {
  const Config& c = sl.plan->config;
  const LayerState& s = *sl.state;
  const std::size_t n = sl.n;
  x.assign(sl.g, sl.g + n);
  if (c.ef == ErrorFeedback::econtrol) {
    if (!s.econtrol_started || s.error.size() != n || s.h.size() != n) return;
    const float eta = static_cast<float>(c.eta);
    for (std::size_t i = 0; i < n; ++i) x[i] = eta * s.error[i] + x[i] - s.h[i];
  } else if (c.ef == ErrorFeedback::ef) {
    if (c.dgc && s.momentum.size() == n) {
      const float m = static_cast<float>(c.momentum);
      for (std::size_t i = 0; i < n; ++i) x[i] = m * s.momentum[i] + x[i];
    }
    if (s.error.size() == n)
      for (std::size_t i = 0; i < n; ++i) x[i] = s.error[i] + x[i];
  }
}

}  // namespace

LgrecoPolicy::LgrecoPolicy(const Config& adaptive, const std::vector<Layer>& layers)
    : set_(adaptive_candidates(adaptive)), period_(adaptive.period) {
  for (const Config& c : set_.configs) codecs_.push_back(make_codec(c));
  plans_.resize(layers.size());
  for (std::size_t l = 0; l < layers.size(); ++l) {
    bool compressed = false;
    for (std::size_t c = 0; c < set_.configs.size(); ++c) {
      plans_[l].push_back(make_plan(layers[l], set_.configs[c]));
      plans_[l].back().codec = codecs_[c].get();
      compressed = compressed || plans_[l].back().route != Route::dense;
    }
    if (compressed && plans_[l].front().numel > 0) active_.push_back(l);
  }
  choices_.assign(layers.size(), set_.default_index);
}

void LgrecoPolicy::measure(const StepLayer& sl, std::size_t layer, const StepContext& ctx,
                           double* out) {
  error_corrected_input(sl, input_);
  const std::vector<LayerPlan>& plans = plans_[layer];
  const std::size_t n = sl.n;
  const Method family = set_.configs.front().method;
  if (family == Method::topk) {
    std::vector<std::size_t> ks;
    for (const Config& c : set_.configs) ks.push_back(topk_count(c.density, n));
    const std::vector<double> e = topk_errors(input_.data(), n, ks);
    std::copy(e.begin(), e.end(), out);
  } else if (family == Method::qsgd) {
    for (std::size_t c = 0; c < plans.size(); ++c) {
      const EncodeKey key{
          set_.configs[c].seed, ctx.step, sl.index,  static_cast<std::uint32_t>(ctx.rank),
          kPhaseWorker,         0,        DType::f32};
      out[c] = codec_error(*codecs_[c], input_.data(), n, ctx.size, key, scratch_);
    }
  } else {
    std::vector<std::size_t> ranks;
    for (const LayerPlan& p : plans)
      if (p.route == Route::low_rank) ranks.push_back(p.rank);
    const std::uint64_t seed = set_.configs.front().seed ^ (0x9e3779b97f4a7c15ull * (sl.index + 1));
    const std::vector<double> e =
        low_rank_errors(input_.data(), plans.front().rows, plans.front().cols, ranks, seed);
    for (std::size_t c = 0, j = 0; c < plans.size(); ++c)
      out[c] = plans[c].route == Route::low_rank ? e[j++] : 0.0;
  }
  // A candidate that goes dense is lossless.
  for (std::size_t c = 0; c < plans.size(); ++c)
    if (plans[c].route == Route::dense) out[c] = 0.0;
}

const std::vector<std::size_t>& LgrecoPolicy::decide(const std::vector<StepLayer>& layers,
                                                     const StepContext& ctx,
                                                     std::uint64_t* bytes_sent) {
  const std::size_t nc = set_.configs.size(), na = active_.size();
  const int p = ctx.size;
  std::vector<double> local(na * nc, 0.0);
  for (std::size_t a = 0; a < na; ++a) measure(layers[active_[a]], active_[a], ctx, &local[a * nc]);
  std::vector<double> all(local.size() * static_cast<std::size_t>(p));
  ctx.transport.allgather(local.data(), all.data(), local.size() * sizeof(double));
  *bytes_sent = allgather_bytes(local.size() * sizeof(double), p);

  table_.layers = active_;
  table_.errors.assign(na, std::vector<double>(nc, 0.0));
  table_.bytes.assign(na, std::vector<std::uint64_t>(nc, 0));
  const int size_ranks = p > 2 ? p : 2;
  for (std::size_t a = 0; a < na; ++a)
    for (std::size_t c = 0; c < nc; ++c) {
      double sum = 0.0;  // rank order: the same bits on every rank
      for (int r = 0; r < p; ++r) sum += all[static_cast<std::size_t>(r) * na * nc + a * nc + c];
      table_.errors[a][c] = sum / p;
      table_.bytes[a][c] = step_bytes(plans_[active_[a]][c], size_ranks);
    }
  const KnapsackChoice k = choose_layerwise(table_.bytes, table_.errors, set_.default_index);
  for (std::size_t a = 0; a < na; ++a) choices_[active_[a]] = k.choice[a];
  TW_LOG(info, "adaptive: step ", ctx.step, ", ", na, " layers, ", k.bytes, " bytes per step");
  return choices_;
}

}  // namespace thinwire::detail
