// libFuzzer harness: whole Reducer steps on 2..4 ranks (LocalGroup threads) in which one
// rank sends corrupted bytes: control blocks, top-k payloads (SparseAllgather), 1-bit and
// qsgd chunks in either phase (TwoPhase), dense and PowerSGD sums; or in which a rank's
// transport fails at a chosen call. Checked after every step:
//   - every rank has the same outcome: all return with identical bits, or all raise
//     thinwire::Error with the same code (the faulty bytes are the same for every
//     receiver, so every rank must reach the same verdict);
//   - no rank is left waiting for another (a timeout) unless a transport failed;
//   - after a transport failure the communicator is broken.
// Input: [ranks u8][spec u8][steps u8][fail rank u8][fail call u8][patches...]
// (fail call 0 = no failure, else the failing rank's call number + 1).
#include <cstring>

#include "local_group.hpp"
#include "thinwire/thinwire.hpp"

using namespace thinwire;

namespace {

struct Outcome {
  int code = 0;  // 0: returned; else the ErrorCode raised
  bool broken = false;
  std::vector<std::vector<float>> result;
  std::string what;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  fuzz::Input in(data, size);
  const int p = 2 + in.u8() % 3;
  const std::string& spec = fuzz::fuzz_specs()[in.u8() % fuzz::fuzz_specs().size()];
  const int steps = 1 + in.u8() % 3;
  const int fail_rank = in.u8() % p;
  const int fail_call = in.u8();
  fuzz::LocalGroup group(p);
  group.set_patches(fuzz::read_patches(in.rest(), in.rest_size()));
  if (fail_call) group.set_failure(fail_rank, fail_call - 1);

  // outcomes[step][rank]; step -1 (index 0) is construction.
  std::vector<std::vector<Outcome>> outcomes(static_cast<std::size_t>(steps) + 1,
                                             std::vector<Outcome>(static_cast<std::size_t>(p)));
  group.run([&](int rank) {
    const auto r = static_cast<std::size_t>(rank);
    Communicator comm = Communicator::from_transport(group.transport(rank));
    std::unique_ptr<Reducer> reducer;
    try {
      reducer = std::make_unique<Reducer>(comm, fuzz::fuzz_layers(), Config::parse(spec));
    } catch (const Error& e) {
      outcomes[0][r] = {static_cast<int>(e.code()), comm.broken(), {}, e.what()};
      return;
    }
    for (int s = 0; s < steps; ++s) {
      Outcome& o = outcomes[static_cast<std::size_t>(s) + 1][r];
      auto g = fuzz::fuzz_gradients(rank, static_cast<std::uint64_t>(s));
      std::vector<TensorView> views;
      for (auto& v : g) views.push_back(TensorView::host(v.data(), v.size()));
      try {
        reducer->allreduce(views);
        o.result = std::move(g);
      } catch (const Error& e) {
        o.code = static_cast<int>(e.code());
        o.what = e.what();
      }
      o.broken = comm.broken();
    }
  });

  for (std::size_t s = 0; s < outcomes.size(); ++s) {
    const std::vector<Outcome>& o = outcomes[s];
    auto where = [&](std::size_t r) {
      return "step " + std::to_string(static_cast<long>(s) - 1) + " rank " + std::to_string(r) +
             " (spec '" + spec + "'): ";
    };
    for (std::size_t r = 0; r < o.size(); ++r) {
      const bool transport_failure = o[r].code == static_cast<int>(ErrorCode::timeout) ||
                                     o[r].code == static_cast<int>(ErrorCode::transport_error);
      if (transport_failure != o[r].broken)
        fuzz::violated(where(r) + "transport failure and broken state disagree: " + o[r].what);
      if (transport_failure && !fail_call)
        fuzz::violated(where(r) + "left waiting for another rank: " + o[r].what);
      if (o[r].code != o[0].code)
        fuzz::violated(where(r) + "outcome differs from rank 0's: '" + o[r].what + "' vs '" +
                       o[0].what + "'");
      for (std::size_t l = 0; l < o[r].result.size(); ++l)
        if (o[r].result[l].size() != o[0].result[l].size() ||
            std::memcmp(o[r].result[l].data(), o[0].result[l].data(),
                        o[r].result[l].size() * sizeof(float)) != 0)
          fuzz::violated(where(r) + "result bits differ from rank 0's");
    }
    if (s == 0 && o[0].code) break;  // construction failed: no steps ran
  }
  return 0;
}
