// LayerPlan: how one layer is compressed under its spec, decided once per spec change.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include "compress/compressor.hpp"
#include "thinwire/config.hpp"
#include "thinwire/layer.hpp"

namespace thinwire::detail {

// Which algorithm moves the layer when it is compressed.
enum class Route : std::uint8_t { dense, topk, two_phase, low_rank };
const char* to_string(Route r);

struct LayerPlan {
  Config config;
  std::string spec;  // config.to_string()
  Route route = Route::dense;
  std::size_t numel = 0, rows = 0, cols = 0;
  std::size_t rank = 0;         // PowerSGD rank when route == low_rank
  Compressor* codec = nullptr;  // topk / onebit / qsgd codec, shared by layers with one spec
  std::string why_dense;        // when route == dense although the method compresses
};

// Picks the route: `none`, layers below min_numel, and PowerSGD layers whose factors would
// not be smaller than the layer (vectors, rank >= min(rows, cols)) go dense.
LayerPlan make_plan(const Layer& layer, const Config& config);

// Features of a spec that run on the host only and read the gradients before the sum (DGC,
// clipping): device tensors under them are staged through host memory.
inline bool runs_on_host_only(const Config& config) {
  return config.dgc || config.clip > 0.0;
}

// One codec per distinct spec, so layers that share a spec share its workspaces.
std::unique_ptr<Compressor> make_codec(const Config& config);

}  // namespace thinwire::detail
