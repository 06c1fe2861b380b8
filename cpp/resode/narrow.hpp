// Fused kernels for products whose inner dimension K is tiny (the state width D = 1..4 of the
// toy problems): the product, the activation (or its slope) and the store happen in one pass
// over the block, K fixed at compile time so the inner loops unroll and the loop over samples
// vectorises (feature-major blocks, see linalg.hpp). With K this small a GEMM tile is all
// stores, and a separate activation pass would read and write the whole block again.
//
//   affine_activate          out = sigma(W X + b 1^T)          W (rows x K), X (K x n)
//       outside field f = sigma(W x + b); bottleneck a = sigma(W1 x + b1)
//   transpose_affine_slope   out = sigma'(a) * (W^T G)          W (K x rows), G (K x n)
//       bottleneck g = (W2^T fbar) * sigma'; inside xbar = (W^T fbar) * sigma'(x)
// sigma' is always taken from the activation's value (deriv_of_value), as in fields.hpp.
// Outputs must not alias inputs.
#pragma once
#include <type_traits>

#include "activations.hpp"
#include "config.hpp"
#include "isa.hpp"

namespace resode {

// The widths that get fused kernels.
// (Widths 5..8 had kernels too; the generic products measured as fast there, with AVX2, and
// their instances were a third of the build.)
constexpr index_t max_narrow_width = 4;

// Calls f(std::integral_constant<int, K>{}) and returns true when 1 <= K <= max_narrow_width;
// returns false (and calls nothing) otherwise. The kernels below exist for AVX2 and AVX-512
// only (dispatch_simd): a baseline copy of each width and activation cost a third of the build
// for CPUs without AVX2; check simd_kernels_run() before calling them.
template <class F>
bool with_narrow_width(index_t K, F&& f) {
  switch (K) {
    case 1: return f(std::integral_constant<int, 1>{}), true;
    case 2: return f(std::integral_constant<int, 2>{}), true;
    case 3: return f(std::integral_constant<int, 3>{}), true;
    case 4: return f(std::integral_constant<int, 4>{}), true;
    default: return false;
  }
}

// Samples per inner chunk: 64 bytes, a whole block padding unit (sweep.hpp), so the chunk
// loops below have a constant trip count and vectorise with no runtime checks or remainder
// handling; at n = 8 (N = 2) a runtime-length loop per row was mostly that overhead. (The
// chunk loop is left to the loop vectoriser: unrolling it by hand first tripled the build.)
template <class T>
constexpr index_t narrow_chunk = 64 / sizeof(T);

namespace detail {
// one(s) for every sample s in [0, n): whole chunks, then the rest.
template <class T, class F>
RESODE_INLINE void for_each_sample(index_t n, F&& one) {
  constexpr index_t C = narrow_chunk<T>;
  index_t s = 0;
  for (; s + C <= n; s += C)
    for (index_t l = 0; l < C; ++l) one(s + l);
  for (; s < n; ++s) one(s);
}

// Rows [i, i + R) of affine_activate below. R rows share each load of X (R = 4: 3 loads of X
// per 4 outputs instead of 3 per output at K = 3).
template <class Act, int K, int R, class T>
RESODE_INLINE void affine_activate_rows(index_t i, index_t n, const T* W, const T* b,
                                        const T* __restrict X, T* __restrict out) {
  T w[R][K], bias[R];
  for (int r = 0; r < R; ++r) {
    for (int p = 0; p < K; ++p) w[r][p] = W[(i + r) * K + p];
    bias[r] = b[i + r];
  }
  T* __restrict o = out + i * n;
  auto one = [&](index_t s) __attribute__((always_inline)) {
    T x[K];
#pragma GCC unroll 8
    for (int p = 0; p < K; ++p) x[p] = X[p * n + s];
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      T z = T(0);
#pragma GCC unroll 8
      for (int p = 0; p < K; ++p) z += w[r][p] * x[p];
      o[r * n + s] = Act::piecewise_linear ? Act::value(z + bias[r]) : z + bias[r];
    }
  };
  for_each_sample<T>(n, one);
  // tanh and sigmoid in a second loop over the rows, still in L1: one loop holding both the
  // K-term product and their long dependency chains was measured slower (W1 with tanh: 10%)
  // than two short ones; relu in the same loop was 10% faster.
  if constexpr (!Act::piecewise_linear)
    for (index_t e = 0; e < R * n; ++e) o[e] = Act::value(o[e]);
}

// Rows [i, i + R) of transpose_affine_slope below, sharing the loads of G.
template <class Act, int K, int R, class T>
RESODE_INLINE void transpose_affine_slope_rows(index_t i, index_t rows, index_t n, const T* W,
                                               const T* __restrict G, const T* __restrict a,
                                               T* __restrict out) {
  T w[R][K];
  for (int r = 0; r < R; ++r)
    for (int p = 0; p < K; ++p) w[r][p] = W[p * rows + i + r];
  const T* __restrict ai = a + i * n;
  T* __restrict o = out + i * n;
  auto one = [&](index_t s) __attribute__((always_inline)) {
    T g[K];
#pragma GCC unroll 8
    for (int p = 0; p < K; ++p) g[p] = G[p * n + s];
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      T z = T(0);
#pragma GCC unroll 8
      for (int p = 0; p < K; ++p) z += w[r][p] * g[p];
      o[r * n + s] = z * Act::deriv_of_value(ai[r * n + s]);
    }
  };
  for_each_sample<T>(n, one);
}
}  // namespace detail

// out[i][s] = sigma(b[i] + sum_{p<K} W[i][p] X[p][s]), rows x n.
template <class Act, int K, class T>
void affine_activate(index_t rows, index_t n, const T* W, const T* b, const T* __restrict X,
                     T* __restrict out) {
  dispatch_simd([&]() RESODE_KERNEL {
    index_t i = 0;
    for (; i + 4 <= rows; i += 4) detail::affine_activate_rows<Act, K, 4>(i, n, W, b, X, out);
    for (; i < rows; ++i) detail::affine_activate_rows<Act, K, 1>(i, n, W, b, X, out);
  });
}

// out[i][s] = sigma'(a[i][s]) * sum_{p<K} W[p][i] G[p][s], rows x n (a = sigma(.) per element).
template <class Act, int K, class T>
void transpose_affine_slope(index_t rows, index_t n, const T* W, const T* __restrict G,
                            const T* __restrict a, T* __restrict out) {
  dispatch_simd([&]() RESODE_KERNEL {
    index_t i = 0;
    for (; i + 4 <= rows; i += 4)
      detail::transpose_affine_slope_rows<Act, K, 4>(i, rows, n, W, G, a, out);
    for (; i < rows; ++i)
      detail::transpose_affine_slope_rows<Act, K, 1>(i, rows, n, W, G, a, out);
  });
}

}  // namespace resode
