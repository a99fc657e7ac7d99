#include <nlohmann/json.hpp>

#include "thinwire/stats.hpp"

namespace thinwire {

std::string Stats::to_json() const {
  nlohmann::json j;
  j["steps"] = steps;
  j["skipped_steps"] = skipped_steps;
  j["bytes_sent"] = bytes_sent;
  j["bytes_dense"] = bytes_dense;
  j["compression_ratio"] = compression_ratio();
  j["seconds"] = {{"encode", seconds_encode},
                  {"comm", seconds_comm},
                  {"decode", seconds_decode},
                  {"total", seconds_total}};
  nlohmann::json ls = nlohmann::json::array();
  for (const LayerStats& l : layers)
    ls.push_back({{"name", l.name},
                  {"spec", l.spec},
                  {"route", l.route},
                  {"numel", l.numel},
                  {"bytes_sent", l.bytes_sent},
                  {"bytes_dense", l.bytes_dense},
                  {"compression_ratio", l.compression_ratio()},
                  {"sq_error", l.sq_error},
                  {"sq_norm", l.sq_norm},
                  {"last_sq_error", l.last_sq_error},
                  {"last_sq_norm", l.last_sq_norm}});
  j["layers"] = std::move(ls);
  return j.dump();
}

}  // namespace thinwire
