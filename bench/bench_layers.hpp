// Layer sets for the allreduce benchmark and the cost model: one tensor, or a transformer-like
// mix of matrices and vectors, of about a given size; and "64M"-style sizes.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "thinwire/layer.hpp"

namespace thinwire::bench {

// "single": one layer of bytes/4 f32 elements, shaped [rows, cols] with rows the largest power
// of two <= sqrt(n) that divides n (so PowerSGD sees a matrix), or [n] when that is 1.
// "mix": transformer blocks (qkv, proj, fc1, fc2 weights, their biases and two LayerNorms:
// 12d^2 + 13d elements per block), 4 blocks with d a multiple of 32 chosen so that the total
// is close to `bytes` (never below one block of d = 32).
// Throws std::invalid_argument for another kind.
std::vector<Layer> make_layers(const std::string& kind, std::size_t bytes);

std::size_t total_bytes(const std::vector<Layer>& layers);

// "64M" -> 67108864: an integer with an optional K, M or G suffix (powers of 1024).
// Throws std::invalid_argument on anything else.
std::size_t parse_size(const std::string& text);
// 67108864 -> "64M", 1000 -> "1000"; the largest exact power-of-1024 unit.
std::string format_size(std::size_t bytes);

// "a,b:1,ef=ef,c" -> {"a", "b:1,ef=ef", "c"}: an item with '=' is a key of the spec before it.
std::vector<std::string> split_specs(const std::string& list);

}  // namespace thinwire::bench
