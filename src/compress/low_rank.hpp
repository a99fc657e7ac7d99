// PowerSGD's linear algebra on row-major f32 matrices: M (rows x cols), P (rows x r),
// Q (cols x r). One step of power iteration: P = M Q, orthonormalise P, Q = M^T P,
// M_hat = P Q^T.
#pragma once

#include <cstddef>
#include <cstdint>

namespace thinwire::detail::low_rank {

// Fills q (cols x r) with N(0, 1) numbers from the shared seed, identical on every rank.
// `salt` separates re-initialisations of the same layer (0 for the first Q).
void random_init(float* q, std::size_t cols, std::size_t r, std::uint64_t seed, std::uint32_t layer,
                 std::uint64_t salt);
// Re-draws (with random_init's stream under `salt`) every column of q that is all zeros,
// so that a factor that collapsed to zero can grow back. Returns the number re-drawn.
std::size_t refresh_zero_columns(float* q, std::size_t cols, std::size_t r, std::uint64_t seed,
                                 std::uint32_t layer, std::uint64_t salt);

// The products, f32 in a fixed order that every SIMD path computes bit for bit (the order is
// in low_rank_kernels.cpp).
void project(const float* m, std::size_t rows, std::size_t cols, const float* q, std::size_t r,
             float* p);
void back_project(const float* m, std::size_t rows, std::size_t cols, const float* p, std::size_t r,
                  float* q);
// out = p q^T (rows x cols).
void reconstruct(const float* p, const float* q, std::size_t rows, std::size_t cols, std::size_t r,
                 float* out);

// ||x - y||^2 and ||x||^2 over n elements, each accumulated in double in the 8-lane order
// (common/simd.hpp): the error statistics of a reconstruction y of x.
void residual_norms(const float* x, const float* y, std::size_t n, double* sq_error,
                    double* sq_norm);
// The same statistics, and with `subtract` x becomes x - y (the error memory's residual), in
// one pass.
void residual_update(float* x, const float* y, std::size_t n, bool subtract, double* sq_error,
                     double* sq_norm);

// Gram-Schmidt on the columns of p, in place, twice over ("twice is enough") with double
// accumulation. A column whose norm falls below kEpsilon times its norm before the
// projections (it lies in the span of the previous ones), or is zero, becomes zero instead
// of amplified noise: p's non-zero columns are orthonormal.
void orthonormalize(float* p, std::size_t rows, std::size_t r);
constexpr double kEpsilon = 1e-6;

}  // namespace thinwire::detail::low_rank
