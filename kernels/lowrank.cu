// PowerSGD on the device: products in cuBLAS (FP32, no TF32) on row-major matrices, and
// compress/low_rank.cpp's Gram-Schmidt, random initialisation and zero-column refresh as
// kernels over the same TW_HD arithmetic (compress/low_rank_math.hpp).
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <climits>
#include <initializer_list>
#include <map>
#include <mutex>
#include <utility>

#include "common/philox.hpp"
#include "compress/low_rank.hpp"
#include "compress/low_rank_math.hpp"
#include "launch.hpp"

namespace thinwire::kernels {

namespace {

namespace lr = detail::low_rank;

std::string check(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return {};
  cudaGetLastError();
  return std::string(what) + ": " + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")";
}

std::string status(const char* what) {
  return check(cudaGetLastError(), what);
}

std::string check_blas(cublasStatus_t s, const char* what) {
  if (s == CUBLAS_STATUS_SUCCESS) return {};
  return std::string(what) + ": " + cublasGetStatusString(s);
}

// ---- products ------------------------------------------------------------------------------
// A row-major a x b matrix is the column-major b x a matrix (its transpose) with leading
// dimension b, so each product is computed transposed: C^T = B^T A^T.

// The handle `blas` set to work on `s`, once every dimension fits cuBLAS's int.
std::string blas_on_stream(void* blas, cudaStream_t s, std::initializer_list<std::size_t> dims,
                           const char* what, cublasHandle_t* h) {
  for (const std::size_t d : dims)
    if (d > static_cast<std::size_t>(INT_MAX))
      return std::string(what) + ": dimension beyond cuBLAS's int range";
  *h = static_cast<cublasHandle_t>(blas);
  return check_blas(cublasSetStream(*h, s), "cublasSetStream");
}

// C (column-major m x n, leading dimension ldc) = op(A) op(B) over k; zero when k == 0.
std::string gemm(void* blas, cublasOperation_t ta, cublasOperation_t tb, std::size_t m,
                 std::size_t n, std::size_t k, const float* a, std::size_t lda, const float* b,
                 std::size_t ldb, float* c, std::size_t ldc, void* stream, const char* what) {
  if (m == 0 || n == 0) return {};
  auto s = static_cast<cudaStream_t>(stream);
  if (k == 0)  // an empty sum: cuBLAS is not asked to define it
    return check(cudaMemsetAsync(c, 0, m * n * sizeof(float), s), what);
  cublasHandle_t h = nullptr;
  std::string err = blas_on_stream(blas, s, {m, n, k, lda, ldb, ldc}, what, &h);
  if (!err.empty()) return err;
  const float one = 1.0f, zero = 0.0f;
  return check_blas(
      cublasSgemm(h, ta, tb, static_cast<int>(m), static_cast<int>(n), static_cast<int>(k), &one, a,
                  static_cast<int>(lda), b, static_cast<int>(ldb), &zero, c, static_cast<int>(ldc)),
      what);
}

// zero_batched_kernel's grid: x over the elements, y over the batch.
constexpr unsigned kZeroBlock = 256;
constexpr std::size_t kMaxGridY = 65535;

// c[b][0 .. elems) = 0 for b < count; the pointers are read on the device.
__global__ void zero_batched_kernel(float* const* c, std::size_t count, std::size_t elems) {
  for (std::size_t b = blockIdx.y; b < count; b += gridDim.y) {
    float* out = c[b];
    for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < elems;
         i += static_cast<std::size_t>(gridDim.x) * blockDim.x)
      out[i] = 0.0f;
  }
}

// gemm() over `count` problems of one shape: c[b] = op(a[b]) op(b[b]), with the pointer arrays
// in device memory. An empty sum (k == 0) zeroes every c[b] in a kernel, as the pointers
// cannot be read on the host.
std::string gemm_batched(void* blas, cublasOperation_t ta, cublasOperation_t tb, std::size_t m,
                         std::size_t n, std::size_t k, const float* const* a, std::size_t lda,
                         const float* const* b, std::size_t ldb, float* const* c, std::size_t ldc,
                         std::size_t count, void* stream, const char* what) {
  if (m == 0 || n == 0 || count == 0) return {};
  auto s = static_cast<cudaStream_t>(stream);
  if (k == 0) {  // c is m x n with ldc == m, as in gemm()'s memset
    const std::size_t elems = m * n;
    const std::size_t blocks_x = std::min<std::size_t>((elems + kZeroBlock - 1) / kZeroBlock, 1024);
    const dim3 grid(static_cast<unsigned>(blocks_x),
                    static_cast<unsigned>(std::min(count, kMaxGridY)));
    zero_batched_kernel<<<grid, kZeroBlock, 0, s>>>(c, count, elems);
    return status(what);
  }
  cublasHandle_t h = nullptr;
  std::string err = blas_on_stream(blas, s, {m, n, k, lda, ldb, ldc, count}, what, &h);
  if (!err.empty()) return err;
  const float one = 1.0f, zero = 0.0f;
  return check_blas(
      cublasSgemmBatched(h, ta, tb, static_cast<int>(m), static_cast<int>(n), static_cast<int>(k),
                         &one, a, static_cast<int>(lda), b, static_cast<int>(ldb), &zero, c,
                         static_cast<int>(ldc), static_cast<int>(count)),
      what);
}

// ---- block reductions ----------------------------------------------------------------------

constexpr unsigned kBlock = 256;        // threads of the multi-block Gram-Schmidt kernels
constexpr unsigned kSmallBlock = 1024;  // threads of the single-block Gram-Schmidt kernel
constexpr std::size_t kMaxBlocks = 1024;
// Up to this many rows the whole Gram-Schmidt runs in one block (one launch, no scratch).
constexpr std::size_t kSmallRows = 8192;

__device__ __forceinline__ double warp_sum(double v) {
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(0xffffffffu, v, offset);
  return v;
}

// The block's sum of v, returned to every thread, in a fixed order (deterministic). `shared`
// holds at least blockDim.x / 32 + 1 doubles; every thread must call.
__device__ double block_sum(double v, double* shared) {
  const unsigned warp = threadIdx.x / 32, lane = threadIdx.x % 32, warps = blockDim.x / 32;
  v = warp_sum(v);
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < warps ? shared[lane] : 0.0;
    v = warp_sum(v);
    if (lane == 0) shared[warps] = v;
  }
  __syncthreads();
  const double total = shared[warps];
  __syncthreads();  // shared may be reused by the next call
  return total;
}

