// Fields and their vector-Jacobian products fused into single passes over a block when the
// state is narrow: the bottleneck field for D = K <= 4 (the seed's D = 3 with H = 50 hidden
// units) and the outside field's VJP for D <= 3 (the D = 2 ResNets of the toy problems).
//
// Bottleneck f = W2 sigma(W1 x + b1) + b2. Through the generic path (fields.hpp) one VJP is
// six kernels: dW2 += fbar a^T (dots), db2, g = (W2^T fbar) * sigma' (stored, H x n),
// dW1 += g x^T (dots), db1 += g 1 (row sums), xbar = W1^T g (gemm). With K = 3 each is a few
// flops per load and store, and g makes three round trips through L1. Here each hidden unit
// j costs, per SIMD vector of samples,
//   t = W2[:, j]^T fbar,  g = t * sigma'(a_j),  dW2[:, j] += fbar a_j,  dW1[j, :] += g x,
//   db1[j] += g,          xbar += W1[j, :]^T g
// with fbar, x and xbar in registers and the parameter sums in vector accumulators (one lane
// per sample, summed across lanes once per pass): 4K + 2 vector operations, one load (a_j),
// no stores. The forward pass likewise keeps f's accumulators in registers and stores only
// a = sigma(W1 x + b1), which the VJP needs; that fusion needs an activation cheap enough to
// compute on whole vectors (piecewise linear: relu, leaky relu, identity).
//
// Outside f = sigma(W x + b): per SIMD vector of samples
//   g = fbar * sigma'(f),  xbar = W^T g,  dW += g x^T,  db += g
// in one pass (four kernels and a stored g in the generic path), K^2 + K accumulators.
//
// Layout (feature-major blocks, see linalg.hpp): x, f, fbar, xbar are K x n, a is H x n;
// W1 (H x K), W2 (K x H), W (K x K) row-major. n is a multiple of 64 bytes of samples
// (sweep.hpp pads blocks so): there is no remainder loop.
// Padding columns carry fbar = 0 and finite x, f, a (they repeat a real sample), so their
// terms in the parameter sums are exact zeros.
//
// Instruction sets. A bottleneck VJP pass holds 2K + 1 accumulators per hidden unit next to
// 3K vectors of samples: with K = 3 two units fit AVX-512's 32 registers, and not even one
// fits AVX2's 16 without spills (measured, W1, 1 thread, float64: AVX-512 2.0 -> 1.4 ms, but
// AVX2 2.8 -> 3.8 ms). So AVX2 runs the VJP in two passes per group of units, g through a
// scratch row (2.8 -> 2.5 ms), and the generic forward pass (fusing it was no faster there);
// the outside VJP and the fused forward pass are AVX-512 only, and CPUs without AVX2 run the
// generic kernels of fields.hpp throughout.
#pragma once
#include <type_traits>

#include "activations.hpp"
#include "linalg.hpp"
#include "narrow.hpp"
#include "small_batch.hpp"

