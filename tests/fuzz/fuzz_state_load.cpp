// libFuzzer harness: Reducer::load_state (reducer/state_io.cpp) on checkpoint bytes.
// Input: [ranks u8][rank u8][spec u8][mode u8][state bytes...]. With bit 0 of mode set the
// harness rewrites the trailing checksum to match, so the fuzzer reaches the parser behind
// it. A refused state must leave the Reducer unchanged; an accepted one must be usable.
#include <sstream>

#include "common/bytes.hpp"
#include "common/hash.hpp"
#include "fuzz_support.hpp"
#include "thinwire/thinwire.hpp"

using namespace thinwire;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  fuzz::Input in(data, size);
  const int p = 1 + in.u8() % 4;
  const int me = in.u8() % p;
  const std::string& spec = fuzz::fuzz_specs()[in.u8() % fuzz::fuzz_specs().size()];
  const bool fix_checksum = in.u8() & 1;
  std::string bytes(reinterpret_cast<const char*>(in.rest()), in.rest_size());
  if (fix_checksum && bytes.size() >= 8) {
    const std::uint64_t sum = detail::Hasher().bytes(bytes.data(), bytes.size() - 8).value();
    detail::store_le<std::uint64_t>(reinterpret_cast<std::uint8_t*>(&bytes[bytes.size() - 8]), sum);
  }
  auto transport = std::make_shared<fuzz::MirrorTransport>(me, p);
  Reducer reducer(Communicator::from_transport(transport), fuzz::fuzz_layers(),
                  Config::parse(spec));
  std::istringstream stream(bytes);
  try {
    reducer.load_state(stream);
  } catch (const Error& e) {
    if (e.code() != ErrorCode::invalid_argument && e.code() != ErrorCode::mismatch)
      fuzz::violated("load_state: wrong error code");
    if (reducer.step() != 0) fuzz::violated("a refused state changed the step counter");
    return 0;
  }
  // Whatever was accepted must be usable: save it again and load that; with one rank
  // (MirrorTransport only mirrors symmetric steps) also run steps on it.
  std::stringstream again;
  reducer.save_state(again);
  Reducer other(Communicator::from_transport(transport), fuzz::fuzz_layers(), Config::parse(spec));
  try {
    other.load_state(again);
  } catch (const Error& e) {
    fuzz::violated(std::string("a re-saved accepted state was refused: ") + e.what());
  }
  if (other.step() != reducer.step()) fuzz::violated("the step counter did not round-trip");
  for (std::uint64_t s = 0; s < 2 && p == 1; ++s) {
    auto g = fuzz::fuzz_gradients(me, s);
    std::vector<TensorView> views;
    for (auto& v : g) views.push_back(TensorView::host(v.data(), v.size()));
    try {
      reducer.allreduce(views);
    } catch (const Error& e) {
      fuzz::violated(std::string("an accepted state made allreduce() fail: ") + e.what());
    }
  }
  return 0;
}
