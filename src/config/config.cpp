// Config::parse / to_string for "METHOD[:PARAM][,key=value]...".
#include "thinwire/config.hpp"

#include <charconv>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <string>
#include <vector>

#include "common/fail.hpp"

namespace thinwire {

const char* to_string(Method m) {
  switch (m) {
    case Method::none:
      return "none";
    case Method::topk:
      return "topk";
    case Method::onebit:
      return "onebit";
    case Method::qsgd:
      return "qsgd";
    case Method::powersgd:
      return "powersgd";
    case Method::adaptive:
      return "adaptive";
    case Method::automatic:
      return "auto";
  }
  return "?";
}

const char* to_string(ErrorFeedback ef) {
  switch (ef) {
    case ErrorFeedback::none:
      return "none";
    case ErrorFeedback::ef:
      return "ef";
    case ErrorFeedback::econtrol:
      return "econtrol";
  }
  return "?";
}

const char* to_string(Selection s) {
  return s == Selection::exact ? "exact" : "sampled";
}

const char* to_string(NanPolicy p) {
  switch (p) {
    case NanPolicy::error:
      return "error";
    case NanPolicy::skip:
      return "skip";
    case NanPolicy::propagate:
      return "propagate";
  }
  return "?";
}

namespace {

using detail::cat;

constexpr const char* kMethods =
    "none, topk:DENSITY, onebit, qsgd:BITS, powersgd:RANK, adaptive:FAMILY, "
    "auto[:FAMILY[:FLOOR]]";
constexpr const char* kKeys =
    "ef=none|ef|econtrol, eta=(0,1], min_numel=N, warmup=N, select=exact|sampled, dgc=on|off, "
    "momentum=[0,1), clip=X>=0, period=N>=1, bucket=N>=1, seed=N, nan=error|skip|propagate, "
    "dgc_warmup=N, density=D|rank=R|bits=B (adaptive), auto=on|off";

[[noreturn]] void bad(std::string_view spec, const std::string& why) {
  detail::fail_with(ErrorCode::invalid_argument, "config", -1, "bad compression spec '", spec,
                    "': ", why);
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

double parse_number(std::string_view spec, std::string_view key, std::string_view text) {
  double v = 0;
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, v);
  if (ec != std::errc() || ptr != end || !std::isfinite(v))
    bad(spec, cat("'", key, "' needs a number, got '", text, "'"));
  return v;
}

std::uint64_t parse_count(std::string_view spec, std::string_view key, std::string_view text) {
  std::uint64_t v = 0;
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, v);
  if (ec != std::errc() || ptr != end || text.empty())
    bad(spec, cat("'", key, "' needs a non-negative integer, got '", text, "'"));
  return v;
}

Method parse_method(std::string_view spec, std::string_view name) {
  for (Method m : {Method::none, Method::topk, Method::onebit, Method::qsgd, Method::powersgd,
                   Method::adaptive, Method::automatic})
    if (name == to_string(m)) return m;
  bad(spec, cat("unknown method '", name, "'; valid methods: ", kMethods));
}

// Shortest text that parses back to the same double.
std::string format_number(double v) {
  char buf[64];
  auto [ptr, ec] = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, ec == std::errc() ? ptr : buf);
}

bool applies(Method method, Method family, Method target) {
  return method == target ||
         ((method == Method::adaptive || method == Method::automatic) && family == target);
}

