// Failure paths found by fuzzing (tests/fuzz), replayed as unit tests in one process:
// peers simulated by tests/fuzz's MirrorTransport (copies of this rank with flipped bytes)
// and LocalGroup (one thread per rank).
#include <gtest/gtest.h>

#include <cstring>
#include <sstream>

#include "common/bytes.hpp"
#include "common/hash.hpp"
#include "compress/onebit_codec.hpp"
#include "compress/qsgd_codec.hpp"
#include "compress/topk_codec.hpp"
#include "fuzz_support.hpp"
#include "local_group.hpp"
#include "reducer/agreement.hpp"
#include "test_support.hpp"

namespace thinwire::test {
namespace {

// Decoding an empty layer must not touch the (null) output: memset(nullptr, 0, 0) is
// undefined behaviour that UBSan reports.
TEST(FailurePaths, TopkDecodesAnEmptyLayerIntoANullBuffer) {
  detail::TopkCodec codec(0.5, Selection::exact);
  std::vector<std::uint8_t> payload(codec.encoded_bytes(0));
  codec.encode(nullptr, 0, {}, payload.data(), nullptr);
  codec.decode(payload.data(), payload.size(), 0, nullptr, detail::DecodeMode::assign,
               {"empty", 0, 0});
  codec.decode(payload.data(), payload.size(), 0, nullptr, detail::DecodeMode::accumulate,
               {"empty", 0, 0});
}

// Records the size of every allgather, and lets one peer claim 2^60 layers.
class CountingMirror final : public Transport {
 public:
  explicit CountingMirror(std::uint64_t claimed_layers) : inner_(0, 2) {
    // Bytes 16..23 of the control block are the layer count: peer 1 sets its bit 60 (call 0)
    // and sends a different hash for layer 3 (call 1, bytes 24..31).
    inner_.set_patches(
        {{0, 0, 16 + 7, static_cast<std::uint8_t>(claimed_layers >> 56)}, {1, 0, 24, 0x01}});
  }
  int rank() const override { return 0; }
  int size() const override { return 2; }
  const char* name() const override { return "counting"; }
  void allreduce(void* d, std::size_t c, ElementType t, ReduceOp o) override {
    inner_.allreduce(d, c, t, o);
  }
  void allgather(const void* s, void* r, std::size_t b) override {
    sizes.push_back(b);
    inner_.allgather(s, r, b);
  }
  void alltoall(const void* s, void* r, std::size_t b) override { inner_.alltoall(s, r, b); }
  void broadcast(void* d, std::size_t b, int root) override { inner_.broadcast(d, b, root); }
  void barrier() override { inner_.barrier(); }
  std::vector<std::size_t> sizes;

