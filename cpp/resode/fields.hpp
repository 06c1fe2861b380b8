// Vector fields f_k(x) of one layer (ResNet) or one piece of the controls (neural ODE), their
// evaluation on a block of samples and their vector-Jacobian products.
//
// Memory layout: a block of n samples is row-major (n, D); parameters are stacked over the
// leading axis k (layers or pieces) exactly as the Python params dict holds them:
//   outside     f = sigma(W x + b)          W (K, D, D), b (K, D)
//   inside      f = W sigma(x) + b          W (K, D, D), b (K, D)
//   bottleneck  f = W2 sigma(W1 x + b1) + b2
//               W1 (K, H, D), b1 (K, H), W2 (K, D, H), b2 (K, D)
// For outside/inside, W and b live in the W1/b1 slots and H = D. Gradients use one flat buffer
// laid out as the concatenation [W1 | b1 | W2 | b2] (or [W | b]).
#pragma once
#include <algorithm>
#include <string>

#include "activations.hpp"
#include "errors.hpp"
#include "linalg.hpp"

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
  // Per-stage cache (n samples): outside keeps z = Wx+b, inside s = sigma(x), bottleneck
  // u = W1 x + b1 and a = sigma(u).
  index_t cache_size(index_t n) const { return bottleneck() ? 2 * n * H : n * D; }
  index_t scratch_size(index_t n) const { return n * std::max(D, H); }
};

namespace detail {
// rows (n x m) += bias (m) broadcast over rows.
template <class T>
void add_bias(index_t n, index_t m, const T* bias, T* rows) {
  for (index_t i = 0; i < n; ++i)
    for (index_t j = 0; j < m; ++j) rows[i * m + j] += bias[j];
}
}  // namespace detail

// f = f_k(x) for a block x (n, D); fills `cache` for field_vjp.
template <class Act, class T>
void field_eval(const FieldParams<T>& p, index_t k, index_t n, const T* x, T* f, T* cache) {
  const index_t D = p.D, H = p.H;
  const T* W1 = p.W1 + k * p.w1_size();
  const T* b1 = p.b1 + k * p.b1_size();
  switch (p.kind) {
    case FieldKind::outside: {  // z = x W^T + b, f = sigma(z)
      gemm_nt(n, D, D, x, D, W1, cache, D);
      detail::add_bias(n, D, b1, cache);
      activate<Act>(n * D, cache, f);
      return;
    }
    case FieldKind::inside: {  // s = sigma(x), f = s W^T + b
      activate<Act>(n * D, x, cache);
      gemm_nt(n, D, D, cache, D, W1, f, D);
      detail::add_bias(n, D, b1, f);
      return;
    }
    case FieldKind::bottleneck: {  // u = x W1^T + b1, a = sigma(u), f = a W2^T + b2
      T* u = cache;
      T* a = cache + n * H;
      gemm_nt(n, H, D, x, D, W1, u, H);
      detail::add_bias(n, H, b1, u);
      activate<Act>(n * H, u, a);
      gemm_nt(n, D, H, a, H, p.W2 + k * p.w2_size(), f, D);
      detail::add_bias(n, D, p.b2 + k * p.b2_size(), f);
      return;
    }
  }
}

// Vector-Jacobian product at the point of the last field_eval(x) (its `cache`):
//   xbar  = (df/dx)^T fbar                      (overwritten, (n, D))
//   grads += theta_scale * (df/dtheta_k)^T fbar (flat buffer; skipped when theta_scale == 0)
// `scratch` holds scratch_size(n) elements.
template <class Act, class T>
void field_vjp(const FieldParams<T>& p, index_t k, index_t n, const T* x, const T* cache,
               const T* fbar, T* xbar, T* grads, T theta_scale, T* scratch) {
  const index_t D = p.D, H = p.H;
  const T* W1 = p.W1 + k * p.w1_size();
  const bool want_theta = theta_scale != T(0);
  T* gW1 = grads + k * p.w1_size();
  T* gb1 = grads + p.b1_offset() + k * p.b1_size();
  switch (p.kind) {
    case FieldKind::outside: {  // g = fbar * sigma'(z); dW += g^T x; db += sum g; xbar = g W
      T* g = scratch;
      std::copy(fbar, fbar + n * D, g);
      multiply_by_derivative<Act>(n * D, cache, g);
      if (want_theta) {
        gemm_tn_acc(n, D, D, theta_scale, g, x, D, gW1);
        column_sums_acc(n, D, theta_scale, g, gb1);
      }
      gemm_nn(n, D, D, g, W1, xbar, false);
      return;
    }
    case FieldKind::inside: {  // dW += fbar^T s; db += sum fbar; xbar = (fbar W) * sigma'(x)
      if (want_theta) {
        gemm_tn_acc(n, D, D, theta_scale, fbar, cache, D, gW1);
        column_sums_acc(n, D, theta_scale, fbar, gb1);
      }
      gemm_nn(n, D, D, fbar, W1, xbar, false);
      multiply_by_derivative<Act>(n * D, x, xbar);
      return;
    }
    case FieldKind::bottleneck: {
      // dW2 += fbar^T a; db2 += sum fbar; g = (fbar W2) * sigma'(u);
      // dW1 += g^T x; db1 += sum g; xbar = g W1
      const T* u = cache;
      const T* a = cache + n * H;
      const T* W2 = p.W2 + k * p.w2_size();
      T* g = scratch;
      if (want_theta) {
        gemm_tn_acc(n, D, H, theta_scale, fbar, a, H, grads + p.w2_offset() + k * p.w2_size());
        column_sums_acc(n, D, theta_scale, fbar, grads + p.b2_offset() + k * p.b2_size());
      }
      gemm_nn(n, D, H, fbar, W2, g, false);
      multiply_by_derivative<Act>(n * H, u, g);
      if (want_theta) {
        gemm_tn_acc(n, H, D, theta_scale, g, x, D, gW1);
        column_sums_acc(n, H, theta_scale, g, gb1);
      }
      gemm_nn(n, H, D, g, W1, xbar, false);
      return;
    }
  }
}

}  // namespace resode
