#include "compress/onebit_error_memory.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include "common/bytes.hpp"
#include "compress/onebit_codec.hpp"
#include "compress/onebit_kernels.hpp"

namespace thinwire::detail {

EncodeResult OnebitErrorMemory::encode(const float* g, std::size_t n, const std::size_t* bounds,
                                       std::size_t parts, EncodeKey key, std::uint8_t* out,
                                       std::size_t stride) {
  if (raw_.size() != n) {
    raw_.assign(n, 0.0f);
    factored_ = false;
  }
  if (factored_ &&
      (bounds_.size() != parts + 1 || !std::equal(bounds_.begin(), bounds_.end(), bounds)))
    flatten();
  scales_.resize(parts);
  EncodeResult total;
  for (std::size_t j = 0; j < parts; ++j) {
    const std::size_t b = bounds[j], len = bounds[j + 1] - b;
    std::uint8_t* payload = out + j * stride;
    const onebit::StepSums sums =
        onebit::ef_step(raw_.data() + b, g + b, len, factored_, factored_ ? scales_[j] : 0.0f,
                        payload + kHeaderBytes + 4);
    const float s = onebit::scale_from(sums.sq, len);
    key.offset = b;
    onebit_write_header(payload, len, key.dtype, s);
    scales_[j] = s;
    // sum (x - s sign x)^2 = sum x^2 - 2 s sum |x| + len s^2; a NaN or infinite x makes
    // the generic residual NaN.
    double err = std::numeric_limits<double>::quiet_NaN();
    if (std::isfinite(sums.sq)) {
      const double sd = s;
      err = std::max(0.0, sums.sq - 2.0 * sd * sums.abs + static_cast<double>(len) * sd * sd);
    }
    total.bytes += kHeaderBytes + 4 + ceil_div(len, 8);
    total.sq_norm += sums.sq;
    total.sq_error += err;
  }
  bounds_.assign(bounds, bounds + parts + 1);
  factored_ = true;
  return total;
}

void OnebitErrorMemory::materialize(float* e) const {
  if (!factored_) {
    std::copy(raw_.begin(), raw_.end(), e);
    return;
  }
  for (std::size_t j = 0; j + 1 < bounds_.size(); ++j)
    onebit::residual_of(raw_.data() + bounds_[j], bounds_[j + 1] - bounds_[j], scales_[j],
                        e + bounds_[j]);
}

void OnebitErrorMemory::assign(const float* e, std::size_t n) {
  raw_.assign(e, e + n);
  factored_ = false;
}

void OnebitErrorMemory::clear() {
  raw_.clear();
  raw_.shrink_to_fit();
  bounds_.clear();
  scales_.clear();
  factored_ = false;
}

void OnebitErrorMemory::flatten() {
  if (factored_) materialize(raw_.data());
  factored_ = false;
}

}  // namespace thinwire::detail
