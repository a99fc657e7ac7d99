#include "reducer/layer_plan.hpp"

#include "common/strcat.hpp"
#include "compress/onebit_codec.hpp"
#include "compress/qsgd_codec.hpp"
#include "compress/topk_codec.hpp"

namespace thinwire::detail {

const char* to_string(Route r) {
  switch (r) {
    case Route::dense:
      return "dense";
    case Route::topk:
      return "topk";
    case Route::two_phase:
      return "two_phase";
    case Route::low_rank:
      return "low_rank";
  }
  return "?";
}

LayerPlan make_plan(const Layer& layer, const Config& config) {
  LayerPlan p;
  p.config = config;
  p.spec = config.to_string();
  p.numel = layer.numel();
  p.rows = layer.rows();
  p.cols = layer.cols();
  if (config.method == Method::none) return p;
  if (p.numel < config.min_numel) {
    p.why_dense = cat("numel ", p.numel, " < min_numel ", config.min_numel);
    return p;
  }
  switch (config.method) {
    case Method::topk:
      p.route = Route::topk;
      break;
    case Method::onebit:
    case Method::qsgd:
      p.route = Route::two_phase;
      break;
    case Method::powersgd: {
      const std::size_t r = static_cast<std::size_t>(config.rank);
      const std::size_t smaller = p.rows < p.cols ? p.rows : p.cols;
      if (r >= smaller) {
        p.why_dense = cat("rank ", r, " >= min(rows, cols) = ", smaller,
                          ": the factors would not be smaller");
      } else if ((p.rows + p.cols) * r >= p.numel) {
        p.why_dense =
            cat("factors of ", (p.rows + p.cols) * r, " elements are not smaller than ", p.numel);
      } else {
        p.route = Route::low_rank;
        p.rank = r;
      }
      break;
    }
    default:
      break;
  }
  return p;
}

std::unique_ptr<Compressor> make_codec(const Config& config) {
  switch (config.method) {
    case Method::topk:
      return std::make_unique<TopkCodec>(config.density, config.select);
    case Method::onebit:
      return std::make_unique<OnebitCodec>();
    case Method::qsgd:
      return std::make_unique<QsgdCodec>(config.bits, config.bucket,
                                         config.ef != ErrorFeedback::none);
    default:
      return nullptr;
  }
}

}  // namespace thinwire::detail
