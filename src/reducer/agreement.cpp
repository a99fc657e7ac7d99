#include "reducer/agreement.hpp"

#include <algorithm>
#include <cstring>

#include "common/bytes.hpp"
#include "common/fail.hpp"
#include "common/hash.hpp"
#include "reducer/step.hpp"

namespace thinwire::detail {

namespace {

constexpr std::uint32_t kControlMagic = 0x4c435754u;  // "TWCL"
constexpr std::size_t kMessageOffset = 40;
constexpr std::size_t kMessageBytes = kControlBlockBytes - kMessageOffset;

struct Control {
  std::uint32_t status = 0;  // 0 ok, else ErrorCode
  std::uint64_t step = 0;
  std::uint64_t n_layers = 0;
  std::uint64_t digest = 0;
  std::uint32_t flags = 0;
  std::string message;
};

void write_control(std::uint8_t* out, const Control& c) {
  std::memset(out, 0, kControlBlockBytes);
  store_le<std::uint32_t>(out, kControlMagic);
  store_le<std::uint32_t>(out + 4, c.status);
  store_le<std::uint64_t>(out + 8, c.step);
  store_le<std::uint64_t>(out + 16, c.n_layers);
  store_le<std::uint64_t>(out + 24, c.digest);
  store_le<std::uint32_t>(out + 32, c.flags);
  std::memcpy(out + kMessageOffset, c.message.data(),
              std::min(c.message.size(), kMessageBytes - 1));
}

Control read_control(const std::uint8_t* in, int from, int me) {
  if (load_le<std::uint32_t>(in) != kControlMagic)
    fail_with(ErrorCode::mismatch, "agreement", me, "rank ", from,
              " sent a control block without thinwire's magic: it is running different code or "
              "its collectives are out of order");
  Control c;
  c.status = load_le<std::uint32_t>(in + 4);
  c.step = load_le<std::uint64_t>(in + 8);
  c.n_layers = load_le<std::uint64_t>(in + 16);
  c.digest = load_le<std::uint64_t>(in + 24);
  c.flags = load_le<std::uint32_t>(in + 32);
  const char* msg = reinterpret_cast<const char*>(in + kMessageOffset);
  c.message.assign(msg, strnlen(msg, kMessageBytes));
  return c;
}

// Fixed-size text block for the description exchange.
constexpr std::size_t kDescribeBytes = 512;

}  // namespace

AgreementResult check_agreement(Transport& transport, const char* what, const LocalStatus& status,
                                std::uint64_t step, const std::vector<std::uint64_t>& layer_hashes,
                                const std::function<std::string(std::size_t)>& describe,
                                std::uint32_t flags) {
  const int p = transport.size(), me = transport.rank();
  const auto pu = static_cast<std::size_t>(p);
  Hasher digest;
  for (std::uint64_t h : layer_hashes) digest.u64(h);
  Control mine;
  mine.status = status.ok ? 0u : static_cast<std::uint32_t>(status.code);
  mine.step = step;
  mine.n_layers = layer_hashes.size();
  mine.digest = digest.value();
  mine.flags = flags;
  mine.message = status.message;

  std::vector<std::uint8_t> send(kControlBlockBytes), recv(kControlBlockBytes * pu);
  write_control(send.data(), mine);
  transport.allgather(send.data(), recv.data(), kControlBlockBytes);
  std::uint64_t sent = allgather_bytes(kControlBlockBytes, p);
  std::vector<Control> all;
  for (int r = 0; r < p; ++r)
    all.push_back(read_control(recv.data() + r * kControlBlockBytes, r, me));

  // 1. A rank that failed locally: everyone raises its error.
  std::vector<int> failed;
  for (int r = 0; r < p; ++r)
    if (all[r].status != 0) failed.push_back(r);
  if (!failed.empty()) {
    const int first = failed.front();
    auto code = static_cast<ErrorCode>(all[first].status);
    // Only errors a rank finds locally travel in a control block: a transport code (which
    // would claim a broken communicator) or an unknown one means the block is corrupt.
    if (code != ErrorCode::invalid_argument && code != ErrorCode::mismatch &&
        code != ErrorCode::unsupported)
      code = ErrorCode::internal;
    const std::string& msg = first == me ? status.message : all[first].message;
    std::string others;
    if (failed.size() > 1)
      others = cat(" (", failed.size() - 1, " more rank(s) failed too, first of them rank ",
                   failed[1], ")");
    fail_with(code, "reducer", me, what, " failed on rank ", first, ": ", msg, others);
  }

  // 2. Out of step: a rank skipped or repeated a call.
  for (int r = 1; r < p; ++r)
    if (all[r].step != all[0].step)
      fail_with(ErrorCode::mismatch, "agreement", me, "ranks are out of step at ", what,
                ": rank 0 is at step ", all[0].step, " but rank ", r, " at step ", all[r].step,
                " (every rank must call allreduce() the same number of times)");

  // 3. Layers, shapes, dtypes or specs differ: find and name the first differing layer.
  bool same = true;
  for (int r = 1; r < p; ++r)
    same = same && all[r].n_layers == all[0].n_layers && all[r].digest == all[0].digest;
  if (same) {
    AgreementResult result{sent, 0};
    for (const Control& c : all) result.flags |= c.flags;
    return result;
  }

  // Compare the layers every rank has, and one more: a rank with fewer layers differs from
  // the others at its first missing one. The count is bounded by this rank's own layers, so
  // a peer's count, however large, never sizes an allocation or a message.
  std::uint64_t min_layers = all[0].n_layers, max_layers = all[0].n_layers;
  for (const Control& c : all) {
    min_layers = std::min(min_layers, c.n_layers);
    max_layers = std::max(max_layers, c.n_layers);
  }
  const std::size_t compared = static_cast<std::size_t>(std::min(max_layers, min_layers + 1));
  // Per-layer hashes, padded with a marker for "no such layer on this rank".
  const std::uint64_t kMissing = 0x6d697373696e6721ull;
  std::vector<std::uint64_t> mine_h(compared, kMissing), all_h(compared * pu);
  std::copy_n(layer_hashes.begin(), std::min(layer_hashes.size(), compared), mine_h.begin());
  transport.allgather(mine_h.data(), all_h.data(), compared * 8);
  sent += allgather_bytes(compared * 8, p);
  std::size_t first = compared;
  for (std::size_t i = 0; i < compared && first == compared; ++i)
    for (int r = 1; r < p; ++r)
      if (all_h[r * compared + i] != all_h[i]) {
        first = i;
        break;
      }
  if (first == compared) first = 0;  // digests differed but no layer did: a hash collision

  std::vector<char> text(kDescribeBytes, 0), texts(kDescribeBytes * pu);
  const std::string d = first < layer_hashes.size() ? describe(first)
                                                    : cat("no layer ", first, " (this rank has ",
                                                          layer_hashes.size(), " layers)");
  std::memcpy(text.data(), d.data(), std::min(d.size(), kDescribeBytes - 1));
  transport.allgather(text.data(), texts.data(), kDescribeBytes);
  sent += allgather_bytes(kDescribeBytes, p);
  std::string detail;
  for (int r = 0; r < p; ++r) {
    const char* t = texts.data() + r * kDescribeBytes;
    detail += cat(r ? "; " : "", "rank ", r, ": ", std::string(t, strnlen(t, kDescribeBytes)));
  }
  fail_with(ErrorCode::mismatch, "agreement", me, "ranks disagree at ", what, " on layer ", first,
            ": ", detail);
}

}  // namespace thinwire::detail
