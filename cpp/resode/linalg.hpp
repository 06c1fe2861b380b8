// Dense kernels on feature-major blocks. A block of n samples of width D is stored as a D x n
// row-major matrix (feature i of sample s at [i*n + s]), so every loop over samples is a
// contiguous, vectorisable loop, also for the tiny widths (D = 1..8) of the toy problems.
// The sweeps need three products and a row sum:
//   gemm       C (r x n) (+)= alpha * A (r x k, any strides) * B (k x n)   forward Z = W X,
//                                                                          cotangent Xb = W^T G
//   gemm_abt   C (r x c) += alpha * A (r x n) * B (c x n)^T               weight gradient G X^T
//   row_sums   out (r) += alpha * sum_s A (r x n)                          bias gradient
// gemm keeps an MR x (2 SIMD vectors) tile of C in registers and streams rows of B; gemm_abt
// keeps RA x RB dot products of SIMD vectors over samples. Both are compiled twice (baseline
// and AVX2+FMA) and picked at load time (RESODE_CLONES).
#pragma once
#include <algorithm>
#include <cstring>
#include <vector>

#include "config.hpp"

namespace resode {
namespace detail {

// A 32-byte SIMD vector (one AVX2 register, two SSE2 registers in the baseline clone).
template <class T>
struct Simd;
template <>
struct Simd<double> {
  typedef double type __attribute__((vector_size(32)));
};
template <>
struct Simd<float> {
  typedef float type __attribute__((vector_size(32)));
};
template <class T>
using Vec = typename Simd<T>::type;
template <class T>
constexpr int lanes = int(32 / sizeof(T));

template <class T>
RESODE_INLINE Vec<T> load(const T* p) {
  Vec<T> v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
template <class T>
RESODE_INLINE void store(T* p, Vec<T> v) {
  std::memcpy(p, &v, sizeof v);
}
template <class T>
RESODE_INLINE T horizontal_sum(Vec<T> v) {
  T s = T(0);
  for (int l = 0; l < lanes<T>; ++l) s += v[l];
  return s;
}

// MR rows of C, columns [j0, j0 + 2 * lanes): acc = A(i0.., :) * B(:, j0..).
template <class T, int MR>
RESODE_INLINE void gemm_tile(index_t k, T alpha, const T* A, index_t rsa, index_t csa, const T* B,
                      index_t ldb, T* C, index_t ldc, bool accumulate) {
  constexpr int L = lanes<T>;
  Vec<T> acc[MR][2] = {};
  for (index_t p = 0; p < k; ++p) {
    const Vec<T> b0 = load<T>(B + p * ldb), b1 = load<T>(B + p * ldb + L);
#pragma GCC unroll 4
    for (int i = 0; i < MR; ++i) {
      const T a = A[i * rsa + p * csa];
      acc[i][0] += a * b0;
      acc[i][1] += a * b1;
    }
  }
  for (int i = 0; i < MR; ++i)
    for (int v = 0; v < 2; ++v) {
      T* c = C + i * ldc + v * L;
      const Vec<T> value = alpha * acc[i][v];
      store<T>(c, accumulate ? load<T>(c) + value : value);
    }
}

// Columns that do not fill a tile: plain loops.
template <class T>
RESODE_INLINE void gemm_edge(index_t rows, index_t cols, index_t k, T alpha, const T* A, index_t rsa,
                      index_t csa, const T* B, index_t ldb, T* C, index_t ldc, bool accumulate) {
  for (index_t i = 0; i < rows; ++i)
    for (index_t j = 0; j < cols; ++j) {
      T s = T(0);
      for (index_t p = 0; p < k; ++p) s += A[i * rsa + p * csa] * B[p * ldb + j];
      C[i * ldc + j] = accumulate ? C[i * ldc + j] + alpha * s : alpha * s;
    }
}

// RA x RB dot products over n samples: out[i][j] = sum_s A[i*lda + s] * B[j*ldb + s].
template <class T, int RA, int RB>
RESODE_INLINE void dot_tile(index_t n, const T* A, index_t lda, const T* B, index_t ldb,
                     T out[4][4]) {
  constexpr int L = lanes<T>;
  Vec<T> acc[RA][RB] = {};
  index_t s = 0;
  for (; s + L <= n; s += L) {
    Vec<T> a[RA], b[RB];
    for (int i = 0; i < RA; ++i) a[i] = load<T>(A + i * lda + s);
    for (int j = 0; j < RB; ++j) b[j] = load<T>(B + j * ldb + s);
    for (int i = 0; i < RA; ++i)
      for (int j = 0; j < RB; ++j) acc[i][j] += a[i] * b[j];
  }
  for (int i = 0; i < RA; ++i)
    for (int j = 0; j < RB; ++j) {
      T sum = horizontal_sum<T>(acc[i][j]);
      for (index_t t = s; t < n; ++t) sum += A[i * lda + t] * B[j * ldb + t];
      out[i][j] = sum;
    }
}

template <class T, int RA>
RESODE_INLINE void dot_row(index_t n, const T* A, index_t lda, const T* B, index_t ldb, int rb,
                    T out[4][4]) {
  switch (rb) {
    case 4: return dot_tile<T, RA, 4>(n, A, lda, B, ldb, out);
    case 3: return dot_tile<T, RA, 3>(n, A, lda, B, ldb, out);
    case 2: return dot_tile<T, RA, 2>(n, A, lda, B, ldb, out);
    default: return dot_tile<T, RA, 1>(n, A, lda, B, ldb, out);
  }
}

}  // namespace detail

// C (r x n, row stride ldc) (+)= alpha * A * B, with A(i, p) = A[i*rsa + p*csa] (r x k) and
// B (k x n, row stride ldb).
template <class T>
RESODE_CLONES void gemm(index_t r, index_t n, index_t k, T alpha, const T* A, index_t rsa,
                        index_t csa, const T* B, index_t ldb, T* C, index_t ldc, bool accumulate) {
  constexpr index_t NR = 2 * detail::lanes<T>;
  const index_t n_full = n - n % NR;
  index_t i = 0;
  for (; i + 4 <= r; i += 4)
    for (index_t j = 0; j < n_full; j += NR)
      detail::gemm_tile<T, 4>(k, alpha, A + i * rsa, rsa, csa, B + j, ldb, C + i * ldc + j, ldc,
                              accumulate);
  if (i < r) {  // the last 1-3 rows
    for (index_t j = 0; j < n_full; j += NR) {
      const T* Ai = A + i * rsa;
      T* Cij = C + i * ldc + j;
      switch (r - i) {
        case 3: detail::gemm_tile<T, 3>(k, alpha, Ai, rsa, csa, B + j, ldb, Cij, ldc, accumulate); break;
        case 2: detail::gemm_tile<T, 2>(k, alpha, Ai, rsa, csa, B + j, ldb, Cij, ldc, accumulate); break;
        default: detail::gemm_tile<T, 1>(k, alpha, Ai, rsa, csa, B + j, ldb, Cij, ldc, accumulate);
      }
    }
  }
  if (n_full < n)
    detail::gemm_edge(r, n - n_full, k, alpha, A, rsa, csa, B + n_full, ldb, C + n_full, ldc,
                      accumulate);
}

namespace detail {
// Per-thread scratch for transposing a block; grows to the largest block seen, never shrinks.
template <class T>
T* transpose_buffer(index_t size) {
  thread_local std::vector<T> buffer;
  if (index_t(buffer.size()) < size) buffer.resize(std::size_t(size));
  return buffer.data();
}

// Bt (n x c) = B^T for B (c x n, row stride ldb), in 8 x 8 tiles so reads and writes both stay
// within a few cache lines.
template <class T>
RESODE_CLONES void transpose(index_t c, index_t n, const T* B, index_t ldb, T* Bt) {
  constexpr index_t tile = 8;
  for (index_t j0 = 0; j0 < c; j0 += tile)
    for (index_t s0 = 0; s0 < n; s0 += tile) {
      const index_t j1 = std::min(c, j0 + tile), s1 = std::min(n, s0 + tile);
      for (index_t j = j0; j < j1; ++j)
        for (index_t s = s0; s < s1; ++s) Bt[s * c + j] = B[j * ldb + s];
    }
}

// RA x RB dot products of SIMD vectors over samples, for a C with a narrow side; with
// `transposed` the (i, j) result goes to C[j*ldc + i] (C^T += B A^T computed as A B^T).
template <class T>
RESODE_CLONES void gemm_abt_dots(index_t r, index_t c, index_t n, T alpha, const T* A,
                                 index_t lda, const T* B, index_t ldb, T* C, index_t ldc,
                                 bool transposed) {
  T out[4][4];
  for (index_t i = 0; i < r; i += 2) {
    const int ra = int(std::min<index_t>(2, r - i));
    for (index_t j = 0; j < c; j += 4) {
      const int rb = int(std::min<index_t>(4, c - j));
      if (ra == 2)
        dot_row<T, 2>(n, A + i * lda, lda, B + j * ldb, ldb, rb, out);
      else
        dot_row<T, 1>(n, A + i * lda, lda, B + j * ldb, ldb, rb, out);
      for (int a = 0; a < ra; ++a)
        for (int b = 0; b < rb; ++b)
          (transposed ? C[(j + b) * ldc + i + a] : C[(i + a) * ldc + j + b]) += alpha * out[a][b];
    }
  }
}
}  // namespace detail

// C (r x c, row stride ldc) += alpha * A (r x n, row stride lda) * B^T (B: c x n, row stride
// ldb): sums over samples of outer products, e.g. dW += G X^T. Wide C: B is transposed once
// (c x n -> n x c, cheap next to the r*c*n products) and the register-tiled gemm does the rest.
template <class T>
void gemm_abt(index_t r, index_t c, index_t n, T alpha, const T* A, index_t lda, const T* B,
              index_t ldb, T* C, index_t ldc) {
  // Measured: dot products win while one side of C is narrow (<= 16), transpose + gemm when
  // both sides are wide. The dot kernel pairs rows of A, so the wide side goes there.
  if (c <= 16 && c <= r) {
    detail::gemm_abt_dots(r, c, n, alpha, A, lda, B, ldb, C, ldc, false);
    return;
  }
  if (r <= 16) {
    detail::gemm_abt_dots(c, r, n, alpha, B, ldb, A, lda, C, ldc, true);
    return;
  }
  T* Bt = detail::transpose_buffer<T>(n * c);
  detail::transpose(c, n, B, ldb, Bt);
  gemm(r, c, n, alpha, A, lda, 1, Bt, c, C, ldc, true);
}

// out[i] += alpha * sum_s A[i*lda + s], i < r: the bias gradient.
template <class T>
RESODE_CLONES void row_sums(index_t r, index_t n, T alpha, const T* A, index_t lda, T* out) {
  for (index_t i = 0; i < r; ++i) {
    index_t s = 0;
    constexpr int L = detail::lanes<T>;
    detail::Vec<T> acc0 = {}, acc1 = {};
    for (; s + 2 * L <= n; s += 2 * L) {
      acc0 += detail::load<T>(A + i * lda + s);
      acc1 += detail::load<T>(A + i * lda + s + L);
    }
    T sum = detail::horizontal_sum<T>(acc0 + acc1);
    for (; s < n; ++s) sum += A[i * lda + s];
    out[i] += alpha * sum;
  }
}

}  // namespace resode