// Sum of nb per-block partials (nb <= kMaxBlocks), in a fixed order: every block that calls it
// gets the same bits.
__device__ double sum_partials(const double* partials, unsigned nb, double* shared) {
  double v = 0.0;
  for (unsigned i = threadIdx.x; i < nb; i += blockDim.x) v += partials[i];
  return block_sum(v, shared);
}

// ---- Gram-Schmidt, one block ----------------------------------------------------------------
// Every thread owns the rows i = threadIdx.x + k blockDim.x throughout, so p needs no
// synchronisation; only the sums do. The sequence of operations is low_rank::orthonormalize's.

__global__ void orthonormalize_small_kernel(float* p, std::size_t rows, std::size_t r) {
  __shared__ double shared[kSmallBlock / 32 + 1];
  for (std::size_t c = 0; c < r; ++c) {
    double acc = 0.0;
    for (std::size_t i = threadIdx.x; i < rows; i += blockDim.x) {
      const float v = p[i * r + c];
      acc += static_cast<double>(v) * v;
    }
    const double before = block_sum(acc, shared);
    for (int pass = 0; pass < 2; ++pass) {
      for (std::size_t prev = 0; prev < c; ++prev) {
        acc = 0.0;
        for (std::size_t i = threadIdx.x; i < rows; i += blockDim.x)
          acc += static_cast<double>(p[i * r + prev]) * p[i * r + c];
        const float d = static_cast<float>(block_sum(acc, shared));
        for (std::size_t i = threadIdx.x; i < rows; i += blockDim.x)
          p[i * r + c] -= d * p[i * r + prev];
      }
    }
    acc = 0.0;
    for (std::size_t i = threadIdx.x; i < rows; i += blockDim.x) {
      const float v = p[i * r + c];
      acc += static_cast<double>(v) * v;
    }
    const double after = block_sum(acc, shared);
    const float inv = lr::column_scale(before, after, lr::kEpsilon);
    for (std::size_t i = threadIdx.x; i < rows; i += blockDim.x) p[i * r + c] *= inv;
  }
}

// ---- Gram-Schmidt, many blocks: one launch per step ------------------------------------------
// Step k of column c fuses, row by row: (1) the scaling of the finished column c - 1 (its
// sums are the previous steps' partials), (2) the subtraction of d p[:, j] from p[:, c] with
// d = the dot product the previous step summed, (3) this step's sums over the updated
// p[:, c]: the next dot product and/or the squared norm, written as one partial per block.
// Every block sums the partials it needs itself, in a fixed order, so the result does not
// depend on scheduling. The grid (hence the partition of the rows) depends on rows only.