namespace resode {

// State widths with fused kernels: up to 4 for the bottleneck field, up to 3 for the outside
// field (K = 4 needs 20 accumulators next to 12 loaded vectors: spills).
constexpr index_t max_fused_bottleneck_width = 4;
constexpr index_t max_fused_outside_width = 3;

// Is a block of n samples of width K a shape the fused kernels of widths up to max_width
// take (n whole 64-byte chunks)?
template <class T>
bool fused_shape(index_t K, index_t max_width, index_t n) {
  return K >= 1 && K <= max_width && n % (64 / index_t(sizeof(T))) == 0;
}
// ... and does this CPU run them (AVX-512)?
template <class T>
bool fused_kernels_fit(index_t K, index_t max_width, index_t n) {
  return fused_shape<T>(K, max_width, n) && detail::has_avx512();
}
// The bottleneck VJP also has an AVX2 form (two passes).
template <class T>
bool fused_bottleneck_vjp_fits(index_t K, index_t n) {
  return fused_shape<T>(K, max_fused_bottleneck_width, n) &&
         (detail::has_avx512() || detail::has_avx2());
}

// Calls f(std::integral_constant<int, K>{}) for a runtime width 1 <= K <= Max (checked by the
// fits functions above), so each fused kernel is compiled only for the widths it serves.
template <int Max, class F>
void with_fused_width(index_t K, F&& f) {
  with_narrow_width(K, [&](auto width) {
    if constexpr (decltype(width)::value <= Max) f(width);
  });
}

namespace detail {

// AVX-512's 32 vector registers.
constexpr int simd_registers = 32;

// Hidden units per VJP pass: each holds 2K + 1 accumulators, next to fbar, x, xbar (3K) and
// about 3 temporaries (K = 1: 8, K = 2: 4, K = 3: 2, K = 4: 1).
template <int K>
constexpr int vjp_units_per_pass() {
  constexpr int r = (simd_registers - 3 * K - 3) / (2 * K + 1);
  return r < 1 ? 1 : r;
}

// Sample vectors per forward pass: each holds x and f's accumulators (2K); up to 4 of them keep
// enough independent FMA chains (f sums H terms) in flight.
template <int K>
constexpr int eval_vectors_per_pass() {
  constexpr int s = (simd_registers - 4) / (2 * K);
  return s > 4 ? 4 : s;
}

// Vector sample columns [s, s + S L) of the forward pass: a = sigma(W1 x + b1) (stored),
// f = W2 a + b2. (restrict: the stores to a must not force reloads of the weights.)
template <class Act, int K, int S, class T, int Bytes>
RESODE_INLINE void bottleneck_eval_columns(index_t s, index_t H, index_t n,
                                           const T* __restrict W1, const T* __restrict b1,
                                           const T* __restrict W2, const T* __restrict b2,
                                           const T* __restrict x, T* __restrict a,
                                           T* __restrict f) {
  constexpr int L = lanes<T, Bytes>;
  using V = Vec<T, Bytes>;
  V xv[S][K], acc[S][K];
#pragma GCC unroll 4
  for (int q = 0; q < S; ++q)
#pragma GCC unroll 4
    for (int p = 0; p < K; ++p) {
      xv[q][p] = load<T, Bytes>(x + p * n + s + q * L);
      acc[q][p] = splat<V>(0);
    }
  for (index_t j = 0; j < H; ++j) {
    T w1[K], w2[K];
    load_unit_weights<K>(W1, W2, H, j, w1, w2);
    const T bias = b1[j];
#pragma GCC unroll 4
    for (int q = 0; q < S; ++q) {
      V z = w1[0] * xv[q][0];
#pragma GCC unroll 4
      for (int p = 1; p < K; ++p) z += w1[p] * xv[q][p];
      const V av = Act::value(z + bias);
      store<T, Bytes>(a + j * n + s + q * L, av);
#pragma GCC unroll 4
      for (int p = 0; p < K; ++p) acc[q][p] += w2[p] * av;
    }
  }
#pragma GCC unroll 4
  for (int q = 0; q < S; ++q)
#pragma GCC unroll 4
    for (int p = 0; p < K; ++p) store<T, Bytes>(f + p * n + s + q * L, acc[q][p] + b2[p]);
}

template <class Act, int K, class T, int Bytes>
RESODE_INLINE void bottleneck_eval_impl(index_t H, index_t n, const T* W1, const T* b1,
                                        const T* W2, const T* b2, const T* x, T* a, T* f) {
  constexpr int L = lanes<T, Bytes>, S = eval_vectors_per_pass<K>();
  index_t s = 0;
  for (; s + S * L <= n; s += S * L)
    bottleneck_eval_columns<Act, K, S, T, Bytes>(s, H, n, W1, b1, W2, b2, x, a, f);
  for (; s < n; s += L)
    bottleneck_eval_columns<Act, K, 1, T, Bytes>(s, H, n, W1, b1, W2, b2, x, a, f);
}

// What the VJP reads and writes (see bottleneck_vjp below).
template <class T>
struct BottleneckVjp {
  index_t H, n;
  T* g;  // H x n scratch for the two-pass (AVX2) kernel
  const T *W1, *W2, *x, *a, *fbar;
  T* xbar;
  T alpha;               // scale of the parameter gradients
  T *dW1, *db1, *dW2;    // H x K, H, K x H: accumulated
  index_t real;          // samples in columns [0, real); the rest is padding (fbar = 0)
};

// The weights of hidden units [j, j + R) as local arrays: rows of W1 (H x K) and columns of
// W2 (K x H).
template <int K, int R, class T>
RESODE_INLINE void unit_w1(const T* W1, index_t j, T (&w1)[R][K]) {
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int p = 0; p < K; ++p) w1[r][p] = W1[(j + r) * K + p];
}
template <int K, int R, class T>
RESODE_INLINE void unit_w2(const T* W2, index_t H, index_t j, T (&w2)[R][K]) {
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int p = 0; p < K; ++p) w2[r][p] = W2[p * H + j + r];
}

