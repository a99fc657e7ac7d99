// Compression specs: "METHOD[:PARAM][,key=value]...", parsed and printed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "thinwire/export.hpp"

namespace thinwire {

enum class Method : std::uint8_t {
  none = 0,
  topk = 1,
  onebit = 2,
  qsgd = 3,
  powersgd = 4,
  adaptive = 5,
  // "auto[:FAMILY[:FLOOR]]": per layer, dense or the family's compression, whichever a cost
  // model with a measured link predicts to be faster (README "Scaling").
  automatic = 6
};
enum class ErrorFeedback : std::uint8_t { none = 0, ef = 1, econtrol = 2 };
enum class Selection : std::uint8_t { exact = 0, sampled = 1 };
// What a non-finite (NaN or infinite) gradient entry does, checked before encoding (dense
// layers of a host step, 64 KiB or more of them: while they are summed; see README, `nan`).
enum class NanPolicy : std::uint8_t { error = 0, skip = 1, propagate = 2 };

THINWIRE_API const char* to_string(Method m);
THINWIRE_API const char* to_string(ErrorFeedback ef);
THINWIRE_API const char* to_string(Selection s);
THINWIRE_API const char* to_string(NanPolicy p);

// One compression spec. Defaults are those of DESIGN.md; Config::parse() checks ranges and
// which keys apply to which method, and to_string() prints the canonical form (only the keys
// that differ from their defaults), so that parse(to_string(c)) == c.
struct THINWIRE_API Config {
  Method method = Method::none;
  // The parameter after the colon; which one is set depends on the method.
  double density = 0.0;          // topk: fraction of entries kept, in (0, 1]
  int bits = 0;                  // qsgd: bits per code, 2..8
  int rank = 0;                  // powersgd: rank of the factors, >= 1
  Method family = Method::none;  // adaptive: topk | powersgd | qsgd; auto: also onebit
  // auto: density, bits or rank hold the FLOOR, the most aggressive parameter it may choose.

  ErrorFeedback ef = ErrorFeedback::ef;  // ef=none|ef|econtrol
  double eta = 0.1;                      // eta=   EControl feedback strength, (0, 1]
  std::size_t min_numel = 1024;          // min_numel=  smaller layers go uncompressed
  std::size_t warmup = 0;                // warmup=  steps sent uncompressed first
  Selection select = Selection::exact;   // select=exact|sampled  (topk)
  bool dgc = false;                      // dgc=on|off  DGC momentum correction (topk)
  double momentum = 0.0;                 // momentum=  [0, 1)  (with dgc=on)
  double clip = 0.0;                     // clip=  local gradient clipping norm, 0 = off
  std::size_t period = 100;              // period=  adaptive re-tuning interval in steps
  std::size_t bucket = 512;              // bucket=  qsgd bucket size
  std::uint64_t seed = 0;                // seed=  shared seed (qsgd rounding, PowerSGD init)
  NanPolicy nan = NanPolicy::error;      // nan=error|skip|propagate  non-finite gradients
  std::size_t dgc_warmup = 0;            // dgc_warmup=  steps of DGC's density warm-up (topk)
  // adaptive: the uniform default the error budget comes from is the family's parameter
  // above (density=, rank=, bits= keys); 0 there means the family's built-in default.

  // Throws Error(invalid_argument) naming the bad token and listing what is valid.
  static Config parse(std::string_view spec);
  // The spec in THINWIRE_COMPRESSION, if that variable is set and non-empty. A bad value
  // throws Error naming the variable.
  static std::optional<Config> from_env();

  std::string to_string() const;
  bool operator==(const Config& other) const;
  bool operator!=(const Config& other) const { return !(*this == other); }
};

}  // namespace thinwire