struct Scratch {      // per-block partials, kMaxBlocks doubles each
  double* before[2];  // squared norm of column c before the projections (by c's parity)
  double* after;      // squared norm of column c after them
  double* dot[2];     // dot products (by step parity)
};
constexpr std::size_t kScratchDoubles = 5 * kMaxBlocks;

struct Step {
  float* p;
  std::size_t rows, r;
  unsigned nb;
  long long fin_col;  // column to scale (its before/after partials), or -1
  const double* fin_before;
  const double* fin_after;
  long long col;      // the column being orthogonalised, or -1
  long long sub_col;  // p[:, col] -= d p[:, sub_col], d = sum of sub_dot; or -1
  const double* sub_dot;
  long long dot_col;  // partial of p[:, dot_col] . p[:, col] into out_dot; or -1
  double* out_dot;
  double* out_norm;   // partial of ||p[:, col]||^2 (or nullptr)
  double* out_norm2;  // the same partial again (column 0: before == after), or nullptr
};

__global__ void orthonormalize_step_kernel(Step a) {
  __shared__ double shared[kBlock / 32 + 1];
  float inv = 1.0f, d = 0.0f;
  if (a.fin_col >= 0) {
    const double before = sum_partials(a.fin_before, a.nb, shared);
    const double after = sum_partials(a.fin_after, a.nb, shared);
    inv = lr::column_scale(before, after, lr::kEpsilon);
  }
  if (a.sub_col >= 0) d = static_cast<float>(sum_partials(a.sub_dot, a.nb, shared));
  double dot = 0.0, norm = 0.0;
  const std::size_t stride = static_cast<std::size_t>(gridDim.x) * blockDim.x;
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < a.rows;
       i += stride) {
    float* row = a.p + i * a.r;
    if (a.fin_col >= 0) row[a.fin_col] *= inv;
    if (a.col >= 0) {
      float v = row[a.col];
      if (a.sub_col >= 0) {
        v -= d * row[a.sub_col];
        row[a.col] = v;
      }
      if (a.dot_col >= 0) dot += static_cast<double>(row[a.dot_col]) * v;
      norm += static_cast<double>(v) * v;
    }
  }
  if (a.col < 0) return;  // uniform across the grid
  if (a.dot_col >= 0) {
    dot = block_sum(dot, shared);
    if (threadIdx.x == 0) a.out_dot[blockIdx.x] = dot;
  }
  if (a.out_norm) {
    norm = block_sum(norm, shared);
    if (threadIdx.x == 0) {
      a.out_norm[blockIdx.x] = norm;
      if (a.out_norm2) a.out_norm2[blockIdx.x] = norm;
    }
  }
}

// The multi-block path's partials: one small buffer per (device, stream), allocated on first
// use and kept (calls on one stream are ordered, so they may share it).
std::string scratch_for(void* stream, double** out) {
  static std::mutex mutex;
  static std::map<std::pair<int, void*>, double*>* buffers =
      new std::map<std::pair<int, void*>, double*>;  // never destroyed: outlives static teardown
  int device = 0;
  std::string err = check(cudaGetDevice(&device), "cudaGetDevice");
  if (!err.empty()) return err;
  const std::lock_guard<std::mutex> lock(mutex);
  double*& buffer = (*buffers)[{device, stream}];
  if (!buffer) {
    void* p = nullptr;
    err = check(cudaMalloc(&p, kScratchDoubles * sizeof(double)), "cudaMalloc");
    if (!err.empty()) {
      buffers->erase({device, stream});
      return err;
    }
    buffer = static_cast<double*>(p);
  }
  *out = buffer;
  return {};
}

// ---- random init and refresh -----------------------------------------------------------------

// Elements 2b and 2b + 1 draw the four lanes of Philox block b (lr::gaussian's draws).
__global__ void random_init_kernel(float* q, std::size_t n, detail::RandomStream rng) {
  const std::size_t pairs = (n + 1) / 2;
  for (std::size_t b = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; b < pairs;
       b += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
    const detail::Philox4 bits = rng.block(b);
    q[2 * b] = lr::gaussian_from_uniforms(detail::uniform_from_bits(bits.v[0]),
                                          detail::uniform_from_bits(bits.v[1]));
    if (2 * b + 1 < n)
      q[2 * b + 1] = lr::gaussian_from_uniforms(detail::uniform_from_bits(bits.v[2]),
                                                detail::uniform_from_bits(bits.v[3]));
  }
}

