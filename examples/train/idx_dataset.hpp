// Fashion-MNIST (or MNIST) in IDX format, gzip-compressed: images as floats (normalised by
// the data set's pixel mean and standard deviation), labels as integers.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace train {

// Fashion-MNIST and MNIST have ten classes.
constexpr unsigned kClasses = 10;

struct Dataset {
  std::size_t count = 0;  // images of this part
  std::size_t total = 0;  // images used over all parts: the file's, capped by the limit
  std::size_t rows = 0, cols = 0;
  std::size_t pixels = 0;     // 784 for 28 x 28
  std::vector<float> images;  // count x pixels, row-major
  std::vector<std::uint8_t> labels;
};

// Reads `prefix`-images-idx3-ubyte.gz and `prefix`-labels-idx1-ubyte.gz from `dir`, keeping
// the images i < limit (limit 0: all) with i % parts == part. Throws std::runtime_error
// naming the file on a missing file, a bad header, sizes that disagree, no images or a label
// outside 0..kClasses-1.
Dataset load_idx(const std::string& dir, const std::string& prefix, std::size_t limit, int part,
                 int parts);

}  // namespace train