// "auto[:FAMILY[:FLOOR]]": FAMILY defaults to onebit; FLOOR, the most aggressive parameter
// auto may choose, to topk 0.01, qsgd 4 bits, powersgd rank 4.
void parse_auto(std::string_view spec, std::string_view param, bool has_param, Config* c) {
  c->family = Method::onebit;
  if (!has_param) return;
  const std::size_t colon = param.find(':');
  const std::string_view family = trim(param.substr(0, colon));
  const bool has_floor = colon != std::string_view::npos;
  const std::string_view floor = has_floor ? trim(param.substr(colon + 1)) : std::string_view();
  c->family = parse_method(spec, family);
  switch (c->family) {
    case Method::onebit:
      if (has_floor) bad(spec, "auto:onebit takes no floor (onebit has no parameter)");
      break;
    case Method::topk:
      c->density = has_floor ? parse_number(spec, "auto topk floor density", floor) : 0.01;
      if (!(c->density > 0.0 && c->density <= 1.0))
        bad(spec, cat("auto topk floor density must be in (0, 1], got ", floor));
      break;
    case Method::qsgd: {
      const std::uint64_t b = has_floor ? parse_count(spec, "auto qsgd floor bits", floor) : 4;
      if (b < 2 || b > 8) bad(spec, cat("auto qsgd floor bits must be in 2..8, got ", floor));
      c->bits = static_cast<int>(b);
      break;
    }
    case Method::powersgd: {
      const std::uint64_t r = has_floor ? parse_count(spec, "auto powersgd floor rank", floor) : 4;
      if (r < 1 || r > 1024)
        bad(spec, cat("auto powersgd floor rank must be in 1..1024, got ", floor));
      c->rank = static_cast<int>(r);
      break;
    }
    default:
      bad(spec, cat("auto family must be onebit, topk, qsgd or powersgd, got '", family, "'"));
  }
}

}  // namespace

