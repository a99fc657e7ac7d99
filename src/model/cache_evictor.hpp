// Passing over a buffer the size of the last-level cache, so that what runs next finds its
// operands in memory, not in cache (the kernel probes of model/codec_rates).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

#include <unistd.h>

namespace thinwire::detail::model {

// A training step streams its layers through memory once, after a backward pass that has
// evicted the compressors' buffers, so kernels are timed on cold caches: before each timed
// call this buffer, the size of the last-level cache (8 to 128 MiB), is passed over. Timed
// warm, the kernels of a 16 MiB layer ran 1.5-2.5x faster than inside Reducer steps on the
// development VM.
//
// The pass writes as many bytes as the step has written before the kernel (its gradient, as
// the backward pass or the benchmark's copy-in writes it: `dirty_bytes`, at most the buffer)
// and reads the rest, so that the kernel pays the write-back of as many dirty lines as in a
// step. Written whole, the buffer charged a 4 MiB kernel for the buffer's write-back, which its
// step never pays (what a 4 MiB step writes stays in cache from call to call), and how much
// depended on the L3 size the VM reported that day: on the EPYC VM of 2026-12-03 (256 MiB
// reported, so 128 MiB written), 2 emulated hosts at 500 Mbit/s, the 4 MiB steps of onebit,
// topk:0.01 and powersgd:4 were predicted 78-93 % slow and the 16 MiB ones up to 49 %; with
// this pass, two runs of 4, 16 and 64 MiB were predicted between -17 % and +18 %. With the
// buffer only read, a 64 MiB step's kernels went without the write-back of the step's earlier
// passes: predicted 7-22 % fast (2026-12-02).
class CacheEvictor {
 public:
  // The last-level cache's size as the OS reports it, clamped to 8-128 MiB.
  static std::size_t buffer_bytes() {
    long llc = 0;
#ifdef _SC_LEVEL3_CACHE_SIZE
    llc = sysconf(_SC_LEVEL3_CACHE_SIZE);
#endif
    return std::clamp<std::size_t>(llc > 0 ? static_cast<std::size_t>(llc) : 0, 8u << 20,
                                   128u << 20);
  }
  explicit CacheEvictor(std::size_t dirty_bytes) {
    lines_.assign(buffer_bytes() / sizeof(Line), Line{});  // real pages, before any timing
    dirty_lines_ = std::min(lines_.size(), (dirty_bytes + sizeof(Line) - 1) / sizeof(Line));
  }
  void evict() {
    ++round_;
    for (std::size_t i = 0; i < dirty_lines_; ++i) lines_[i].word[0] = round_;
    std::uint64_t sum = 0;
    for (std::size_t i = dirty_lines_; i < lines_.size(); ++i) sum += lines_[i].word[0];
    sink_ = sum;  // the loads are observed, so they happen
  }

 private:
  struct alignas(64) Line {
    std::uint64_t word[8];
  };
  std::vector<Line> lines_;
  std::size_t dirty_lines_ = 0;
  std::uint64_t round_ = 0;
  volatile std::uint64_t sink_ = 0;
};

}  // namespace thinwire::detail::model
