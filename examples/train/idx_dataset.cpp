#include "idx_dataset.hpp"

#include <zlib.h>

#include <stdexcept>

namespace train {

namespace {

// Fashion-MNIST's training-set pixel statistics (of pixel / 255).
constexpr float kMean = 0.2860f;
constexpr float kStd = 0.3530f;

std::vector<std::uint8_t> gunzip(const std::string& path) {
  gzFile f = gzopen(path.c_str(), "rb");
  if (!f) throw std::runtime_error("cannot open '" + path + "' (install dataset-fashion-mnist)");
  std::vector<std::uint8_t> out;
  std::uint8_t buf[1 << 16];
  for (;;) {
    const int got = gzread(f, buf, sizeof buf);
    if (got < 0) {
      gzclose(f);
      throw std::runtime_error("'" + path + "' is not a readable gzip file");
    }
    if (got == 0) break;
    out.insert(out.end(), buf, buf + got);
  }
  gzclose(f);
  return out;
}

std::uint32_t be32(const std::vector<std::uint8_t>& b, std::size_t at) {
  return (std::uint32_t{b[at]} << 24) | (std::uint32_t{b[at + 1]} << 16) |
         (std::uint32_t{b[at + 2]} << 8) | b[at + 3];
}

}  // namespace

Dataset load_idx(const std::string& dir, const std::string& prefix, std::size_t limit, int part,
                 int parts) {
  const std::string ipath = dir + "/" + prefix + "-images-idx3-ubyte.gz";
  const std::string lpath = dir + "/" + prefix + "-labels-idx1-ubyte.gz";
  const std::vector<std::uint8_t> img = gunzip(ipath), lab = gunzip(lpath);
  // IDX: images have a 16-byte header (magic 0x803, count, rows, cols), labels an 8-byte one
  // (magic 0x801, count); all big-endian.
  if (img.size() < 16 || be32(img, 0) != 0x803)
    throw std::runtime_error("'" + ipath + "': not an IDX image file");
  if (lab.size() < 8 || be32(lab, 0) != 0x801)
    throw std::runtime_error("'" + lpath + "': not an IDX label file");
  const std::size_t n = be32(img, 4), rows = be32(img, 8), cols = be32(img, 12);
  if (n == 0 || rows == 0 || cols == 0)
    throw std::runtime_error("'" + ipath + "' holds " + std::to_string(n) + " images of " +
                             std::to_string(rows) + "x" + std::to_string(cols) +
                             " (expected at least one image of at least 1x1)");
  // Each factor is below 2^32: the pixel count of one image fits, the total is checked by
  // division so that a header cannot wrap it.
  const std::size_t pixels = rows * cols;
  if (be32(lab, 4) != n || (img.size() - 16) / pixels != n || (img.size() - 16) % pixels != 0 ||
      lab.size() != 8 + n)
    throw std::runtime_error("'" + ipath + "' and '" + lpath + "' disagree on their sizes");
  for (std::size_t i = 0; i < n; ++i)
    if (lab[8 + i] >= kClasses)
      throw std::runtime_error("'" + lpath + "': label " + std::to_string(lab[8 + i]) +
                               " at index " + std::to_string(i) + " is not in 0.." +
                               std::to_string(kClasses - 1));
  const std::size_t use = limit && limit < n ? limit : n;

  Dataset d;
  d.pixels = pixels;
  d.rows = rows;
  d.cols = cols;
  d.total = use;
  for (std::size_t i = static_cast<std::size_t>(part); i < use;
       i += static_cast<std::size_t>(parts)) {
    const std::uint8_t* px = img.data() + 16 + i * d.pixels;
    for (std::size_t j = 0; j < d.pixels; ++j)
      d.images.push_back((static_cast<float>(px[j]) / 255.0f - kMean) / kStd);
    d.labels.push_back(lab[8 + i]);
    ++d.count;
  }
  return d;
}

}  // namespace train
