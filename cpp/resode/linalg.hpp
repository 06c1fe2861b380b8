// Small dense matrix products on row-major blocks of samples, the only linear algebra the
// sweeps need (all three shapes reduce to one strided kernel):
//   forward          Z  = X W^T      (n x m)   gemm_nt
//   cotangent        Xb = G W        (n x k)   gemm_nn
//   weight gradient  dW += a G^T X   (m x k)   gemm_tn_acc
// The kernel keeps an MR x NR tile of C in registers (MR = 4 rows, NR = two SIMD vectors of
// columns) and streams one row of B per step of the reduction, so B must have unit column
// stride; W^T is packed once per call to get it. Edges fall back to plain loops, which are also
// what runs for the tiny widths (D = 1..7) of the toy problems.
#pragma once
#include <algorithm>
#include <cstring>
#include <vector>

#include "config.hpp"

namespace resode {
namespace detail {

// A 32-byte SIMD vector (one AVX2 register; two SSE2 registers in the baseline clone).
template <class T>
using Vec __attribute__((vector_size(32))) = T;

template <class T>
struct Tile {
  static constexpr int MR = 4;
  static constexpr int NR = 64 / int(sizeof(T));  // 2 AVX2 vectors: 8 doubles, 16 floats
};

// C[i*ldc + j] (+)= alpha * sum_p A[i*rsa + p*csa] * B[p*ldb + j], i < n, j < m, p < k.
template <class T>
RESODE_CLONES void strided_gemm(index_t n, index_t m, index_t k, T alpha, const T* A, index_t rsa,
                                index_t csa, const T* B, index_t ldb, T* C, index_t ldc,
                                bool accumulate) {
  constexpr int MR = Tile<T>::MR, NR = Tile<T>::NR;
  const index_t n_full = n - n % MR, m_full = m - m % NR;
  for (index_t i0 = 0; i0 < n_full; i0 += MR) {
    for (index_t j0 = 0; j0 < m_full; j0 += NR) {
      // acc[i][v] holds C(i0 + i, j0 + v*VL .. j0 + v*VL + VL - 1) in one SIMD register.
      Vec<T> acc[MR][2] = {};
      for (index_t p = 0; p < k; ++p) {
        Vec<T> b0, b1;
        std::memcpy(&b0, B + p * ldb + j0, sizeof b0);
        std::memcpy(&b1, B + p * ldb + j0 + NR / 2, sizeof b1);
#pragma GCC unroll 4
        for (int i = 0; i < MR; ++i) {
          const T a = A[(i0 + i) * rsa + p * csa];
          acc[i][0] += a * b0;
          acc[i][1] += a * b1;
        }
      }
      for (int i = 0; i < MR; ++i) {
        T* c = C + (i0 + i) * ldc + j0;
        for (int v = 0; v < 2; ++v)
          for (int j = 0; j < NR / 2; ++j) {
            const T value = alpha * acc[i][v][j];
            c[v * NR / 2 + j] = accumulate ? c[v * NR / 2 + j] + value : value;
          }
      }
    }
  }
  // Right edge (columns m_full..m) for the full row tiles, then the bottom rows.
  auto edge = [&](index_t i_begin, index_t i_end, index_t j_begin) {
    for (index_t i = i_begin; i < i_end; ++i) {
      T* c = C + i * ldc;
      for (index_t j = j_begin; j < m; ++j) {
        T s = T(0);
        for (index_t p = 0; p < k; ++p) s += A[i * rsa + p * csa] * B[p * ldb + j];
        c[j] = accumulate ? c[j] + alpha * s : alpha * s;
      }
    }
  };
  if (m_full < m) edge(0, n_full, m_full);
  edge(n_full, n, 0);
}

// Per-thread scratch for packing B^T; grows to the largest W seen, never shrinks.
template <class T>
T* packing_buffer(index_t size) {
  thread_local std::vector<T> buffer;
  if (index_t(buffer.size()) < size) buffer.resize(size);
  return buffer.data();
}

}  // namespace detail

// Z (n x m, row stride ldz) = X (n x k, row stride ldx) * W^T, W (m x k) contiguous.
template <class T>
void gemm_nt(index_t n, index_t m, index_t k, const T* X, index_t ldx, const T* W, T* Z,
             index_t ldz) {
  // Pack W^T (k x m) so the kernel streams its rows with unit stride.
  T* wt = detail::packing_buffer<T>(m * k);
  for (index_t j = 0; j < m; ++j)
    for (index_t p = 0; p < k; ++p) wt[p * m + j] = W[j * k + p];
  detail::strided_gemm<T>(n, m, k, T(1), X, ldx, 1, wt, m, Z, ldz, false);
}

// Xb (n x k) (+)= G (n x m) * W (m x k); all contiguous.
template <class T>
void gemm_nn(index_t n, index_t m, index_t k, const T* G, const T* W, T* Xb, bool accumulate) {
  detail::strided_gemm<T>(n, k, m, T(1), G, m, 1, W, k, Xb, k, accumulate);
}

// dW (m x k) += alpha * G^T X, G (n x m), X (n x k, row stride ldx): the sum over samples of
// outer products g_i x_i^T.
template <class T>
void gemm_tn_acc(index_t n, index_t m, index_t k, T alpha, const T* G, const T* X, index_t ldx,
                 T* dW) {
  detail::strided_gemm<T>(m, k, n, alpha, G, 1, m, X, ldx, dW, k, true);
}

// out[j] += alpha * sum_i G[i*m + j]: the bias gradient (column sums).
template <class T>
void column_sums_acc(index_t n, index_t m, T alpha, const T* G, T* out) {
  for (index_t i = 0; i < n; ++i)
    for (index_t j = 0; j < m; ++j) out[j] += alpha * G[i * m + j];
}

}  // namespace resode
