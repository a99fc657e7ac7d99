// PowerSGD's host kernels over the layer M: the three products P = M Q, Q = M^T P and
// M_hat = P Q^T (r, the rank, small and M large), and the residual pass after them. They stream M
// once each, so they are memory-bound when vectorised; a general GEMM (Eigen, built for the x86-64
// baseline) ran them at 1.3-2.5 ns per element of M on the development VM, several times the cost
// of reading M.
//
// Every path computes the same bits: f32 products and f32 sums, each rounded (no FMA), in
// one fixed order per output:
//   P[i][c]     = sum over j of M[i][j] Q[j][c]: element j goes to lane j % 8, the lanes
//                 combine as ((l0+l4) + (l2+l6)) + ((l1+l5) + (l3+l7)) (common/simd.hpp);
//   Q[j][c]     = sum over i of M[i][j] P[i][c], in row order;
//   M_hat[i][j] = sum over c of P[i][c] Q[j][c], in column order;
//   the residual's ||x - y||^2 and ||x||^2 in double, in the 8-lane order over the index.
// The kernels are written once over GCC's 8-float vector type; element-wise vector arithmetic
// is IEEE arithmetic per element, so the AVX2 build of a kernel (one 256-bit register), the
// default x86-64 build (two SSE registers) and other targets (what the compiler makes of it)
// agree bit for bit. The AVX2 build is chosen at run time (simd_level()).
#include <algorithm>
#include <cstring>
#include <type_traits>
#include <vector>

#include "common/simd.hpp"
#include "compress/low_rank.hpp"

// The vector helpers pass 32-byte vectors by value; GCC warns that their ABI differs without
// AVX. They are always inlined, so no such call exists.
#pragma GCC diagnostic ignored "-Wpsabi"

