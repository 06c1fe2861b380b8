// Vector fields f_k(x) of one layer (ResNet) or one piece of the controls (neural ODE): their
// evaluation on a block of samples and their vector-Jacobian products.
//
// Memory layout. Parameters are stacked over the leading axis k (layers or pieces), row-major,
// exactly as the Python params dict holds them:
//   outside     f = sigma(W x + b)                W (K, D, D), b (K, D)
//   inside      f = W sigma(x) + b                W (K, D, D), b (K, D)
//   bottleneck  f = W2 sigma(W1 x + b1) + b2      W1 (K, H, D), b1 (K, H), W2 (K, D, H), b2 (K, D)
// For outside/inside, W and b live in the W1/b1 slots and H = D. Gradients use one flat buffer,
// the concatenation [W1 | b1 | W2 | b2] (or [W | b]).
// A block of n samples is feature-major (see linalg.hpp): x is D x n, sample s in column s.
// In that layout the field is Z = W X + b 1^T, and its products are GEMMs with B = X.
#pragma once
#include <algorithm>
#include <string>

#include "activations.hpp"
#include "elementwise.hpp"
#include "errors.hpp"
#include "fused_fields.hpp"
#include "linalg.hpp"
#include "narrow.hpp"

namespace resode {

enum class FieldKind { outside, inside, bottleneck };

inline FieldKind parse_field(const std::string& name) {
  if (name == "outside") return FieldKind::outside;
  if (name == "inside") return FieldKind::inside;
  if (name == "bottleneck") return FieldKind::bottleneck;
  throw std::invalid_argument("field must be one of 'outside', 'inside', 'bottleneck'; got '" +
                              name + "'");
}

template <class T>
struct FieldParams {
  FieldKind kind = FieldKind::outside;
  index_t pieces = 0;  // K: layers of a ResNet, pieces of piecewise-constant controls
  index_t D = 0;       // state width (input dim + augment)
  index_t H = 0;       // hidden width (bottleneck); equals D otherwise
  const T* W1 = nullptr;
  const T* b1 = nullptr;
  const T* W2 = nullptr;  // bottleneck only
  const T* b2 = nullptr;  // bottleneck only