// Hidden unit u's terms that need only its g: db1 += g, dW1[u, :] += g x (with Theta), and
// xbar += W1[u, :]^T g, for one vector of samples.
template <int K, bool Theta, class V, class T>
RESODE_INLINE void add_unit_terms(V g, const V (&xv)[K], const T (&w1)[K], V (&dW1)[K], V& db1,
                                  V (&xb)[K]) {
  if constexpr (Theta) {
    db1 += g;
#pragma GCC unroll 4
    for (int p = 0; p < K; ++p) dW1[p] += g * xv[p];
  }
#pragma GCC unroll 4
  for (int p = 0; p < K; ++p) xb[p] += w1[p] * g;
}

// Unit u's dW1 row and db1, summed over lanes and scaled by alpha, into the gradients.
template <int K, class T, class V>
RESODE_INLINE void store_unit_sums(index_t u, const BottleneckVjp<T>& q, const V (&dW1)[K],
                                   V db1) {
  constexpr int Bytes = int(sizeof(V));
  q.db1[u] += q.alpha * horizontal_sum<T, Bytes>(db1);
#pragma GCC unroll 4
  for (int p = 0; p < K; ++p) q.dW1[u * K + p] += q.alpha * horizontal_sum<T, Bytes>(dW1[p]);
}

// Hidden units [j, j + R) of the VJP over the whole block; the first pass (j = 0) writes
// xbar, the others add to it (so xbar sums over units in a fixed order). The struct is
// unpacked into restrict-qualified locals and the units' weights into local arrays: stores to
// xbar could otherwise alias them and force reloads every iteration.
template <class Act, int K, int R, bool Theta, class T, int Bytes>
RESODE_INLINE void bottleneck_vjp_units(index_t j, const BottleneckVjp<T>& q) {
  constexpr int L = lanes<T, Bytes>;
  using V = Vec<T, Bytes>;
  const index_t n = q.n;
  const T* __restrict x = q.x;
  const T* __restrict fbar = q.fbar;
  const T* __restrict a = q.a + j * n;
  T* __restrict xbar = q.xbar;
  T w1[R][K], w2[R][K];
  unit_w1(q.W1, j, w1);
  unit_w2(q.W2, q.H, j, w2);
  V dW2[R][K], dW1[R][K], db1[R];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
    db1[r] = splat<V>(0);
#pragma GCC unroll 4
    for (int p = 0; p < K; ++p) dW2[r][p] = dW1[r][p] = splat<V>(0);
  }
  const bool first = j == 0;
  for (index_t s = 0; s < n; s += L) {
    V fb[K], xv[K], xb[K];
#pragma GCC unroll 4
    for (int p = 0; p < K; ++p) {
      fb[p] = load<T, Bytes>(fbar + p * n + s);
      xv[p] = load<T, Bytes>(x + p * n + s);
      xb[p] = first ? splat<V>(0) : load<T, Bytes>(xbar + p * n + s);
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const V av = load<T, Bytes>(a + r * n + s);
      V t = w2[r][0] * fb[0];
#pragma GCC unroll 4
      for (int p = 1; p < K; ++p) t += w2[r][p] * fb[p];
      const V g = t * Act::deriv_of_value(av);
      if constexpr (Theta)
#pragma GCC unroll 4
        for (int p = 0; p < K; ++p) dW2[r][p] += fb[p] * av;
      add_unit_terms<K, Theta>(g, xv, w1[r], dW1[r], db1[r], xb);
    }
#pragma GCC unroll 4
    for (int p = 0; p < K; ++p) store<T, Bytes>(xbar + p * n + s, xb[p]);
  }
  if constexpr (Theta)
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      store_unit_sums<K>(j + r, q, dW1[r], db1[r]);
#pragma GCC unroll 4
      for (int p = 0; p < K; ++p)
        q.dW2[p * q.H + j + r] += q.alpha * horizontal_sum<T, Bytes>(dW2[r][p]);
    }
}

