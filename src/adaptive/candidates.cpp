#include "adaptive/candidates.hpp"

#include <algorithm>

#include "algorithm/two_phase.hpp"
#include "common/bytes.hpp"
#include "reducer/step.hpp"

namespace thinwire::detail {

namespace {

Config concrete(const Config& adaptive) {
  Config c = adaptive;
  c.method = adaptive.family;
  c.family = Method::none;
  c.period = Config().period;  // 'period' applies to adaptive specs only
  c.density = 0.0;
  c.rank = 0;
  c.bits = 0;
  return c;
}

}  // namespace

CandidateSet adaptive_candidates(const Config& a) {
  CandidateSet set;
  const Config base = concrete(a);
  switch (a.family) {
    case Method::topk: {
      const double d0 = a.density > 0.0 ? a.density : kAdaptiveDefaultDensity;
      for (double f : {1.0 / 16, 1.0 / 8, 1.0 / 4, 1.0 / 2, 1.0, 2.0, 4.0, 8.0}) {
        const double d = d0 * f;
        if (!(d > 0.0 && d <= 1.0)) continue;
        if (f == 1.0) set.default_index = set.configs.size();
        set.configs.push_back(base);
        set.configs.back().density = d;
      }
      break;
    }
    case Method::powersgd: {
      const int r0 = a.rank > 0 ? a.rank : kAdaptiveDefaultRank;
      std::vector<int> ranks;
      for (int num : {1, 2, 3, 4, 6, 8, 16}) {  // quarters of r0
        const int r = std::max(1, r0 * num / 4);
        if (r <= 1024 && std::find(ranks.begin(), ranks.end(), r) == ranks.end())
          ranks.push_back(r);
      }
      std::sort(ranks.begin(), ranks.end());
      for (int r : ranks) {
        if (r == r0) set.default_index = set.configs.size();
        set.configs.push_back(base);
        set.configs.back().rank = r;
      }
      break;
    }
    case Method::qsgd: {
      const int b0 = a.bits > 0 ? a.bits : kAdaptiveDefaultBits;
      for (int b = 2; b <= 8; ++b) {
        if (b == b0) set.default_index = set.configs.size();
        set.configs.push_back(base);
        set.configs.back().bits = b;
      }
      break;
    }
    default:
      break;
  }
  return set;
}

std::uint64_t step_bytes(const LayerPlan& plan, int p) {
  const std::size_t n = plan.numel;
  if (n == 0) return 0;
  switch (plan.route) {
    case Route::dense:
      return allreduce_bytes(4 * n, p);
    case Route::topk:
      return allgather_bytes(plan.codec->encoded_bytes(n), p);
    case Route::two_phase:
      return 2 * allgather_bytes(
                     plan.codec->encoded_bytes(ceil_div(n, static_cast<std::size_t>(p))), p);
    case Route::low_rank:
      return allreduce_bytes(4 * plan.rows * plan.rank, p) +
             allreduce_bytes(4 * plan.cols * plan.rank, p);
  }
  return 0;
}

}  // namespace thinwire::detail
