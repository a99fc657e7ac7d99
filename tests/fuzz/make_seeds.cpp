// Writes the seed corpus of every fuzz harness from valid payloads: real encodings, real
// checkpoints and real specs, in each harness's input format (fuzz_support.hpp). Run by
// tests/fuzz/make_corpus.sh; deterministic, so the committed corpus can be regenerated.
//   thinwire_fuzz_seeds OUT_DIR    (writes OUT_DIR/<harness>/<seed>)
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/bytes.hpp"
#include "compress/onebit_codec.hpp"
#include "compress/qsgd_codec.hpp"
#include "compress/topk_codec.hpp"
#include "fuzz_support.hpp"
#include "local_group.hpp"
#include "thinwire/thinwire.hpp"

using namespace thinwire;
namespace fs = std::filesystem;

namespace {

fs::path g_out;

void write(const std::string& harness, const std::string& name,
           const std::vector<std::uint8_t>& bytes) {
  const fs::path dir = g_out / harness;
  fs::create_directories(dir);
  std::ofstream f(dir / name, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  if (!f) {
    std::fprintf(stderr, "cannot write %s\n", (dir / name).c_str());
    std::exit(1);
  }
}

std::vector<float> signal(std::size_t n, std::uint32_t seed) {
  std::vector<float> x(n);
  for (std::size_t i = 0; i < n; ++i) {
    seed = seed * 1664525u + 1013904223u;
    x[i] = std::sin(0.37f * static_cast<float>(i)) * static_cast<float>(seed >> 20) / 512.0f;
  }
  return x;
}

std::vector<std::uint8_t> encode(detail::Compressor& codec, std::size_t n, std::uint32_t seed) {
  std::vector<std::uint8_t> out(codec.encoded_bytes(n));
  const std::vector<float> x = signal(n, seed);
  detail::EncodeKey key;
  key.seed = seed;
  codec.encode(x.data(), n, key, out.data(), nullptr);
  return out;
}

fuzz::CodecInput prefix(std::size_t n, std::uint8_t flags, std::uint8_t p0 = 0, std::uint8_t p1 = 0,
                        std::uint8_t p2 = 0) {
  fuzz::CodecInput c;
  c.flags = flags;
  c.n = static_cast<std::uint16_t>(n);
  c.p[0] = p0, c.p[1] = p1, c.p[2] = p2;
  return c;
}

std::vector<std::uint8_t> wire_seed(Method m, std::uint64_t n,
                                    const std::vector<std::uint8_t>& payload) {
  std::vector<std::uint8_t> out(9 + payload.size());
  out[0] = static_cast<std::uint8_t>(static_cast<int>(m) - 1);
  detail::store_le<std::uint64_t>(out.data() + 1, n);
  std::copy(payload.begin(), payload.end(), out.begin() + 9);
  return out;
}

void codec_seeds() {
  // topk: density code d gives (d + 1) / 65536.
  for (std::uint16_t d : {std::uint16_t{654}, std::uint16_t{6553}, std::uint16_t{65535}})
    for (std::size_t n : {0, 1, 100, 4096}) {
      detail::TopkCodec codec((d + 1) / 65536.0, Selection::exact);
      const auto payload = encode(codec, n, 7);
      const std::string name = "d" + std::to_string(d) + "_n" + std::to_string(n);
      write("topk_decode", name,
            fuzz::codec_input(
                prefix(n, n % 2, static_cast<std::uint8_t>(d), static_cast<std::uint8_t>(d >> 8)),
                payload));
      if (n == 100) write("wire_header", "topk_" + name, wire_seed(Method::topk, n, payload));
    }
  for (std::size_t n : {0, 1, 7, 9, 1000, 20000}) {
    detail::OnebitCodec codec;
    const auto payload = encode(codec, n, 11);
    write("onebit_decode", "n" + std::to_string(n), fuzz::codec_input(prefix(n, n % 2), payload));
    if (n == 9) write("wire_header", "onebit_n9", wire_seed(Method::onebit, n, payload));
  }
  struct Q {
    int bits;
    std::size_t bucket, n;
  };
  for (const Q& q : {Q{2, 512, 1000}, Q{3, 7, 100}, Q{4, 512, 5000}, Q{5, 1, 33}, Q{6, 64, 300},
                     Q{7, 100, 257}, Q{8, 512, 4097}, Q{4, 4096, 0}}) {
    detail::QsgdCodec codec(q.bits, q.bucket, true);
    const auto payload = encode(codec, q.n, 13);
    const std::size_t b = q.bucket - 1;
    const std::string name =
        "b" + std::to_string(q.bits) + "_k" + std::to_string(q.bucket) + "_n" + std::to_string(q.n);
    write("qsgd_decode", name,
          fuzz::codec_input(prefix(q.n, (q.n % 2) | 2, static_cast<std::uint8_t>(q.bits - 2),
                                   static_cast<std::uint8_t>(b), static_cast<std::uint8_t>(b >> 8)),
                            payload));
    if (q.n == 100) write("wire_header", "qsgd_" + name, wire_seed(Method::qsgd, q.n, payload));
  }
}

void config_seeds() {
  int i = 0;
  for (const std::string& s : fuzz::fuzz_specs())
    write("config_parse", "spec" + std::to_string(i++), {s.begin(), s.end()});
  for (const char* s : {"adaptive:powersgd,period=10", "topk:0.01,dgc=on,momentum=0.9,clip=1.5",
                        "qsgd:8,bucket=16777216,seed=18446744073709551615,nan=skip",
                        "onebit,ef=econtrol,eta=0.25,warmup=100,nan=propagate", " none ",
                        "topk:1e-3 , select = sampled"}) {
    const std::string t = s;
    write("config_parse", "spec" + std::to_string(i++), {t.begin(), t.end()});
  }
}

void agreement_seeds() {
  // [ranks-2][rank][layers][status][flags][step][patches]
  write("agreement", "agree", {1, 1, 3, 0, 0, 5});
  write("agreement", "failed", {0, 0, 2, 5, 0, 0});
  write("agreement", "skip", {2, 3, 4, 0, 1, 9});
  // A peer with another layer count (byte 16 of its control block), and another step.
  write("agreement", "layers", {1, 0, 3, 0, 0, 1, 0, 0, 16, 0, 0, 1});
  write("agreement", "step", {1, 2, 3, 0, 0, 1, 0, 1, 8, 0, 0, 4});
  write("agreement", "digest", {0, 0, 5, 0, 0, 1, 0, 0, 24, 0, 0, 0x40});
}

std::vector<std::vector<float>> step(Reducer& r, int me, std::uint64_t s) {
  auto g = fuzz::fuzz_gradients(me, s);
  std::vector<TensorView> views;
  for (auto& v : g) views.push_back(TensorView::host(v.data(), v.size()));
  r.allreduce(views);
  return g;
}

void reducer_seeds() {
  const auto& specs = fuzz::fuzz_specs();
  for (std::size_t k = 0; k < specs.size(); ++k) {
    // A checkpoint after three steps, of rank 1 of 3 and (for some specs) of a single rank.
    for (int p : {3, 1}) {
      if (p == 1 && k % 3) continue;
      const int me = p > 1 ? 1 : 0;
      std::string bytes;
      fuzz::LocalGroup group(p);
      group.run([&](int rank) {
        Reducer r(Communicator::from_transport(group.transport(rank)), fuzz::fuzz_layers(),
                  Config::parse(specs[k]));
        for (std::uint64_t s = 0; s < 3; ++s) step(r, rank, s);
        std::ostringstream saved;
        r.save_state(saved);
        if (rank == me) bytes = saved.str();
      });
      std::vector<std::uint8_t> seed = {static_cast<std::uint8_t>(p - 1),
                                        static_cast<std::uint8_t>(me), static_cast<std::uint8_t>(k),
                                        0};
      seed.insert(seed.end(), bytes.begin(), bytes.end());
      write("state_load", "spec" + std::to_string(k) + "_p" + std::to_string(p), seed);
    }
    // Two clean steps on 2 ranks; three on 3 ranks with one byte of rank 1's first payload
    // call (call 1; call 0 is construction's control exchange, call 1 the first step's)
    // flipped.
    write("reducer_step", "spec" + std::to_string(k), {0, static_cast<std::uint8_t>(k), 1, 0, 0});
    std::vector<std::uint8_t> patched = {1, static_cast<std::uint8_t>(k), 2, 0, 0};
    const auto patch = fuzz::write_patches({{2, 1, 40, 0x01}});
    patched.insert(patched.end(), patch.begin(), patch.end());
    write("reducer_step", "spec" + std::to_string(k) + "_patched", patched);
  }
  // Rank 1 of 3 stops answering at its fourth call.
  write("reducer_step", "fail", {1, 4, 2, 1, 4});
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s OUT_DIR\n", argv[0]);
    return 2;
  }
  g_out = argv[1];
  codec_seeds();
  config_seeds();
  agreement_seeds();
  reducer_seeds();
  return 0;
}