// Block c checks column c (stopping at the first chunk with a non-zero entry) and re-draws it
// when it is all zeros.
constexpr unsigned kRefreshBlock = 256;
__global__ void refresh_zero_columns_kernel(float* q, std::size_t cols, std::size_t r,
                                            detail::RandomStream rng) {
  const std::size_t c = blockIdx.x;
  for (std::size_t base = 0; base < cols; base += blockDim.x) {
    const std::size_t i = base + threadIdx.x;
    const bool nonzero = i < cols && q[i * r + c] != 0.0f;
    if (__syncthreads_or(nonzero)) return;  // the same answer in every thread
  }
  for (std::size_t i = threadIdx.x; i < cols; i += blockDim.x)
    q[i * r + c] = lr::gaussian(rng, i * r + c);
}

unsigned grid_for(std::size_t work, unsigned block, std::size_t cap) {
  const std::size_t blocks = (work + block - 1) / block;
  return static_cast<unsigned>(blocks < cap ? (blocks ? blocks : 1) : cap);
}

}  // namespace

std::string blas_create(void** handle) {
  *handle = nullptr;
  cublasHandle_t h = nullptr;
  std::string err = check_blas(cublasCreate(&h), "cublasCreate");
  if (!err.empty()) return err;
  // FP32 products without TF32 (CUBLAS_DEFAULT_MATH never uses tensor-core TF32 for SGEMM).
  err = check_blas(cublasSetMathMode(h, CUBLAS_DEFAULT_MATH), "cublasSetMathMode");
  if (!err.empty()) {
    cublasDestroy(h);
    return err;
  }
  *handle = h;
  return {};
}

std::string blas_destroy(void* handle) {
  if (!handle) return {};
  return check_blas(cublasDestroy(static_cast<cublasHandle_t>(handle)), "cublasDestroy");
}

// P (rows x r) = M (rows x cols) Q (cols x r): P^T = Q^T M^T, Q^T and M^T being the buffers as
// column-major r x cols (ld r) and cols x rows (ld cols).
std::string lowrank_project(void* blas, const float* m, std::size_t rows, std::size_t cols,
                            const float* q, std::size_t r, float* p, void* stream) {
  return gemm(blas, CUBLAS_OP_N, CUBLAS_OP_N, r, rows, cols, q, r, m, cols, p, r, stream,
              "lowrank_project: cublasSgemm");
}

// Q (cols x r) = M^T P: Q^T = P^T M, with P^T the buffer p (r x rows, ld r) and M the
// transpose of the column-major cols x rows buffer m.
std::string lowrank_back_project(void* blas, const float* m, std::size_t rows, std::size_t cols,
                                 const float* p, std::size_t r, float* q, void* stream) {
  return gemm(blas, CUBLAS_OP_N, CUBLAS_OP_T, r, cols, rows, p, r, m, cols, q, r, stream,
              "lowrank_back_project: cublasSgemm");
}

// out (rows x cols) = P Q^T: out^T (cols x rows) = Q P^T, with Q the transpose of the
// column-major r x cols buffer q and P^T the buffer p (r x rows).
std::string lowrank_reconstruct(void* blas, const float* p, const float* q, std::size_t rows,
                                std::size_t cols, std::size_t r, float* out, void* stream) {
  return gemm(blas, CUBLAS_OP_T, CUBLAS_OP_N, cols, rows, r, q, r, p, r, out, cols, stream,
              "lowrank_reconstruct: cublasSgemm");
}

// The batched products: the single launchers' arguments, pointer array by pointer array.
std::string lowrank_project_batched(void* blas, const float* const* m, std::size_t rows,
                                    std::size_t cols, const float* const* q, std::size_t r,
                                    float* const* p, std::size_t count, void* stream) {
  return gemm_batched(blas, CUBLAS_OP_N, CUBLAS_OP_N, r, rows, cols, q, r, m, cols, p, r, count,
                      stream, "lowrank_project_batched: cublasSgemmBatched");
}

