#include "reference.hpp"

#include <memory>

#include "algorithm/two_phase.hpp"
#include "compress/low_rank.hpp"
#include "compress/topk_codec.hpp"
#include "reducer/layer_plan.hpp"

namespace thinwire::test {

using namespace thinwire::detail;

namespace {

struct RankState {
  std::vector<float> e, h;
};

struct LayerModel {
  LayerPlan plan;
  std::unique_ptr<Compressor> codec;
  std::vector<RankState> ranks;
  std::vector<std::vector<float>> server_error;  // per chunk owner
  std::vector<float> H, q;
  bool econtrol_started = false;
};

std::vector<float> mean_in_rank_order(const std::vector<std::vector<float>>& xs) {
  std::vector<float> out(xs[0].size(), 0.0f);
  for (const auto& x : xs)
    for (std::size_t i = 0; i < out.size(); ++i) out[i] += x[i];
  for (float& v : out) v /= static_cast<float>(xs.size());
  return out;
}

}  // namespace

std::vector<std::vector<std::vector<float>>> reference_run(const std::vector<Layer>& layers,
                                                           const Config& config, int ranks,
                                                           int steps, const GradientFn& gradient) {
  std::vector<LayerModel> models(layers.size());
  for (std::size_t l = 0; l < layers.size(); ++l) {
    models[l].plan = make_plan(layers[l], config);
    models[l].codec = make_codec(config);
    models[l].plan.codec = models[l].codec.get();
    models[l].ranks.resize(static_cast<std::size_t>(ranks));
    models[l].server_error.resize(static_cast<std::size_t>(ranks));
  }
  const float eta = static_cast<float>(config.eta);
  std::vector<std::vector<std::vector<float>>> out(static_cast<std::size_t>(steps));
  for (int step = 0; step < steps; ++step) {
    for (std::size_t l = 0; l < layers.size(); ++l) {
      LayerModel& m = models[l];
      const std::size_t n = m.plan.numel;
      const auto su = static_cast<std::uint64_t>(step);
      std::vector<std::vector<float>> g(static_cast<std::size_t>(ranks));
      for (int r = 0; r < ranks; ++r) g[r] = gradient(su, r, l);

      Route route = m.plan.route;
      bool econtrol_first = false;
      if (route != Route::dense && su < config.warmup)
        route = Route::dense;
      else if (route != Route::dense && config.ef == ErrorFeedback::econtrol &&
               !m.econtrol_started) {
        route = Route::dense;
        econtrol_first = true;
      }
      if (n == 0) {
        out[step].push_back({});
        continue;
      }
      if (route == Route::dense) {
        std::vector<float> result = mean_in_rank_order(g);
        if (econtrol_first) {
          for (int r = 0; r < ranks; ++r) {
            m.ranks[r].h = g[r];
            m.ranks[r].e.assign(n, 0.0f);
          }
          m.H = result;
          m.econtrol_started = true;
        }
        out[step].push_back(result);
        continue;
      }

      // The input each rank compresses.
      std::vector<std::vector<float>> x(static_cast<std::size_t>(ranks));
      for (int r = 0; r < ranks; ++r) {
        RankState& s = m.ranks[r];
        if (s.e.empty()) s.e.assign(n, 0.0f);
        if (s.h.empty()) s.h.assign(n, 0.0f);
        x[r].resize(n);
        for (std::size_t i = 0; i < n; ++i) {
          switch (config.ef) {
            case ErrorFeedback::none:
              x[r][i] = g[r][i];
              break;
            case ErrorFeedback::ef:
              x[r][i] = s.e[i] + g[r][i];
              break;
            case ErrorFeedback::econtrol:
              x[r][i] = eta * s.e[i] + g[r][i] - s.h[i];
              break;
          }
        }
      }
      // delta[r]: what rank r's compressed contribution decodes to.
      std::vector<std::vector<float>> delta(static_cast<std::size_t>(ranks),
                                            std::vector<float>(n, 0.0f));
      std::vector<float> result(n, 0.0f);

      if (route == Route::topk) {
        std::vector<std::vector<std::uint8_t>> payload(static_cast<std::size_t>(ranks));
        for (int r = 0; r < ranks; ++r) {
          payload[r].resize(m.codec->encoded_bytes(n));
          EncodeKey key{config.seed,
                        su,
                        static_cast<std::uint32_t>(l),
                        static_cast<std::uint32_t>(r),
                        kPhaseWorker,
                        0,
                        DType::f32};
          std::vector<float> tmp = x[r];
          m.codec->encode(tmp.data(), n, key, payload[r].data(), nullptr);
          m.codec->decode(payload[r].data(), payload[r].size(), n, delta[r].data(),
                          DecodeMode::assign, {});
        }
        std::vector<char> touched(n, 0);
        for (int r = 0; r < ranks; ++r)
          m.codec->decode(payload[r].data(), payload[r].size(), n, result.data(),
                          DecodeMode::accumulate, {});
        // Divide the touched entries by P once (untouched ones are 0).
        auto& codec = static_cast<TopkCodec&>(*m.codec);
        if (ranks > 1)
          for (int r = 0; r < ranks; ++r) {
            const auto v = codec.parse(payload[r].data(), payload[r].size(), n, {});
            for (std::size_t j = 0; j < v.k; ++j) {
              std::uint32_t i;
              std::memcpy(&i, v.indices + 4 * j, 4);
              if (!touched[i]) result[i] /= static_cast<float>(ranks);
              touched[i] = 1;
            }
          }
      } else if (route == Route::two_phase) {
        const std::size_t cap = m.codec->encoded_bytes((n + ranks - 1) / ranks);
        // worker payloads: pay[r][j]
        std::vector<std::vector<std::vector<std::uint8_t>>> pay(static_cast<std::size_t>(ranks));
        for (int r = 0; r < ranks; ++r) {
          pay[r].resize(static_cast<std::size_t>(ranks));
          for (int j = 0; j < ranks; ++j) {
            const std::size_t b = chunk_begin(n, j, ranks), e = chunk_begin(n, j + 1, ranks);
            pay[r][j].assign(cap, 0);
            EncodeKey key{config.seed,
                          su,
                          static_cast<std::uint32_t>(l),
                          static_cast<std::uint32_t>(r),
                          kPhaseWorker,
                          b,
                          DType::f32};
            std::vector<float> chunk(x[r].begin() + b, x[r].begin() + e);
            m.codec->encode(chunk.data(), e - b, key, pay[r][j].data(), nullptr);
            m.codec->decode(pay[r][j].data(), cap, e - b, delta[r].data() + b, DecodeMode::assign,
                            {});
          }
        }
        for (int j = 0; j < ranks; ++j) {
          const std::size_t b = chunk_begin(n, j, ranks), e = chunk_begin(n, j + 1, ranks),
                            len = e - b;
          std::vector<float> y(len, 0.0f);
          for (int r = 0; r < ranks; ++r)
            m.codec->decode(pay[r][j].data(), cap, len, y.data(), DecodeMode::accumulate, {});
          for (float& v : y) v /= static_cast<float>(ranks);
          std::vector<float>& es = m.server_error[j];
          const bool server_ef = config.ef != ErrorFeedback::none;
          if (server_ef) {
            if (es.size() != len) es.assign(len, 0.0f);
            for (std::size_t i = 0; i < len; ++i) y[i] += es[i];
          }
          std::vector<std::uint8_t> sp(cap, 0);
          EncodeKey key{config.seed,
                        su,
                        static_cast<std::uint32_t>(l),
                        static_cast<std::uint32_t>(j),
                        kPhaseServer,
                        b,
                        DType::f32};
          std::vector<float> decoded_y(len, 0.0f);
          m.codec->encode(y.data(), len, key, sp.data(), nullptr);
          m.codec->decode(sp.data(), cap, len, decoded_y.data(), DecodeMode::assign, {});
          if (server_ef)
            for (std::size_t i = 0; i < len; ++i) es[i] = y[i] - decoded_y[i];
          std::copy(decoded_y.begin(), decoded_y.end(), result.begin() + b);
        }
      } else {  // low_rank
        const std::size_t rows = m.plan.rows, cols = m.plan.cols, rk = m.plan.rank;
        if (m.q.empty()) {
          m.q.resize(cols * rk);
          low_rank::random_init(m.q.data(), cols, rk, config.seed, static_cast<std::uint32_t>(l),
                                0);
        } else {
          low_rank::refresh_zero_columns(m.q.data(), cols, rk, config.seed,
                                         static_cast<std::uint32_t>(l), su + 1);
        }
        std::vector<std::vector<float>> ps(static_cast<std::size_t>(ranks),
                                           std::vector<float>(rows * rk));
        for (int r = 0; r < ranks; ++r)
          low_rank::project(x[r].data(), rows, cols, m.q.data(), rk, ps[r].data());
        std::vector<float> p = mean_in_rank_order(ps);
        low_rank::orthonormalize(p.data(), rows, rk);
        std::vector<std::vector<float>> qs(static_cast<std::size_t>(ranks),
                                           std::vector<float>(cols * rk));
        for (int r = 0; r < ranks; ++r)
          low_rank::back_project(x[r].data(), rows, cols, p.data(), rk, qs[r].data());
        m.q = mean_in_rank_order(qs);
        low_rank::reconstruct(p.data(), m.q.data(), rows, cols, rk, result.data());
        for (int r = 0; r < ranks; ++r) {
          if (config.ef == ErrorFeedback::econtrol)
            low_rank::reconstruct(p.data(), qs[r].data(), rows, cols, rk, delta[r].data());
          else
            delta[r] = result;  // PowerSGD's error feedback subtracts the averaged M_hat
        }
      }

      // Error feedback, literally as DESIGN.md writes it.
      for (int r = 0; r < ranks; ++r) {
        RankState& s = m.ranks[r];
        for (std::size_t i = 0; i < n; ++i) {
          if (config.ef == ErrorFeedback::ef) {
            s.e[i] = x[r][i] - delta[r][i];
          } else if (config.ef == ErrorFeedback::econtrol) {
            s.e[i] = s.e[i] + g[r][i] - s.h[i] - delta[r][i];
            s.h[i] = s.h[i] + delta[r][i];
          }
        }
      }
      if (config.ef == ErrorFeedback::econtrol) {
        for (std::size_t i = 0; i < n; ++i) m.H[i] += result[i];
        result = m.H;
      }
      out[step].push_back(result);
    }
  }
  return out;
}

}  // namespace thinwire::test