namespace thinwire::detail::low_rank {

namespace {

typedef float F8 __attribute__((vector_size(32)));
typedef double D4 __attribute__((vector_size(32)));
constexpr std::size_t kW = 8;

#define TW_ALWAYS_INLINE __attribute__((always_inline)) inline
// A lambda has no target attribute of its own: inlined, its body is compiled for the AVX2
// kernel that calls it.
#define TW_ALWAYS_INLINE_LAMBDA __attribute__((always_inline))

TW_ALWAYS_INLINE F8 load8(const float* p) {
  F8 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
TW_ALWAYS_INLINE void store8(float* p, F8 v) {
  std::memcpy(p, &v, sizeof v);
}
TW_ALWAYS_INLINE F8 splat8(float s) {
  return F8{s, s, s, s, s, s, s, s};
}

// t (r x cols) = q^T for q (cols x r): the kernels read one column of Q contiguously.
void transpose(const float* q, std::size_t cols, std::size_t r, float* t) {
  for (std::size_t j = 0; j < cols; ++j)
    for (std::size_t c = 0; c < r; ++c) t[c * cols + j] = q[j * r + c];
}

// Calls f(width, c) for columns [0, r) in groups of 4, then 2, then 1, the widths the kernels
// below are unrolled for (width a std::integral_constant, so each group is a template).
template <typename F>
TW_ALWAYS_INLINE void for_column_groups(std::size_t r, F&& f) {
  std::size_t c = 0;
  for (; c + 4 <= r; c += 4) f(std::integral_constant<std::size_t, 4>{}, c);
  for (; c + 2 <= r; c += 2) f(std::integral_constant<std::size_t, 2>{}, c);
  for (; c < r; ++c) f(std::integral_constant<std::size_t, 1>{}, c);
}

// P rows [0, rows): G columns and two rows at a time, so that each 8 entries of a column of Q
// are loaded once for both rows and 2G independent sums keep the adder busy.
template <std::size_t G>
TW_ALWAYS_INLINE void project_group(const float* m, std::size_t rows, std::size_t cols,
                                    const float* qt, std::size_t r, std::size_t c0, float* p) {
  constexpr std::size_t kRows = 2;
  const std::size_t body = cols - cols % kW;
  for (std::size_t i0 = 0; i0 < rows; i0 += kRows) {
    const std::size_t n_rows = std::min(kRows, rows - i0);
    const float* row[kRows] = {m + i0 * cols, m + (i0 + n_rows - 1) * cols};
    F8 acc[kRows][G];
    for (std::size_t k = 0; k < kRows; ++k)
      for (std::size_t g = 0; g < G; ++g) acc[k][g] = splat8(0.0f);
    for (std::size_t j = 0; j < body; j += kW) {
      const F8 x0 = load8(row[0] + j), x1 = load8(row[1] + j);
      for (std::size_t g = 0; g < G; ++g) {
        const F8 q = load8(qt + (c0 + g) * cols + j);
        acc[0][g] += x0 * q;
        acc[1][g] += x1 * q;
      }
    }
    for (std::size_t k = 0; k < n_rows; ++k)
      for (std::size_t g = 0; g < G; ++g) {
        float lane[kW];
        store8(lane, acc[k][g]);
        for (std::size_t j = body; j < cols; ++j)
          lane[j - body] += row[k][j] * qt[(c0 + g) * cols + j];
        p[(i0 + k) * r + c0 + g] = ((lane[0] + lane[4]) + (lane[2] + lane[6])) +
                                   ((lane[1] + lane[5]) + (lane[3] + lane[7]));
      }
  }
}

TW_ALWAYS_INLINE void project_impl(const float* m, std::size_t rows, std::size_t cols,
                                   const float* qt, std::size_t r, float* p) {
  for_column_groups(r, [&](auto width, std::size_t c) TW_ALWAYS_INLINE_LAMBDA {
    project_group<decltype(width)::value>(m, rows, cols, qt, r, c, p);
  });
}

// qt (r x cols) += M^T P over rows [0, rows), G columns of Q at a time: each 8 entries of a
// column stay in a register while four rows add to them, in row order.
template <std::size_t G>
TW_ALWAYS_INLINE void back_project_group(const float* m, std::size_t rows, std::size_t cols,
                                         const float* p, std::size_t r, std::size_t c0, float* qt) {
  constexpr std::size_t kRows = 4;
  const std::size_t body = cols - cols % kW;
  for (std::size_t i0 = 0; i0 < rows; i0 += kRows) {
    const std::size_t i1 = std::min(rows, i0 + kRows);
    F8 scale[kRows][G];
    for (std::size_t i = i0; i < i1; ++i)
      for (std::size_t g = 0; g < G; ++g) scale[i - i0][g] = splat8(p[i * r + c0 + g]);
    for (std::size_t j = 0; j < body; j += kW) {
      F8 acc[G];
      for (std::size_t g = 0; g < G; ++g) acc[g] = load8(qt + (c0 + g) * cols + j);
      for (std::size_t i = i0; i < i1; ++i) {
        const F8 x = load8(m + i * cols + j);
        for (std::size_t g = 0; g < G; ++g) acc[g] += x * scale[i - i0][g];
      }
      for (std::size_t g = 0; g < G; ++g) store8(qt + (c0 + g) * cols + j, acc[g]);
    }
    for (std::size_t j = body; j < cols; ++j)
      for (std::size_t g = 0; g < G; ++g) {
        float acc = qt[(c0 + g) * cols + j];
        for (std::size_t i = i0; i < i1; ++i) acc += m[i * cols + j] * p[i * r + c0 + g];
        qt[(c0 + g) * cols + j] = acc;
      }
  }
}

TW_ALWAYS_INLINE void back_project_impl(const float* m, std::size_t rows, std::size_t cols,
                                        const float* p, std::size_t r, float* qt) {
  for_column_groups(r, [&](auto width, std::size_t c) TW_ALWAYS_INLINE_LAMBDA {
    back_project_group<decltype(width)::value>(m, rows, cols, p, r, c, qt);
  });
}

// Columns [c0, c0 + G) of the sum for row i of M_hat, continuing the partial sum already in
// `row` unless this is the first group: the same sequence of roundings as one pass over c.
template <std::size_t G, bool kFirst>
TW_ALWAYS_INLINE void reconstruct_group(const float* pi, const float* qt, std::size_t cols,
                                        std::size_t c0, float* row) {
  const std::size_t body = cols - cols % kW;
  F8 scale[G];
  for (std::size_t g = 0; g < G; ++g) scale[g] = splat8(pi[c0 + g]);
  for (std::size_t j = 0; j < body; j += kW) {
    F8 acc = kFirst ? scale[0] * load8(qt + c0 * cols + j)
                    : load8(row + j) + scale[0] * load8(qt + c0 * cols + j);
    for (std::size_t g = 1; g < G; ++g) acc += scale[g] * load8(qt + (c0 + g) * cols + j);
    store8(row + j, acc);
  }
  for (std::size_t j = body; j < cols; ++j) {
    float acc = kFirst ? pi[c0] * qt[c0 * cols + j] : row[j] + pi[c0] * qt[c0 * cols + j];
    for (std::size_t g = 1; g < G; ++g) acc += pi[c0 + g] * qt[(c0 + g) * cols + j];
    row[j] = acc;
  }
}

TW_ALWAYS_INLINE void reconstruct_impl(const float* p, const float* qt, std::size_t rows,
                                       std::size_t cols, std::size_t r, float* out) {
  for (std::size_t i = 0; i < rows; ++i) {
    const float* pi = p + i * r;
    float* row = out + i * cols;
    // The first group (c == 0) starts the row's sums, the others continue them.
    for_column_groups(r, [&](auto width, std::size_t c) TW_ALWAYS_INLINE_LAMBDA {
      constexpr std::size_t kWidth = decltype(width)::value;
      if (c == 0)
        reconstruct_group<kWidth, true>(pi, qt, cols, c, row);
      else
        reconstruct_group<kWidth, false>(pi, qt, cols, c, row);
    });
  }
}

// x - y, ||x - y||^2 and ||x||^2 in one pass; x becomes x - y when kSubtract.
template <bool kSubtract>
TW_ALWAYS_INLINE void residual_impl(float* x, const float* y, std::size_t n, Lanes8* err,
                                    Lanes8* norm) {
  const std::size_t body = n - n % kW;
  D4 e_lo{}, e_hi{}, n_lo{}, n_hi{};
  for (std::size_t i = 0; i < body; i += kW) {
    const F8 a = load8(x + i), d = a - load8(y + i);
    const D4 a_lo = __builtin_convertvector(__builtin_shufflevector(a, a, 0, 1, 2, 3), D4);
    const D4 a_hi = __builtin_convertvector(__builtin_shufflevector(a, a, 4, 5, 6, 7), D4);
    const D4 d_lo = __builtin_convertvector(__builtin_shufflevector(d, d, 0, 1, 2, 3), D4);
    const D4 d_hi = __builtin_convertvector(__builtin_shufflevector(d, d, 4, 5, 6, 7), D4);
    e_lo += d_lo * d_lo;
    e_hi += d_hi * d_hi;
    n_lo += a_lo * a_lo;
    n_hi += a_hi * a_hi;
    if (kSubtract) store8(x + i, d);
  }
  std::memcpy(err->l, &e_lo, sizeof e_lo);
  std::memcpy(err->l + 4, &e_hi, sizeof e_hi);
  std::memcpy(norm->l, &n_lo, sizeof n_lo);
  std::memcpy(norm->l + 4, &n_hi, sizeof n_hi);
  for (std::size_t i = body; i < n; ++i) {
    const float d = x[i] - y[i];
    err->l[i % kW] += static_cast<double>(d) * d;
    norm->l[i % kW] += static_cast<double>(x[i]) * x[i];
    if (kSubtract) x[i] = d;
  }
}

void residual_default(float* x, const float* y, std::size_t n, bool subtract, Lanes8* err,
                      Lanes8* norm) {
  subtract ? residual_impl<true>(x, y, n, err, norm) : residual_impl<false>(x, y, n, err, norm);
}

void project_default(const float* m, std::size_t rows, std::size_t cols, const float* qt,
                     std::size_t r, float* p) {
  project_impl(m, rows, cols, qt, r, p);
}
void back_project_default(const float* m, std::size_t rows, std::size_t cols, const float* p,
                          std::size_t r, float* qt) {
  back_project_impl(m, rows, cols, p, r, qt);
}
void reconstruct_default(const float* p, const float* qt, std::size_t rows, std::size_t cols,
                         std::size_t r, float* out) {
  reconstruct_impl(p, qt, rows, cols, r, out);
}

#if TW_AVX2
TW_TARGET_AVX2 void residual_avx2(float* x, const float* y, std::size_t n, bool subtract,
                                  Lanes8* err, Lanes8* norm) {
  subtract ? residual_impl<true>(x, y, n, err, norm) : residual_impl<false>(x, y, n, err, norm);
}
TW_TARGET_AVX2 void project_avx2(const float* m, std::size_t rows, std::size_t cols,
                                 const float* qt, std::size_t r, float* p) {
  project_impl(m, rows, cols, qt, r, p);
}
TW_TARGET_AVX2 void back_project_avx2(const float* m, std::size_t rows, std::size_t cols,
                                      const float* p, std::size_t r, float* qt) {
  back_project_impl(m, rows, cols, p, r, qt);
}
TW_TARGET_AVX2 void reconstruct_avx2(const float* p, const float* qt, std::size_t rows,
                                     std::size_t cols, std::size_t r, float* out) {
  reconstruct_impl(p, qt, rows, cols, r, out);
}
#endif

// One kernel on the widest path this CPU has (the same bits on every path).
#if TW_AVX2
#define TW_DISPATCH(kernel, ...) \
  (simd_level() == SimdLevel::avx2 ? kernel##_avx2(__VA_ARGS__) : kernel##_default(__VA_ARGS__))
#else
#define TW_DISPATCH(kernel, ...) kernel##_default(__VA_ARGS__)
#endif

// Q^T for the kernels: grow-only and per thread, so that a step's three products allocate
// nothing in the steady state (a Reducer may run on any thread, several at once).
float* transposed_scratch(std::size_t n) {
  thread_local std::vector<float> scratch;
  if (scratch.size() < n) scratch.resize(n);
  return scratch.data();
}

}  // namespace

void project(const float* m, std::size_t rows, std::size_t cols, const float* q, std::size_t r,
             float* p) {
  if (rows == 0 || r == 0) return;
  float* qt = transposed_scratch(cols * r);
  transpose(q, cols, r, qt);
  TW_DISPATCH(project, m, rows, cols, qt, r, p);
}

void back_project(const float* m, std::size_t rows, std::size_t cols, const float* p, std::size_t r,
                  float* q) {
  if (cols == 0 || r == 0) return;
  float* qt = transposed_scratch(cols * r);
  std::fill(qt, qt + cols * r, 0.0f);
  TW_DISPATCH(back_project, m, rows, cols, p, r, qt);
  transpose(qt, r, cols, q);  // q (cols x r) = qt^T
}

void reconstruct(const float* p, const float* q, std::size_t rows, std::size_t cols, std::size_t r,
                 float* out) {
  if (rows == 0 || cols == 0) return;
  if (r == 0) {
    std::memset(out, 0, rows * cols * sizeof(float));
    return;
  }
  float* qt = transposed_scratch(cols * r);
  transpose(q, cols, r, qt);
  TW_DISPATCH(reconstruct, p, qt, rows, cols, r, out);
}

void residual_update(float* x, const float* y, std::size_t n, bool subtract, double* sq_error,
                     double* sq_norm) {
  Lanes8 err, norm;
  TW_DISPATCH(residual, x, y, n, subtract, &err, &norm);
  *sq_error = err.total();
  *sq_norm = norm.total();
}

void residual_norms(const float* x, const float* y, std::size_t n, double* sq_error,
                    double* sq_norm) {
  // Without `subtract` x is only read.
  residual_update(const_cast<float*>(x), y, n, false, sq_error, sq_norm);
}

}  // namespace thinwire::detail::low_rank
