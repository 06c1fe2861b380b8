// The bottleneck field's VJP for a block of one SIMD vector of samples with at most half of it
// real (N <= 4 in float64, N <= 8 in float32; AVX-512), bitwise equal to bottleneck_vjp of
// fused_fields.hpp.
//
// Why. At the seed's D = 3, H = 50 and one vector of samples (N = 1, 2 or 8), the fused VJP
// took three quarters of a training step, and most of that in its lane sums (measured, perf,
// float64, N = 2): every hidden unit sums 2K + 1 = 7 vectors across their lanes (dW2[:, j],
// dW1[j, :], db1[j]), each a chain of shuffles and adds ending in a scalar read-modify-write,
// while the products are a handful of FMAs per unit. Here the parameter sums run with one
// hidden unit per lane and one row per real sample, so L units are summed by a few vector adds
// (L = the lanes of a vector), the padding samples are skipped, and db1 and dW2 take one vector
// FMA per L units.
//
// Same floating-point operations in the same order, per gradient entry: the generic kernel's
// accumulator lane s is 0 + (its product for sample s); the lanes are summed by
// horizontal_sum's tree (halves added, v[i] + v[i + w/2], down to 16 bytes, then s = 0,
// s += w[0], s += w[1], ...); the gradient gets += alpha * sum (one FMA). Padding lanes hold
// exactly +0 (their fbar is 0) and no partial sum is -0, so leaving them out of the tree
// changes no bit. xbar sums the units in unit order from 0, as the generic passes do.
//
// Layout (fused_fields.hpp): x, fbar, xbar K x L; a H x L; W1 H x K, W2 K x H row-major;
// dW1 H x K, dW2 K x H, db1 H. Pass 1 (samples in lanes): g_j = (W2[:, j]^T fbar) * sigma'(a_j)
// and xbar = W1^T g; it copies the real samples' lanes of g and a into rows (units in lanes, on
// the stack). Pass 2: the parameter sums from those rows.
#pragma once
#include <algorithm>
#include <atomic>

#include "activations.hpp"
#include "linalg.hpp"

