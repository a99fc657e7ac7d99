// Element ranges of a buffer that exists only as the concatenation of its parts (a step's
// dense layers, F32Span): which pieces of which parts a range [begin, end) covers, so that
// thinwire's ring can send, receive and sum a chunk of the concatenation where its parts are.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <vector>

#include "transport/average.hpp"

namespace thinwire::detail {

class SpanMap {
 public:
  SpanMap(const F32Span* spans, std::size_t n) : spans_(spans), starts_(n + 1, 0) {
    for (std::size_t i = 0; i < n; ++i) starts_[i + 1] = starts_[i] + spans[i].count;
  }
  std::size_t total() const { return starts_.back(); }
  // The data when there is one span (nothing to pack), else nullptr.
  float* contiguous() const { return starts_.size() == 2 ? spans_[0].data : nullptr; }
  // The concatenation into `out` (total() elements), and back from it.
  void pack(float* out) const {
    for_pieces(0, total(), [&](float* piece, std::size_t off, std::size_t n) {
      std::memcpy(out + off, piece, n * sizeof(float));
    });
  }
  void unpack(const float* in) const {
    for_pieces(0, total(), [&](float* piece, std::size_t off, std::size_t n) {
      std::memcpy(piece, in + off, n * sizeof(float));
    });
  }

  // fn(float* piece, std::size_t offset, std::size_t count) for each non-empty piece of
  // [begin, end), in order; `offset` is the piece's position relative to `begin`. Every rank
  // with the same span sizes cuts a range at the same places.
  template <typename F>
  void for_pieces(std::size_t begin, std::size_t end, F&& fn) const {
    if (begin >= end) return;
    // The last span that starts at or before `begin`.
    std::size_t i = static_cast<std::size_t>(
                        std::upper_bound(starts_.begin(), starts_.end(), begin) - starts_.begin()) -
                    1;
    for (std::size_t at = begin; at < end; ++i) {
      const std::size_t span_end = starts_[i + 1];
      if (span_end <= at) continue;  // an empty span
      const std::size_t stop = std::min(end, span_end);
      fn(spans_[i].data + (at - starts_[i]), at - begin, stop - at);
      at = stop;
    }
  }

 private:
  const F32Span* spans_;
  std::vector<std::size_t> starts_;  // starts_[i]: where span i begins; back(): the total
};

}  // namespace thinwire::detail
