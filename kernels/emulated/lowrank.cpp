// The CPU emulation of kernels/lowrank.cu: compress/low_rank.hpp's host algebra itself, so
// that the emulated device equals the host backend bit for bit. The "cuBLAS handle" is a
// token.
#include "compress/low_rank.hpp"
#include "launch.hpp"

namespace thinwire::kernels {

namespace {
struct BlasToken {
  int unused = 0;
};
}  // namespace

std::string blas_create(void** handle) {
  *handle = new BlasToken;
  return {};
}

std::string blas_destroy(void* handle) {
  delete static_cast<BlasToken*>(handle);
  return {};
}

std::string lowrank_project(void*, const float* m, std::size_t rows, std::size_t cols,
                            const float* q, std::size_t r, float* p, void*) {
  detail::low_rank::project(m, rows, cols, q, r, p);
  return {};
}

std::string lowrank_back_project(void*, const float* m, std::size_t rows, std::size_t cols,
                                 const float* p, std::size_t r, float* q, void*) {
  detail::low_rank::back_project(m, rows, cols, p, r, q);
  return {};
}

std::string lowrank_reconstruct(void*, const float* p, const float* q, std::size_t rows,
                                std::size_t cols, std::size_t r, float* out, void*) {
  detail::low_rank::reconstruct(p, q, rows, cols, r, out);
  return {};
}

// The batched products: the single ones in order (the pointer arrays are host memory here).
std::string lowrank_project_batched(void*, const float* const* m, std::size_t rows,
                                    std::size_t cols, const float* const* q, std::size_t r,
                                    float* const* p, std::size_t count, void*) {
  for (std::size_t b = 0; b < count; ++b)
    detail::low_rank::project(m[b], rows, cols, q[b], r, p[b]);
  return {};
}

std::string lowrank_back_project_batched(void*, const float* const* m, std::size_t rows,
                                         std::size_t cols, const float* const* p, std::size_t r,
                                         float* const* q, std::size_t count, void*) {
  for (std::size_t b = 0; b < count; ++b)
    detail::low_rank::back_project(m[b], rows, cols, p[b], r, q[b]);
  return {};
}

std::string lowrank_reconstruct_batched(void*, const float* const* p, const float* const* q,
                                        std::size_t rows, std::size_t cols, std::size_t r,
                                        float* const* out, std::size_t count, void*) {
  for (std::size_t b = 0; b < count; ++b)
    detail::low_rank::reconstruct(p[b], q[b], rows, cols, r, out[b]);
  return {};
}

std::string lowrank_orthonormalize(float* p, std::size_t rows, std::size_t r, void*) {
  detail::low_rank::orthonormalize(p, rows, r);
  return {};
}

std::string lowrank_random_init(float* q, std::size_t cols, std::size_t r, std::uint64_t seed,
                                std::uint32_t layer, std::uint64_t salt, void*) {
  detail::low_rank::random_init(q, cols, r, seed, layer, salt);
  return {};
}

std::string lowrank_refresh_zero_columns(float* q, std::size_t cols, std::size_t r,
                                         std::uint64_t seed, std::uint32_t layer,
                                         std::uint64_t salt, void*) {
  detail::low_rank::refresh_zero_columns(q, cols, r, seed, layer, salt);
  return {};
}

}  // namespace thinwire::kernels
