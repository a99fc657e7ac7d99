// Top-k: every rank's fixed-size (index, value) payloads allgathered in one buffer; every
// rank scatter-adds the P payloads in rank order and divides by P, so all hold the same bits.
#pragma once

#include <cstdint>

#include "algorithm/algorithm.hpp"

namespace thinwire::detail {

class SparseAllgather final : public Algorithm {
 public:
  void run(const std::vector<StepLayer*>& layers, StepContext& ctx) override;

 private:
  std::vector<std::uint8_t> send_, recv_;
  std::vector<std::uint64_t> touched_;  // bitmap: entries already divided by P
};

}  // namespace thinwire::detail