template <class Act, int K, bool Theta, class T, int Bytes>
RESODE_INLINE void bottleneck_vjp_impl(const BottleneckVjp<T>& q) {
  constexpr int R = vjp_units_per_pass<K>();
  index_t j = 0;
  for (; j + R <= q.H; j += R) bottleneck_vjp_units<Act, K, R, Theta, T, Bytes>(j, q);
  for (; j < q.H; ++j) bottleneck_vjp_units<Act, K, 1, Theta, T, Bytes>(j, q);
}

// AVX2 (16 registers): the VJP in two passes per group of hidden units, g through scratch.
// A: g = (W2^T fbar) * sigma'(a) (stored), dW2 += fbar a^T; B: dW1 += g x^T, db1 += g 1,
// xbar += W1^T g. Each pass holds at most about 15 vectors.
template <class Act, int K, int R, bool Theta, class T, int Bytes>
RESODE_INLINE void bottleneck_vjp_pass_a(index_t j, const BottleneckVjp<T>& q) {
  constexpr int L = lanes<T, Bytes>;
  using V = Vec<T, Bytes>;
  const index_t n = q.n;
  const T* __restrict fbar = q.fbar;
  const T* __restrict a = q.a + j * n;
  T* __restrict g = q.g + j * n;
  T w2[R][K];
  unit_w2(q.W2, q.H, j, w2);
  V dW2[R][K];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int p = 0; p < K; ++p) dW2[r][p] = splat<V>(0);
  for (index_t s = 0; s < n; s += L) {
    V fb[K];
#pragma GCC unroll 4
    for (int p = 0; p < K; ++p) fb[p] = load<T, Bytes>(fbar + p * n + s);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const V av = load<T, Bytes>(a + r * n + s);
      V t = w2[r][0] * fb[0];
#pragma GCC unroll 4
      for (int p = 1; p < K; ++p) t += w2[r][p] * fb[p];
      store<T, Bytes>(g + r * n + s, t * Act::deriv_of_value(av));
      if constexpr (Theta)
#pragma GCC unroll 4
        for (int p = 0; p < K; ++p) dW2[r][p] += fb[p] * av;
    }
  }
  if constexpr (Theta)
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
      for (int p = 0; p < K; ++p)
        q.dW2[p * q.H + j + r] += q.alpha * horizontal_sum<T, Bytes>(dW2[r][p]);
}

template <class Act, int K, int R, bool Theta, class T, int Bytes>
RESODE_INLINE void bottleneck_vjp_pass_b(index_t j, const BottleneckVjp<T>& q) {
  constexpr int L = lanes<T, Bytes>;
  using V = Vec<T, Bytes>;
  const index_t n = q.n;
  const T* __restrict x = q.x;
  const T* __restrict g = q.g + j * n;
  T* __restrict xbar = q.xbar;
  T w1[R][K];
  unit_w1(q.W1, j, w1);
  V dW1[R][K], db1[R];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
    db1[r] = splat<V>(0);
#pragma GCC unroll 4
    for (int p = 0; p < K; ++p) dW1[r][p] = splat<V>(0);
  }
  const bool first = j == 0;
  for (index_t s = 0; s < n; s += L) {
    V xv[K], xb[K];
#pragma GCC unroll 4
    for (int p = 0; p < K; ++p) {
      if constexpr (Theta) xv[p] = load<T, Bytes>(x + p * n + s);
      xb[p] = first ? splat<V>(0) : load<T, Bytes>(xbar + p * n + s);
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r)
      add_unit_terms<K, Theta>(load<T, Bytes>(g + r * n + s), xv, w1[r], dW1[r], db1[r], xb);
#pragma GCC unroll 4
    for (int p = 0; p < K; ++p) store<T, Bytes>(xbar + p * n + s, xb[p]);
  }
  if constexpr (Theta)
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) store_unit_sums<K>(j + r, q, dW1[r], db1[r]);
}

