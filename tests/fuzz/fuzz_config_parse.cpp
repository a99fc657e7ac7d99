// libFuzzer harness: Config::parse (config/config.cpp). Input: a spec string. A spec that
// parses must print canonically and round-trip: parse(to_string(c)) == c, with the same text.
#include <string>
#include <string_view>

#include "fuzz_support.hpp"
#include "thinwire/config.hpp"

using namespace thinwire;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view spec(reinterpret_cast<const char*>(data), size);
  Config c;
  try {
    c = Config::parse(spec);
  } catch (const Error& e) {
    if (e.code() != ErrorCode::invalid_argument) fuzz::violated("parse: wrong error code");
    return 0;
  }
  const std::string text = c.to_string();
  Config again;
  try {
    again = Config::parse(text);
  } catch (const Error& e) {
    fuzz::violated("the canonical form '" + text + "' of '" + std::string(spec) +
                   "' does not parse: " + e.what());
  }
  if (again != c || again.to_string() != text)
    fuzz::violated("'" + std::string(spec) + "' does not round-trip through '" + text + "'");
  return 0;
}
