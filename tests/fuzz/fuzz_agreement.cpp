// libFuzzer harness: the per-step control exchange (reducer/agreement.cpp) reading control
// blocks, layer hashes and layer descriptions sent by peers. Peers are MirrorTransport
// copies of this rank with fuzzed bytes flipped.
// Input: [ranks u8][rank u8][layers u8][status u8][flags u8][step u8][patches...]
#include "common/hash.hpp"
#include "common/strcat.hpp"
#include "fuzz_support.hpp"
#include "reducer/agreement.hpp"

using namespace thinwire;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  fuzz::Input in(data, size);
  const int p = 2 + in.u8() % 4;
  const int me = in.u8() % p;
  const std::size_t n_layers = in.u8() % 9;
  const std::uint8_t status_byte = in.u8();
  const std::uint32_t flags = in.u8() & detail::kFlagSkipStep;
  const std::uint64_t step = in.u8();
  fuzz::MirrorTransport transport(me, p);
  transport.set_patches(fuzz::read_patches(in.rest(), in.rest_size()));

  std::vector<std::uint64_t> hashes;
  for (std::size_t i = 0; i < n_layers; ++i) hashes.push_back(detail::Hasher().u64(i).value());
  detail::LocalStatus status;
  if (status_byte & 1)
    status = detail::LocalStatus::failure(static_cast<ErrorCode>(1 + (status_byte >> 1) % 6),
                                          std::string(status_byte, 'x'));
  try {
    const detail::AgreementResult r = detail::check_agreement(
        transport, "step", status, step, hashes,
        [](std::size_t i) { return detail::cat("layer ", i); }, flags);
    if (!status.ok) fuzz::violated("a rank that failed locally passed the agreement");
    if ((r.flags & flags) != flags) fuzz::violated("this rank's flags were lost");
  } catch (const Error&) {
  }
  return 0;
}