 private:
  fuzz::MirrorTransport inner_;
};

// A peer's layer count used to size the per-layer hash exchange: 2^60 layers made every
// rank try to allocate 2^63 bytes (std::length_error, not a thinwire::Error).
TEST(FailurePaths, APeersLayerCountNeverSizesAnAllocation) {
  CountingMirror transport(std::uint64_t{1} << 60);
  const std::vector<std::uint64_t> hashes = {11, 22, 33};
  auto err = error_from([&] {
    detail::check_agreement(transport, "step", {}, 0, hashes,
                            [](std::size_t i) { return "layer " + std::to_string(i); });
  });
  ASSERT_TRUE(err.has_value());
  EXPECT_EQ(err->code(), ErrorCode::mismatch);
  EXPECT_NE(std::string(err->what()).find("on layer 3"), std::string::npos) << err->what();
  ASSERT_GE(transport.sizes.size(), 2u);
  EXPECT_EQ(transport.sizes[1], (hashes.size() + 1) * 8);  // this rank's layers and one more
}

// A control block claiming a transport failure is corrupt: no rank reports one that way
// (its transport would have failed before). Raising `timeout` without a broken
// communicator would contradict what the code promises; it is raised as `internal`.
TEST(FailurePaths, AControlBlockClaimingATimeoutIsInternal) {
  fuzz::MirrorTransport transport(0, 3);
  transport.set_patches({{0, 1, 4, static_cast<std::uint8_t>(ErrorCode::timeout)}});  // status
  auto err = error_from([&] {
    detail::check_agreement(transport, "step", {}, 0, {1, 2},
                            [](std::size_t i) { return std::to_string(i); });
  });
  ASSERT_TRUE(err.has_value());
  EXPECT_EQ(err->code(), ErrorCode::internal) << err->what();
  EXPECT_NE(std::string(err->what()).find("failed on rank 2"), std::string::npos) << err->what();
}

// Two-phase: a chunk that only its server sees is corrupt. The server used to throw before
// the allgather, leaving the other ranks waiting there until THINWIRE_TIMEOUT_S; now it
// sends a poisoned block and every rank raises the same error at once.
TEST(FailurePaths, ACorruptChunkSeenByItsServerFailsEveryRankAlike) {
  const int p = 3;
  const std::vector<Layer> layers = {{"w", {4096}}};
  for (const char* spec : {"onebit", "qsgd:4", "onebit,ef=econtrol"}) {
    const Config config = Config::parse(spec);
    std::unique_ptr<detail::Compressor> codec =
        config.method == Method::onebit
            ? std::unique_ptr<detail::Compressor>(new detail::OnebitCodec())
            : std::unique_ptr<detail::Compressor>(new detail::QsgdCodec(4, 512, true));
    const std::size_t block = codec->encoded_bytes(detail::ceil_div(4096, p));
    // Calls: 0 construction's control exchange, then per step: control, alltoall, allgather.
    // EControl sends its first step dense (control, allreduce): its alltoall is call 4.
    const std::uint32_t alltoall = config.ef == ErrorFeedback::econtrol ? 4 : 2;
    fuzz::LocalGroup group(p);
    // Rank 2's block for rank 1: break the magic of its payload header.
    group.set_patches({{alltoall, 2, static_cast<std::uint32_t>(block * 1), 0xff}});
    std::vector<std::string> raised(p);
    std::vector<std::vector<std::vector<float>>> after(p);
    group.run([&](int rank) {
      Reducer r(Communicator::from_transport(group.transport(rank)), layers, config);
      const int steps_before = config.ef == ErrorFeedback::econtrol ? 1 : 0;
      for (int s = 0; s < steps_before; ++s) {
        std::vector<std::vector<float>> g = {seeded_normal(3, rank, 0, s, 4096)};
        r.allreduce(views(g));
      }
      std::vector<std::vector<float>> g = {seeded_normal(3, rank, 0, 7, 4096)};
      auto err = error_from([&] { r.allreduce(views(g)); });
      if (err) {
        EXPECT_EQ(err->code(), ErrorCode::invalid_argument) << err->what();
        EXPECT_FALSE(r.communicator().broken());
        const std::string what = err->what();
        raised[static_cast<std::size_t>(rank)] = what.substr(what.find("]: ") + 3);
      }
      // Nothing was decoded into a result: the next step runs on every rank.
      after[static_cast<std::size_t>(rank)] = {seeded_normal(3, rank, 0, 8, 4096)};
      r.allreduce(views(after[static_cast<std::size_t>(rank)]));
    });
    for (int r = 0; r < p; ++r) {
      EXPECT_EQ(raised[static_cast<std::size_t>(r)], raised[0]) << spec << " rank " << r;
      EXPECT_EQ(0, std::memcmp(after[static_cast<std::size_t>(r)][0].data(), after[0][0].data(),
                               4096 * sizeof(float)))
          << spec;
    }
    EXPECT_NE(raised[0].find("rank 1 rejected a chunk it serves"), std::string::npos)
        << spec << ": " << raised[0];
    EXPECT_NE(raised[0].find("payload from rank 2 for layer 'w'"), std::string::npos)
        << spec << ": " << raised[0];
  }
}

}  // namespace
}  // namespace thinwire::test
