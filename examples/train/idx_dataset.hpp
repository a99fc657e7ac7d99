// Fashion-MNIST (or MNIST) in IDX format, gzip-compressed: images as floats (normalised by
// the data set's pixel mean and standard deviation), labels as integers.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace train {

struct Dataset {
  std::size_t count = 0;
  std::size_t pixels = 0;     // 784 for 28 x 28
  std::vector<float> images;  // count x pixels, row-major
  std::vector<std::uint8_t> labels;
};

// Reads `prefix`-images-idx3-ubyte.gz and `prefix`-labels-idx1-ubyte.gz from `dir`, keeping
// the images i < limit (limit 0: all) with i % parts == part. Throws std::runtime_error
// naming the file on a missing file or a bad header.
Dataset load_idx(const std::string& dir, const std::string& prefix, std::size_t limit, int part,
                 int parts);

}  // namespace train