std::string lowrank_back_project_batched(void* blas, const float* const* m, std::size_t rows,
                                         std::size_t cols, const float* const* p, std::size_t r,
                                         float* const* q, std::size_t count, void* stream) {
  return gemm_batched(blas, CUBLAS_OP_N, CUBLAS_OP_T, r, cols, rows, p, r, m, cols, q, r, count,
                      stream, "lowrank_back_project_batched: cublasSgemmBatched");
}

std::string lowrank_reconstruct_batched(void* blas, const float* const* p, const float* const* q,
                                        std::size_t rows, std::size_t cols, std::size_t r,
                                        float* const* out, std::size_t count, void* stream) {
  return gemm_batched(blas, CUBLAS_OP_T, CUBLAS_OP_N, cols, rows, r, q, r, p, r, out, cols, count,
                      stream, "lowrank_reconstruct_batched: cublasSgemmBatched");
}

std::string lowrank_orthonormalize(float* p, std::size_t rows, std::size_t r, void* stream) {
  if (rows == 0 || r == 0) return {};
  auto s = static_cast<cudaStream_t>(stream);
  if (rows <= kSmallRows) {
    orthonormalize_small_kernel<<<1, kSmallBlock, 0, s>>>(p, rows, r);
    return status("lowrank_orthonormalize");
  }
  double* buffer = nullptr;
  std::string err = scratch_for(stream, &buffer);
  if (!err.empty()) return err;
  Scratch sc{{buffer, buffer + kMaxBlocks},
             buffer + 2 * kMaxBlocks,
             {buffer + 3 * kMaxBlocks, buffer + 4 * kMaxBlocks}};
  const unsigned nb = grid_for(rows, kBlock, kMaxBlocks);
  Step base{};
  base.p = p;
  base.rows = rows;
  base.r = r;
  base.nb = nb;
  for (std::size_t c = 0; c <= r; ++c) {
    // Column c's operations: its dot product with (and subtraction of) the columns before it,
    // in the order 0 .. c-1, twice; k = 0 .. 2c steps. c == r: only the scaling of r - 1.
    const std::size_t ops = 2 * c;
    for (std::size_t k = 0; k <= (c < r ? ops : 0); ++k) {
      Step a = base;
      a.fin_col = -1;
      a.col = a.sub_col = a.dot_col = -1;
      if (k == 0 && c > 0) {
        a.fin_col = static_cast<long long>(c - 1);
        a.fin_before = sc.before[(c - 1) & 1];
        a.fin_after = sc.after;
      }
      if (c < r) {
        a.col = static_cast<long long>(c);
        if (k > 0) {
          a.sub_col = static_cast<long long>((k - 1) % c);
          a.sub_dot = sc.dot[(k - 1) & 1];
        }
        if (k < ops) {
          a.dot_col = static_cast<long long>(k % c);
          a.out_dot = sc.dot[k & 1];
        }
        if (k == 0) a.out_norm = sc.before[c & 1];
        if (k == ops) (a.out_norm ? a.out_norm2 : a.out_norm) = sc.after;
      }
      orthonormalize_step_kernel<<<nb, kBlock, 0, s>>>(a);
      err = status("lowrank_orthonormalize");
      if (!err.empty()) return err;
    }
  }
  return {};
}

std::string lowrank_random_init(float* q, std::size_t cols, std::size_t r, std::uint64_t seed,
                                std::uint32_t layer, std::uint64_t salt, void* stream) {
  const std::size_t n = cols * r;
  if (n == 0) return {};
  const detail::RandomStream rng =
      detail::RandomStream::make(seed, layer, detail::kPhaseInit, salt, 0);
  random_init_kernel<<<grid_for((n + 1) / 2, 256, 65535u * 32u), 256, 0,
                       static_cast<cudaStream_t>(stream)>>>(q, n, rng);
  return status("lowrank_random_init");
}

std::string lowrank_refresh_zero_columns(float* q, std::size_t cols, std::size_t r,
                                         std::uint64_t seed, std::uint32_t layer,
                                         std::uint64_t salt, void* stream) {
  if (cols == 0 || r == 0) return {};
  if (r > INT_MAX) return "lowrank_refresh_zero_columns: r too large";
  const detail::RandomStream rng =
      detail::RandomStream::make(seed, layer, detail::kPhaseInit, salt, 0);
  refresh_zero_columns_kernel<<<static_cast<unsigned>(r), kRefreshBlock, 0,
                                static_cast<cudaStream_t>(stream)>>>(q, cols, r, rng);
  return status("lowrank_refresh_zero_columns");
}

}  // namespace thinwire::kernels