  bool bottleneck() const { return kind == FieldKind::bottleneck; }
  // Sizes of one piece's tensors and of all parameters (the flat gradient buffer).
  index_t w1_size() const { return H * D; }
  index_t b1_size() const { return H; }
  index_t w2_size() const { return bottleneck() ? D * H : 0; }
  index_t b2_size() const { return bottleneck() ? D : 0; }
  index_t size() const { return pieces * (w1_size() + b1_size() + w2_size() + b2_size()); }
  // Offsets of each tensor inside the flat gradient buffer.
  index_t b1_offset() const { return pieces * w1_size(); }
  index_t w2_offset() const { return b1_offset() + pieces * b1_size(); }
  index_t b2_offset() const { return w2_offset() + pieces * w2_size(); }
  // What field_eval leaves for field_vjp besides f itself (n samples): nothing for outside
  // (sigma' comes from f = sigma(z)), s = sigma(x) for inside, a = sigma(W1 x + b1) for
  // bottleneck.
  index_t cache_size(index_t n) const {
    return kind == FieldKind::outside ? 0 : bottleneck() ? H * n : D * n;
  }
  index_t scratch_size(index_t n) const { return std::max(D, H) * n; }
};

namespace detail {
// M (rows x n) = W (rows x k) X (k x n) + bias 1^T.
template <class T>
void affine(index_t rows, index_t k, index_t n, const T* W, const T* bias, const T* X, T* M) {
  gemm(rows, n, k, T(1), W, k, index_t(1), X, n, M, n, false, bias);
}

// Xbar (k x n) = W^T (W: rows x k) G (rows x n); with accumulate, Xbar += alpha W^T G.
template <class T>
void affine_transpose(index_t rows, index_t k, index_t n, const T* W, const T* G, T* Xbar,
                      T alpha = T(1), bool accumulate = false) {
  gemm(k, n, rows, alpha, W, index_t(1), k, G, n, Xbar, n, accumulate);
}

// dW (rows x k) += alpha G X^T, db (rows) += alpha G 1, summed over the first m of the n
// columns of G (rows x n) and X (k x n).
template <class T>
void affine_param_grads(index_t rows, index_t k, index_t m, index_t n, T alpha, const T* G,
                        const T* X, T* dW, T* db) {
  gemm_abt(rows, k, m, alpha, G, n, X, n, dW, k);
  row_sums(rows, m, alpha, G, n, db);
}
}  // namespace detail

// f = f_k(x) for a block x (D x n); fills `cache` (cache_size(n)) for field_vjp.
template <class Act, class T>
void field_eval(const FieldParams<T>& p, index_t k, index_t n, const T* x, T* f, T* cache) {
  const index_t D = p.D, H = p.H;
  const T* W1 = p.W1 + k * p.w1_size();
  const T* b1 = p.b1 + k * p.b1_size();
  // sigma(W x + b) for rows x n: one fused pass when D is narrow (narrow.hpp).
  auto affine_then_activate = [&](index_t rows, T* out) {
    const bool fused = simd_kernels_run() && with_narrow_width(D, [&](auto K) {
      affine_activate<Act, decltype(K)::value>(rows, n, W1, b1, x, out);
    });
    if (fused) return;
    detail::affine(rows, D, n, W1, b1, x, out);
    activate<Act>(rows * n, out, out);
  };
  switch (p.kind) {
    case FieldKind::outside:  // f = sigma(W x + b)
      affine_then_activate(D, f);
      return;
    case FieldKind::inside:  // s = sigma(x), f = W s + b
      activate<Act>(D * n, x, cache);
      detail::affine(D, D, n, W1, b1, cache, f);
      return;
    case FieldKind::bottleneck: {  // a = sigma(W1 x + b1), f = W2 a + b2
      const T* W2 = p.W2 + k * p.w2_size();
      const T* b2 = p.b2 + k * p.b2_size();
      if constexpr (Act::piecewise_linear) {
        if (fused_kernels_fit<T>(D, max_fused_bottleneck_width, n)) {
          with_fused_width<max_fused_bottleneck_width>(D, [&](auto K) {
            bottleneck_eval<Act, decltype(K)::value>(H, n, W1, b1, W2, b2, x, cache, f);
          });
          return;
        }
      }
      affine_then_activate(H, cache);
      detail::affine(D, H, n, W2, b2, cache, f);
      return;
    }
  }
}

namespace detail {
// out (rows x n) = sigma'(a) * (W^T G) for W (K x rows), G (K x n): fused when K is narrow.
template <class Act, class T>
void transpose_affine_then_slope(index_t K, index_t rows, index_t n, const T* W, const T* G,
                                 const T* a, T* out) {
  const bool fused = simd_kernels_run() && with_narrow_width(K, [&](auto k) {
    transpose_affine_slope<Act, decltype(k)::value>(rows, n, W, G, a, out);
  });
  if (fused) return;
  affine_transpose(K, rows, n, W, G, out);
  multiply_by_slope<Act>(rows * n, a, out, out);
}
}  // namespace detail

// How field_vjp writes xbar: overwritten with (df/dx)^T fbar (the default), or, for the
// reverse of an Euler step x + h f(x) done in place, xbar += scale (df/dx)^T fbar where fbar
// may be xbar itself (one pass fewer each way than kbar = h xbar, Y = J^T kbar, xbar += Y).
template <class T>
struct XbarUpdate {
  bool add = false;
  T scale = T(1);
};

// Whether field_vjp's in-place add (XbarUpdate) runs as fast as its plain form for this field
// and block: everywhere but the fused narrow bottleneck, whose passes over the hidden units
// read fbar after writing xbar, so that with update.add field_vjp takes the generic kernels.
template <class T>
bool vjp_adds_in_place(const FieldParams<T>& p, index_t n) {
  return !(p.bottleneck() && fused_bottleneck_vjp_fits<T>(p.D, n));
}

// Vector-Jacobian product at the point of the last field_eval(x) (its f and cache):
//   xbar  = (df/dx)^T fbar                       (D x n, overwritten; see XbarUpdate)
//   grads += theta_scale * (df/dtheta_k)^T fbar  (flat buffer; skipped when theta_scale == 0)
// The parameter gradients sum over the first m <= n columns only: the block's real samples.
// Its padding columns (see sweep.hpp) carry a zero cotangent, so their terms are exact zeros;
// skipping them matters when N is tiny (2 samples in a block padded to 8).
// `scratch` holds scratch_size(n) elements.
template <class Act, class T>
void field_vjp(const FieldParams<T>& p, index_t k, index_t n, index_t m, const T* x, const T* f,
               const T* cache, const T* fbar, T* xbar, T* grads, T theta_scale, T* scratch,
               XbarUpdate<T> update = {}) {
  const index_t D = p.D, H = p.H;
  const T* W1 = p.W1 + k * p.w1_size();
  const bool want_theta = theta_scale != T(0);
  T* dW1 = grads + k * p.w1_size();
  T* db1 = grads + p.b1_offset() + k * p.b1_size();
  switch (p.kind) {
    case FieldKind::outside: {  // g = fbar * sigma'; dW += g x^T; db += g 1; xbar = W^T g
      if (fused_kernels_fit<T>(D, max_fused_outside_width, n)) {  // one pass
        const detail::OutsideVjp<T> q{n,           W1, x, f, fbar, xbar,
                                      theta_scale, want_theta ? dW1 : nullptr, db1,
                                      update.add,  update.scale};
        with_fused_width<max_fused_outside_width>(
            D, [&](auto K) { outside_vjp<Act, decltype(K)::value>(q); });
        return;
      }
      T* g = scratch;
      multiply_by_slope<Act>(D * n, f, fbar, g);
      detail::affine_transpose(D, D, n, W1, g, xbar, update.scale, update.add);
      if (want_theta) detail::affine_param_grads(D, D, m, n, theta_scale, g, x, dW1, db1);
      return;
    }
    case FieldKind::inside: {  // dW += fbar s^T; db += fbar 1; xbar = (W^T fbar) * sigma'(x)
      if (want_theta) detail::affine_param_grads(D, D, m, n, theta_scale, fbar, cache, dW1, db1);
      T* out = update.add ? scratch : xbar;  // W^T fbar must not be written over fbar
      detail::transpose_affine_then_slope<Act>(D, D, n, W1, fbar, cache, out);
      if (update.add) axpy(D * n, update.scale, out, xbar);
      return;
    }
    case FieldKind::bottleneck: {
      // dW2 += fbar a^T; db2 += fbar 1; g = (W2^T fbar) * sigma'; dW1 += g x^T; db1 += g 1;
      // xbar = W1^T g
      T* g = scratch;
      const T* a = cache;
      const T* W2 = p.W2 + k * p.w2_size();
      T* dW2 = grads + p.w2_offset() + k * p.w2_size();
      T* db2 = grads + p.b2_offset() + k * p.b2_size();
      // A pass per few units; not with update.add, which its passes cannot do in place (the
      // callers ask vjp_adds_in_place first: the generic path below is slower here).
      if (fused_bottleneck_vjp_fits<T>(D, n) && !update.add) {
        const detail::BottleneckVjp<T> q{H,           n,    g,    W1,   W2,   x,  a,
                                         fbar,        xbar, theta_scale,
                                         want_theta ? dW1 : nullptr, db1, dW2};
        with_fused_width<max_fused_bottleneck_width>(
            D, [&](auto K) { bottleneck_vjp<Act, decltype(K)::value>(q); });
        if (want_theta) row_sums(D, m, theta_scale, fbar, n, db2);
        return;
      }
      if (want_theta) detail::affine_param_grads(D, H, m, n, theta_scale, fbar, a, dW2, db2);
      detail::transpose_affine_then_slope<Act>(D, H, n, W2, fbar, a, g);
      if (want_theta) detail::affine_param_grads(H, D, m, n, theta_scale, g, x, dW1, db1);
      detail::affine_transpose(H, D, n, W1, g, xbar, update.scale, update.add);  // fbar: done
      return;
    }
  }
}

}  // namespace resode