namespace resode {

// Whether the sweeps take the small-batch kernels (default on). Off only to compare them with
// the generic kernels (tests/test_small_batch.py), which give the same bits.
inline std::atomic<bool>& small_batch_flag() {
  static std::atomic<bool> enabled{true};
  return enabled;
}
inline bool small_batch_enabled() { return small_batch_flag().load(std::memory_order_relaxed); }
inline bool set_small_batch_enabled(bool on) { return small_batch_flag().exchange(on); }

namespace detail {

// grad[i] += alpha * sums[i] for the first `count` of L neighbouring entries (one vector FMA
// when all L are there).
template <class T, int Bytes>
RESODE_INLINE void add_scaled(T* grad, index_t count, T alpha, Vec<T, Bytes> sums) {
  constexpr int L = lanes<T, Bytes>;
  if (count == L) {
    Vec<T, Bytes> g = load<T, Bytes>(grad);
    g += alpha * sums;
    store<T, Bytes>(grad, g);
  } else {
    for (index_t i = 0; i < count; ++i) grad[i] += alpha * sums[i];
  }
}

// horizontal_sum's tree (linalg.hpp) over the rows[0, real) of L rows, lane by lane: rows[s] is
// lane s of the vectors being summed (one vector per lane of the result). The rows of padding
// samples, [real, L), are left out: their lanes hold exactly +0 (0 + a product with fbar = 0),
// and no partial sum is -0 (each starts as 0 + something), so adding them changes nothing.
template <class T, int Bytes>
RESODE_INLINE Vec<T, Bytes> sum_real_rows(Vec<T, Bytes>* rows, int real) {  // rows[L]
  using V = Vec<T, Bytes>;
  int live = real;
#pragma GCC unroll 4
  for (int width = lanes<T, Bytes>; width * int(sizeof(T)) > 16; width /= 2) {
    const int half = width / 2;  // low half + high half
#pragma GCC unroll 8
    for (int i = 0; i < half; ++i)
      if (i + half < live) rows[i] = rows[i] + rows[i + half];
    live = std::min(live, half);
  }
  V s = splat<V>(0);  // the 16-byte tail: s = 0, s += v[0], s += v[1], ...
#pragma GCC unroll 4
  for (int l = 0; l < 16 / int(sizeof(T)); ++l)
    if (l < live) s += rows[l];
  return s;
}

// Hidden unit j's weights in the bottleneck field f = W2 sigma(W1 x + b1) + b2: row j of W1
// (H x K row-major: K inputs) into w1, column j of W2 (K x H row-major: K outputs) into w2.
template <int K, class T>
RESODE_INLINE void load_unit_weights(const T* W1, const T* W2, index_t H, index_t j, T* w1,
                                     T* w2) {
#pragma GCC unroll 4
  for (int p = 0; p < K; ++p) {
    w1[p] = W1[j * K + p];
    w2[p] = W2[p * H + j];
  }
}

// Hidden units the small-block VJP takes (its rows of g and a live on the stack).
constexpr index_t small_batch_max_hidden = 256;

// The small-block VJP (see the top of this file); Q: BottleneckVjp<T> (fused_fields.hpp).
template <class Act, int K, bool Theta, class T, int Bytes, class Q>
RESODE_INLINE void small_bottleneck_vjp_impl(const Q& q) {
  constexpr int L = lanes<T, Bytes>;
  using V = Vec<T, Bytes>;
  const index_t H = q.H;
  const int real = int(q.real);
  const T* __restrict W1 = q.W1;
  const T* __restrict W2 = q.W2;
  const T* __restrict a = q.a;
  // Rows of the real samples, units in lanes: gs[s][j] = g_js, as[s][j] = a_js (pass 2's input;
  // the units past H in the last vector are zeros).
  alignas(64) T gs[L][small_batch_max_hidden + L];
  alignas(64) T as[L][small_batch_max_hidden + L];
  // Pass 1: g_j = (W2[:, j]^T fbar) * sigma'(a_j), xbar = sum_j W1[j, :]^T g_j in unit order.
  V fb[K], xb[K];
#pragma GCC unroll 4
  for (int p = 0; p < K; ++p) {
    fb[p] = load<T, Bytes>(q.fbar + p * L);
    xb[p] = splat<V>(0);
  }
  for (index_t j = 0; j < H; ++j) {
    T w1[K], w2[K];
    load_unit_weights<K>(W1, W2, H, j, w1, w2);
    const V av = load<T, Bytes>(a + j * L);
    V t = w2[0] * fb[0];
#pragma GCC unroll 4
    for (int p = 1; p < K; ++p) t += w2[p] * fb[p];
    const V gv = t * Act::deriv_of_value(av);
    if constexpr (Theta)
      for (int s = 0; s < real; ++s) gs[s][j] = gv[s], as[s][j] = av[s];
#pragma GCC unroll 4
    for (int p = 0; p < K; ++p) xb[p] += w1[p] * gv;
  }
#pragma GCC unroll 4
  for (int p = 0; p < K; ++p) store<T, Bytes>(q.xbar + p * L, xb[p]);
  if constexpr (Theta) {
    // Pass 2: the parameter sums of L hidden units at a time, one vector lane per unit and
    // one row per real sample s (its lane of the generic kernel's accumulators).
    for (int s = 0; s < real; ++s)
      for (index_t j = H; j < (H + L - 1) / L * L; ++j) gs[s][j] = as[s][j] = T(0);
    const T* __restrict x = q.x;
    const T* __restrict fbar = q.fbar;
    V rows[L] = {};  // rows [real, L) are never read (zeroed once: no maybe-uninitialized)
    for (index_t j0 = 0; j0 < H; j0 += L) {
      const index_t count = std::min<index_t>(L, H - j0);
      V gv[L], av[L];
      for (int s = 0; s < real; ++s) {
        gv[s] = load<T, Bytes>(gs[s] + j0);
        av[s] = load<T, Bytes>(as[s] + j0);
      }
      for (int s = 0; s < real; ++s) {  // db1[j] += alpha sum_s g_js
        rows[s] = splat<V>(0);
        rows[s] += gv[s];
      }
      add_scaled<T, Bytes>(q.db1 + j0, count, q.alpha, sum_real_rows<T, Bytes>(rows, real));
#pragma GCC unroll 4
      for (int p = 0; p < K; ++p) {  // dW2[p, j] += alpha sum_s fbar_ps a_js
        for (int s = 0; s < real; ++s) {
          rows[s] = splat<V>(0);
          rows[s] += fbar[p * L + s] * av[s];
        }
        add_scaled<T, Bytes>(q.dW2 + p * H + j0, count, q.alpha,
                             sum_real_rows<T, Bytes>(rows, real));
      }
#pragma GCC unroll 4
      for (int p = 0; p < K; ++p) {  // dW1[j, p] += alpha sum_s g_js x_ps
        for (int s = 0; s < real; ++s) {
          rows[s] = splat<V>(0);
          rows[s] += gv[s] * x[p * L + s];
        }
        const V sums = sum_real_rows<T, Bytes>(rows, real);
        for (index_t u = 0; u < count; ++u) q.dW1[(j0 + u) * K + p] += q.alpha * sums[u];
      }
    }
  }
}

template <class Act, int K, bool Theta, class T, class Q>
RESODE_AVX512 void small_bottleneck_vjp_v64(const Q& q) {
  small_bottleneck_vjp_impl<Act, K, Theta, T, 64>(q);
}

}  // namespace detail

// Does the small-block VJP take a block of n samples, `real` of them real, with H hidden units
// (where fused_bottleneck_vjp_fits holds)? One vector of samples, at most half of them real:
// its cost grows with the real samples, and from about 6 of 8 (float64) the generic kernel's
// lane sums, which cost the same for any count, are cheaper (measured, W1, one thread).
template <class T>
bool small_bottleneck_vjp_fits(index_t n, index_t real, index_t H) {
  constexpr index_t L = 64 / index_t(sizeof(T));
  return small_batch_enabled() && detail::has_avx512() && n == L && 2 * real <= L &&
         H <= detail::small_batch_max_hidden;
}

}  // namespace resode