template <class Act, int K, bool Theta, class T, int Bytes>
RESODE_INLINE void bottleneck_vjp_two_pass(const BottleneckVjp<T>& q) {
  constexpr int RA = (16 - K - 3) / K < 1 ? 1 : (16 - K - 3) / K;            // K = 3: 3
  constexpr int RB = (16 - 2 * K - 1) / (K + 1) < 1 ? 1 : (16 - 2 * K - 1) / (K + 1);  // 2
  index_t j = 0;
  for (; j + RA <= q.H; j += RA) bottleneck_vjp_pass_a<Act, K, RA, Theta, T, Bytes>(j, q);
  for (; j < q.H; ++j) bottleneck_vjp_pass_a<Act, K, 1, Theta, T, Bytes>(j, q);
  j = 0;
  for (; j + RB <= q.H; j += RB) bottleneck_vjp_pass_b<Act, K, RB, Theta, T, Bytes>(j, q);
  for (; j < q.H; ++j) bottleneck_vjp_pass_b<Act, K, 1, Theta, T, Bytes>(j, q);
}

// What the outside field's VJP reads and writes (see outside_vjp below).
template <class T>
struct OutsideVjp {
  index_t n;
  const T *W, *x, *f, *fbar;
  T* xbar;
  T alpha;      // scale of the parameter gradients
  T *dW, *db;   // K x K, K: accumulated; dW == nullptr: no parameter gradients
  bool add = false;  // xbar += xbar_scale W^T g instead of xbar = W^T g (fbar may be xbar)
  T xbar_scale = T(1);
};

// With Add (the reverse of an Euler step in place) fbar may be xbar itself: each column's fbar
// is loaded before its xbar is stored.
template <class Act, int K, bool Theta, bool Add, class T, int Bytes>
RESODE_INLINE void outside_vjp_impl(const OutsideVjp<T>& q) {
  constexpr int L = lanes<T, Bytes>;
  using V = Vec<T, Bytes>;
  const index_t n = q.n;
  const T* __restrict x = q.x;
  const T* __restrict f = q.f;
  T* xbar = q.xbar;  // no __restrict on these two: with Add they are one array
  const T* fbar = q.fbar;
  T w[K][K];  // xbar_scale W with Add
#pragma GCC unroll 4
  for (int p = 0; p < K; ++p)
#pragma GCC unroll 4
    for (int r = 0; r < K; ++r) w[p][r] = (Add ? q.xbar_scale : T(1)) * q.W[p * K + r];
  V dW[K][K], db[K];
#pragma GCC unroll 4
  for (int p = 0; p < K; ++p) {
    db[p] = splat<V>(0);
#pragma GCC unroll 4
    for (int r = 0; r < K; ++r) dW[p][r] = splat<V>(0);
  }
  for (index_t s = 0; s < n; s += L) {
    V g[K], xv[K], fb[K];
#pragma GCC unroll 4
    for (int p = 0; p < K; ++p) {
      fb[p] = load<T, Bytes>(fbar + p * n + s);
      g[p] = fb[p] * Act::deriv_of_value(load<T, Bytes>(f + p * n + s));
      xv[p] = load<T, Bytes>(x + p * n + s);
    }
    if constexpr (Theta)
#pragma GCC unroll 4
      for (int p = 0; p < K; ++p) {
        db[p] += g[p];
#pragma GCC unroll 4
        for (int r = 0; r < K; ++r) dW[p][r] += g[p] * xv[r];
      }
#pragma GCC unroll 4
    for (int r = 0; r < K; ++r) {  // xbar_r (+)= sum_p W[p][r] g_p
      V xb = Add ? fb[r] + w[0][r] * g[0] : w[0][r] * g[0];
#pragma GCC unroll 4
      for (int p = 1; p < K; ++p) xb += w[p][r] * g[p];
      store<T, Bytes>(xbar + r * n + s, xb);
    }
  }
  if constexpr (Theta)
#pragma GCC unroll 4
    for (int p = 0; p < K; ++p) {
      q.db[p] += q.alpha * horizontal_sum<T, Bytes>(db[p]);
#pragma GCC unroll 4
      for (int r = 0; r < K; ++r) q.dW[p * K + r] += q.alpha * horizontal_sum<T, Bytes>(dW[p][r]);
    }
}