Config Config::parse(std::string_view spec_in) {
  const std::string_view spec = trim(spec_in);
  if (spec.empty()) bad(spec_in, cat("empty; valid methods: ", kMethods));

  std::vector<std::string_view> parts;
  for (std::size_t start = 0;;) {
    const std::size_t comma = spec.find(',', start);
    parts.push_back(
        trim(spec.substr(start, comma == std::string_view::npos ? spec.npos : comma - start)));
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }

  Config c;
  // METHOD[:PARAM]
  std::string_view head = parts[0];
  const std::size_t colon = head.find(':');
  const std::string_view name = trim(head.substr(0, colon));
  const bool has_param = colon != std::string_view::npos;
  const std::string_view param = has_param ? trim(head.substr(colon + 1)) : std::string_view();
  c.method = parse_method(spec, name);
  switch (c.method) {
    case Method::none:
    case Method::onebit:
      if (has_param) bad(spec, cat("'", name, "' takes no parameter"));
      break;
    case Method::topk: {
      if (!has_param) bad(spec, "topk needs a density, e.g. 'topk:0.01'");
      c.density = parse_number(spec, "topk density", param);
      if (!(c.density > 0.0 && c.density <= 1.0))
        bad(spec, cat("topk density must be in (0, 1], got ", param));
      break;
    }
    case Method::qsgd: {
      if (!has_param) bad(spec, "qsgd needs a bit width, e.g. 'qsgd:4'");
      const std::uint64_t b = parse_count(spec, "qsgd bits", param);
      if (b < 2 || b > 8) bad(spec, cat("qsgd bits must be an integer in 2..8, got ", param));
      c.bits = static_cast<int>(b);
      break;
    }
    case Method::powersgd: {
      if (!has_param) bad(spec, "powersgd needs a rank, e.g. 'powersgd:4'");
      const std::uint64_t r = parse_count(spec, "powersgd rank", param);
      if (r < 1 || r > 1024)
        bad(spec, cat("powersgd rank must be an integer in 1..1024, got ", param));
      c.rank = static_cast<int>(r);
      break;
    }
    case Method::adaptive: {
      if (!has_param)
        bad(spec, "adaptive needs a family, e.g. 'adaptive:topk' (topk, powersgd, qsgd)");
      const Method f = parse_method(spec, param);
      if (f != Method::topk && f != Method::powersgd && f != Method::qsgd)
        bad(spec, cat("adaptive family must be topk, powersgd or qsgd, got '", param, "'"));
      c.family = f;
      break;
    }
    case Method::automatic:
      parse_auto(spec, param, has_param, &c);
      break;
  }

  std::vector<std::string_view> seen;
  bool auto_on = false;
  for (std::size_t i = 1; i < parts.size(); ++i) {
    const std::string_view kv = parts[i];
    const std::size_t eq = kv.find('=');
    if (kv.empty() || eq == std::string_view::npos)
      bad(spec, cat("expected key=value, got '", kv, "'; valid keys: ", kKeys));
    const std::string_view key = trim(kv.substr(0, eq));
    const std::string_view value = trim(kv.substr(eq + 1));
    for (std::string_view s : seen)
      if (s == key) bad(spec, cat("key '", key, "' given twice"));
    seen.push_back(key);

    if (key == "ef") {
      if (value == "none")
        c.ef = ErrorFeedback::none;
      else if (value == "ef")
        c.ef = ErrorFeedback::ef;
      else if (value == "econtrol")
        c.ef = ErrorFeedback::econtrol;
      else
        bad(spec, cat("ef must be none, ef or econtrol, got '", value, "'"));
    } else if (key == "eta") {
      c.eta = parse_number(spec, key, value);
      if (!(c.eta > 0.0 && c.eta <= 1.0)) bad(spec, cat("eta must be in (0, 1], got ", value));
    } else if (key == "min_numel") {
      c.min_numel = parse_count(spec, key, value);
    } else if (key == "warmup") {
      c.warmup = parse_count(spec, key, value);
    } else if (key == "select") {
      if (value == "exact")
        c.select = Selection::exact;
      else if (value == "sampled")
        c.select = Selection::sampled;
      else
        bad(spec, cat("select must be exact or sampled, got '", value, "'"));
    } else if (key == "dgc") {
      if (value == "on")
        c.dgc = true;
      else if (value == "off")
        c.dgc = false;
      else
        bad(spec, cat("dgc must be on or off, got '", value, "'"));
    } else if (key == "momentum") {
      c.momentum = parse_number(spec, key, value);
      if (!(c.momentum >= 0.0 && c.momentum < 1.0))
        bad(spec, cat("momentum must be in [0, 1), got ", value));
    } else if (key == "clip") {
      c.clip = parse_number(spec, key, value);
      if (!(c.clip >= 0.0)) bad(spec, cat("clip must be >= 0 (0 = off), got ", value));
    } else if (key == "period") {
      c.period = parse_count(spec, key, value);
      if (c.period < 1) bad(spec, "period must be >= 1");
    } else if (key == "bucket") {
      c.bucket = parse_count(spec, key, value);
      if (c.bucket < 1 || c.bucket > (std::size_t{1} << 24))
        bad(spec, "bucket must be in 1..16777216");
    } else if (key == "seed") {
      c.seed = parse_count(spec, key, value);
    } else if (key == "nan") {
      if (value == "error")
        c.nan = NanPolicy::error;
      else if (value == "skip")
        c.nan = NanPolicy::skip;
      else if (value == "propagate")
        c.nan = NanPolicy::propagate;
      else
        bad(spec, cat("nan must be error, skip or propagate, got '", value, "'"));
    } else if (key == "dgc_warmup") {
      c.dgc_warmup = parse_count(spec, key, value);
    } else if (key == "density" && c.method == Method::adaptive) {
      c.density = parse_number(spec, key, value);
      if (!(c.density > 0.0 && c.density <= 1.0))
        bad(spec, cat("density must be in (0, 1], got ", value));
    } else if (key == "rank" && c.method == Method::adaptive) {
      const std::uint64_t r = parse_count(spec, key, value);
      if (r < 1 || r > 1024) bad(spec, cat("rank must be an integer in 1..1024, got ", value));
      c.rank = static_cast<int>(r);
    } else if (key == "bits" && c.method == Method::adaptive) {
      const std::uint64_t b = parse_count(spec, key, value);
      if (b < 2 || b > 8) bad(spec, cat("bits must be an integer in 2..8, got ", value));
      c.bits = static_cast<int>(b);
    } else if (key == "auto") {
      if (value != "on" && value != "off")
        bad(spec, cat("auto must be on or off, got '", value, "'"));
      auto_on = value == "on";
    } else {
      bad(spec, cat("unknown key '", key, "'; valid keys: ", kKeys));
    }
  }

  // "METHOD:PARAM,auto=on" is "auto:METHOD:PARAM": the parameter becomes auto's floor.
  if (auto_on) {
    if (c.method != Method::onebit && c.method != Method::topk && c.method != Method::qsgd &&
        c.method != Method::powersgd)
      bad(spec, "'auto=on' applies to onebit, topk, qsgd and powersgd");
    c.family = c.method;
    c.method = Method::automatic;
  }

  // Keys that only make sense for some methods: refuse rather than silently ignore them.
  auto has = [&](std::string_view key) {
    for (std::string_view s : seen)
      if (s == key) return true;
    return false;
  };
  const bool topk = applies(c.method, c.family, Method::topk);
  if (has("select") && !topk) bad(spec, "'select' applies to topk only");
  if (has("dgc") && !topk) bad(spec, "'dgc' applies to topk only");
  if (has("momentum") && !c.dgc) bad(spec, "'momentum' needs dgc=on");
  // DGC's accumulation of the velocity is classic error feedback.
  if (c.dgc && c.ef != ErrorFeedback::ef) bad(spec, "'dgc=on' needs ef=ef (the default)");
  if (has("dgc_warmup") && !topk) bad(spec, "'dgc_warmup' applies to topk only");
  if (has("density") && c.family != Method::topk) bad(spec, "'density' applies to adaptive:topk");
  if (has("rank") && c.family != Method::powersgd) bad(spec, "'rank' applies to adaptive:powersgd");
  if (has("bits") && c.family != Method::qsgd) bad(spec, "'bits' applies to adaptive:qsgd");
  if (has("bucket") && !applies(c.method, c.family, Method::qsgd))
    bad(spec, "'bucket' applies to qsgd only");
  if (has("period") && c.method != Method::adaptive) bad(spec, "'period' applies to adaptive only");
  if (has("eta") && c.ef != ErrorFeedback::econtrol) bad(spec, "'eta' needs ef=econtrol");
  return c;
}

