// Shared by the libFuzzer harnesses (fuzz_*.cpp) and the seed generator (make_seeds.cpp):
// the input formats, and MirrorTransport, a fake group of ranks whose peers are copies of
// this rank with fuzzer-chosen bytes flipped, so that a harness can run the real
// collectives and decoders on bytes "from the wire" without MPI.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "thinwire/error.hpp"
#include "thinwire/layer.hpp"
#include "thinwire/transport.hpp"

namespace thinwire::fuzz {

// An invariant of the library was broken: report and abort, so libFuzzer records a crash.
[[noreturn]] inline void violated(const std::string& what) {
  std::fprintf(stderr, "fuzz invariant violated: %s\n", what.c_str());
  std::abort();
}

// Reads the fixed prefix of an input; past the end it yields zeros.
class Input {
 public:
  Input(const std::uint8_t* data, std::size_t size) : data_(data), size_(size) {}
  std::uint8_t u8() { return at_ < size_ ? data_[at_++] : 0; }
  std::uint16_t u16() { return static_cast<std::uint16_t>(u8() | (u8() << 8)); }
  std::uint32_t u24() { return u16() | (static_cast<std::uint32_t>(u8()) << 16); }
  const std::uint8_t* rest() const { return data_ + (at_ < size_ ? at_ : size_); }
  std::size_t rest_size() const { return at_ < size_ ? size_ - at_ : 0; }

 private:
  const std::uint8_t* data_;
  std::size_t size_;
  std::size_t at_ = 0;
};

// ---- codec harnesses: [flags u8][n u16][param bytes p0 p1 p2][payload...] ----------------
constexpr std::size_t kCodecPrefixBytes = 6;
struct CodecInput {
  std::uint8_t flags = 0;  // bit 0: decode by accumulating
  std::uint16_t n = 0;     // elements the receiver expects (reduced modulo the harness's cap)
  std::uint8_t p[3] = {0, 0, 0};
};
inline std::vector<std::uint8_t> codec_input(const CodecInput& c,
                                             const std::vector<std::uint8_t>& payload) {
  std::vector<std::uint8_t> out = {
      c.flags, static_cast<std::uint8_t>(c.n), static_cast<std::uint8_t>(c.n >> 8), c.p[0], c.p[1],
      c.p[2]};
  out.insert(out.end(), payload.begin(), payload.end());
  return out;
}
// topk: density = (p0 | p1 << 8) + 1) / 65536, in (0, 1].
inline double topk_density(const std::uint8_t* p) {
  return ((p[0] | (p[1] << 8)) + 1) / 65536.0;
}
// qsgd: bits = 2 + p0 % 7; bucket = 1 + (p1 | p2 << 8).
inline int qsgd_bits(const std::uint8_t* p) {
  return 2 + p[0] % 7;
}
inline std::size_t qsgd_bucket(const std::uint8_t* p) {
  return 1 + (p[1] | (p[2] << 8));
}

// ---- reducer harnesses (state_load, reducer_step) ----------------------------------------
// Small layers (one below the default min_numel, so every route appears) and one spec per
// method and feedback variant; an input byte picks the spec.
inline const std::vector<Layer>& fuzz_layers() {
  static const std::vector<Layer> layers = {{"w", {24, 20}}, {"b", {20}}, {"v", {7, 3}}};
  return layers;
}
inline const std::vector<std::string>& fuzz_specs() {
  static const std::vector<std::string> specs = {"none",
                                                 "topk:0.05,min_numel=16",
                                                 "topk:0.1,select=sampled,ef=econtrol,min_numel=16",
                                                 "topk:0.2,ef=none,min_numel=0",
                                                 "onebit,min_numel=16",
                                                 "onebit,ef=econtrol,min_numel=16",
                                                 "onebit,ef=none,min_numel=0",
                                                 "qsgd:4,min_numel=16",
                                                 "qsgd:3,ef=none,bucket=7,min_numel=0",
                                                 "qsgd:2,ef=econtrol,bucket=64,min_numel=16",
                                                 "powersgd:2,min_numel=16",
                                                 "powersgd:1,ef=econtrol,min_numel=0",
                                                 "topk:0.05,warmup=1,min_numel=16"};
  return specs;
}
// Gradients of rank `rank` at `step`: a fixed pattern of signs and magnitudes.
inline std::vector<std::vector<float>> fuzz_gradients(int rank, std::uint64_t step) {
  std::vector<std::vector<float>> g;
  std::uint32_t x = 0x9e3779b9u ^ static_cast<std::uint32_t>(rank * 7919 + step * 104729);
  for (const Layer& l : fuzz_layers()) {
    g.emplace_back(l.numel());
    for (float& v : g.back()) {
      x = x * 1664525u + 1013904223u;
      v = static_cast<float>(static_cast<std::int32_t>(x >> 8) - (1 << 23)) / (1 << 22);
    }
  }
  return g;
}

// ---- MirrorTransport --------------------------------------------------------------------
// A patch flips bytes of what one peer contributes to one collective call.
struct Patch {
  std::uint32_t call = 0;    // collective calls counted from 0 (all kinds)
  std::uint32_t peer = 0;    // index among the other ranks (modulo size - 1)
  std::uint32_t offset = 0;  // byte in that peer's block (modulo the block size)
  std::uint8_t xor_mask = 0;
};
constexpr std::size_t kPatchBytes = 6;  // call u8, peer u8, offset u24, xor u8
std::vector<Patch> read_patches(const std::uint8_t* data, std::size_t size);
std::vector<std::uint8_t> write_patches(const std::vector<Patch>& patches);

// data[0..count) = parts[0] op parts[1] op ... in rank order (each part count elements).
void reduce_in_rank_order(void* data, std::size_t count, ElementType type, ReduceOp op,
                          const std::vector<std::vector<std::uint8_t>>& parts);

// Rank `rank` of `size`. Every peer behaves as a copy of this rank: in an allgather it
// sends what this rank sends, in an alltoall it sends this rank the block this rank sends
// itself, in an allreduce it contributes this rank's data; then the patches flip bytes of
// individual peers' contributions. Call number `fail_call` (when >= 0) throws
// Error(timeout), as a dead peer would.
class MirrorTransport final : public Transport {
 public:
  MirrorTransport(int rank, int size) : rank_(rank), size_(size) {}
  void set_patches(std::vector<Patch> patches) { patches_ = std::move(patches); }
  void set_fail_call(long call) { fail_call_ = call; }
  void reset_calls() { calls_ = 0; }
  std::uint32_t calls() const { return calls_; }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  const char* name() const override { return "mirror"; }
  void allreduce(void* data, std::size_t count, ElementType type, ReduceOp op) override;
  void allgather(const void* send, void* recv, std::size_t bytes) override;
  void alltoall(const void* send, void* recv, std::size_t bytes) override;
  void broadcast(void* data, std::size_t bytes, int root) override;
  void barrier() override { begin_call(); }

 private:
  std::uint32_t begin_call();
  // Applies this call's patches to the block of peer `r` (r != rank_).
  void patch(std::uint32_t call, int r, std::uint8_t* block, std::size_t bytes) const;
  int rank_, size_;
  std::vector<Patch> patches_;
  long fail_call_ = -1;
  std::uint32_t calls_ = 0;
  std::vector<std::uint8_t> scratch_;
};

}  // namespace thinwire::fuzz