// The compiled instances: 64-byte vectors for AVX-512 (see the top of this file).
template <class Act, int K, class T>
RESODE_AVX512 void bottleneck_eval_v64(index_t H, index_t n, const T* W1, const T* b1,
                                       const T* W2, const T* b2, const T* x, T* a, T* f) {
  bottleneck_eval_impl<Act, K, T, 64>(H, n, W1, b1, W2, b2, x, a, f);
}
template <class Act, int K, bool Theta, class T>
RESODE_AVX512 void bottleneck_vjp_v64(const BottleneckVjp<T>& q) {
  bottleneck_vjp_impl<Act, K, Theta, T, 64>(q);
}
template <class Act, int K, bool Theta, class T>
RESODE_AVX2 void bottleneck_vjp_v32_avx2(const BottleneckVjp<T>& q) {
  bottleneck_vjp_two_pass<Act, K, Theta, T, 32>(q);
}
template <class Act, int K, bool Theta, bool Add, class T>
RESODE_AVX512 void outside_vjp_v64(const OutsideVjp<T>& q) {
  outside_vjp_impl<Act, K, Theta, Add, T, 64>(q);
}
}  // namespace detail

// a (H x n) = sigma(W1 x + b1), f (K x n) = W2 a + b2, for a piecewise-linear sigma and
// fused_kernels_fit(K, max_fused_bottleneck_width, n).
template <class Act, int K, class T>
void bottleneck_eval(index_t H, index_t n, const T* W1, const T* b1, const T* W2, const T* b2,
                     const T* x, T* a, T* f) {
  static_assert(Act::piecewise_linear, "the fused forward pass computes sigma on vectors");
  detail::bottleneck_eval_v64<Act, K>(H, n, W1, b1, W2, b2, x, a, f);
}

// At the point of a = sigma(W1 x + b1), with g = (W2^T fbar) * sigma'(a) (H x n):
//   xbar (K x n) = W1^T g                                      (overwritten)
//   if q.dW1: dW2 += alpha fbar a^T, dW1 += alpha g x^T, db1 += alpha g 1   (summed over n)
// (db2 += alpha fbar 1 is the caller's: it needs no hidden unit).
// fused_bottleneck_vjp_fits(K, n); q.g: H x n scratch (used by the AVX2 form).
template <class Act, int K, class T>
void bottleneck_vjp(const detail::BottleneckVjp<T>& q) {
  if (small_bottleneck_vjp_fits<T>(q.n, q.real, q.H)) {  // its lane sums L at a time (small_batch.hpp)
    if (q.dW1)
      detail::small_bottleneck_vjp_v64<Act, K, true, T>(q);
    else
      detail::small_bottleneck_vjp_v64<Act, K, false, T>(q);
  } else if (detail::has_avx512()) {
    if (q.dW1)
      detail::bottleneck_vjp_v64<Act, K, true>(q);
    else
      detail::bottleneck_vjp_v64<Act, K, false>(q);
  } else {
    if (q.dW1)
      detail::bottleneck_vjp_v32_avx2<Act, K, true>(q);
    else
      detail::bottleneck_vjp_v32_avx2<Act, K, false>(q);
  }
}

// At the point of f = sigma(W x + b) (K x n), with g = fbar * sigma'(f):
//   xbar (K x n) = W^T g                   (overwritten; q.add: xbar += q.xbar_scale W^T g,
//                                           and q.fbar may be q.xbar)
//   if q.dW: dW += alpha g x^T, db += alpha g 1                    (summed over n)
// fused_kernels_fit(K, max_fused_outside_width, n).
template <class Act, int K, class T>
void outside_vjp(const detail::OutsideVjp<T>& q) {
  auto run = [&](auto add) {
    if (q.dW)
      detail::outside_vjp_v64<Act, K, true, decltype(add)::value>(q);
    else
      detail::outside_vjp_v64<Act, K, false, decltype(add)::value>(q);
  };
  if (q.add)
    run(std::true_type{});
  else
    run(std::false_type{});
}

}  // namespace resode