std::optional<Config> Config::from_env() {
  const char* value = std::getenv("THINWIRE_COMPRESSION");
  if (!value || !*value) return std::nullopt;
  try {
    return parse(value);
  } catch (const Error& e) {
    throw Error(e.code(), cat(e.what(), " (from THINWIRE_COMPRESSION)"));
  }
}

std::string Config::to_string() const {
  const Config d;  // defaults
  std::string s = thinwire::to_string(method);
  switch (method) {
    case Method::topk:
      s += ":" + format_number(density);
      break;
    case Method::qsgd:
      s += cat(":", bits);
      break;
    case Method::powersgd:
      s += cat(":", rank);
      break;
    case Method::adaptive:
      s += cat(":", thinwire::to_string(family));
      break;
    case Method::automatic:
      s += cat(":", thinwire::to_string(family));
      if (family == Method::topk) s += ":" + format_number(density);
      if (family == Method::qsgd) s += cat(":", bits);
      if (family == Method::powersgd) s += cat(":", rank);
      break;
    default:
      break;
  }
  if (ef != d.ef) s += cat(",ef=", thinwire::to_string(ef));
  if (eta != d.eta) s += ",eta=" + format_number(eta);
  if (min_numel != d.min_numel) s += cat(",min_numel=", min_numel);
  if (warmup != d.warmup) s += cat(",warmup=", warmup);
  if (select != d.select) s += cat(",select=", thinwire::to_string(select));
  if (dgc != d.dgc) s += cat(",dgc=", dgc ? "on" : "off");
  if (momentum != d.momentum) s += ",momentum=" + format_number(momentum);
  if (clip != d.clip) s += ",clip=" + format_number(clip);
  if (period != d.period) s += cat(",period=", period);
  if (bucket != d.bucket) s += cat(",bucket=", bucket);
  if (seed != d.seed) s += cat(",seed=", seed);
  if (nan != d.nan) s += cat(",nan=", thinwire::to_string(nan));
  if (dgc_warmup != d.dgc_warmup) s += cat(",dgc_warmup=", dgc_warmup);
  if (method == Method::adaptive) {
    if (density != d.density) s += ",density=" + format_number(density);
    if (rank != d.rank) s += cat(",rank=", rank);
    if (bits != d.bits) s += cat(",bits=", bits);
  }
  return s;
}

bool Config::operator==(const Config& o) const {
  return method == o.method && density == o.density && bits == o.bits && rank == o.rank &&
         family == o.family && ef == o.ef && eta == o.eta && min_numel == o.min_numel &&
         warmup == o.warmup && select == o.select && dgc == o.dgc && momentum == o.momentum &&
         clip == o.clip && period == o.period && bucket == o.bucket && seed == o.seed &&
         nan == o.nan && dgc_warmup == o.dgc_warmup;
}

}  // namespace thinwire
