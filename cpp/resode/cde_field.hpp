// The vector field of a neural CDE: F_k: R^S -> R^(S*C), whose output is read as the (S, C)
// matrix G_k(z) (row index d*C + c), and the contraction g = G_k(z) v with a control
// increment v (C,), on feature-major blocks (linalg.hpp): z is S x n, F is S*C x n.
//   outside     F = rho(sigma(W z + b))           W (K, S*C, S), b (K, S*C)
//   inside      F = rho(W sigma(z) + b)           W (K, S*C, S), b (K, S*C)
//   bottleneck  F = rho(W2 sigma(W1 z + b1) + b2) W1 (K, H, S), b1 (K, H), W2 (K, S*C, H),
//                                                 b2 (K, S*C)
// rho is the optional output activation. The flat gradient buffer is [W1 | b1 | W2 | b2] as in
// fields.hpp (W, b in the W1, b1 slots). The products are fields.hpp's generic affine maps
// (the square fields' fused kernels do not apply to S*C outputs); the activations are chosen at
// run time, so the sweeps that call these are compiled once per dtype.
#pragma once
#include <algorithm>

#include "activations.hpp"
#include "fields.hpp"
#include "isa.hpp"
#include "linalg.hpp"

namespace resode {

template <class T>
struct CdeField {
  FieldKind kind = FieldKind::outside;
  Activation activation = Activation::tanh;
  bool has_output_activation = false;
  Activation output_activation = Activation::identity;
  index_t pieces = 1, S = 0, C = 0;
  index_t H = 0;  // bottleneck only
  const T* W1 = nullptr;
  const T* b1 = nullptr;
  const T* W2 = nullptr;
  const T* b2 = nullptr;

  bool bottleneck() const { return kind == FieldKind::bottleneck; }
  index_t out() const { return S * C; }  // the field's output width
  index_t w1_rows() const { return bottleneck() ? H : out(); }
  index_t w1_size() const { return w1_rows() * S; }
  index_t b1_size() const { return w1_rows(); }
  index_t w2_size() const { return bottleneck() ? out() * H : 0; }
  index_t b2_size() const { return bottleneck() ? out() : 0; }
  index_t size() const { return pieces * (w1_size() + b1_size() + w2_size() + b2_size()); }
  index_t b1_offset() const { return pieces * w1_size(); }
  index_t w2_offset() const { return b1_offset() + pieces * b1_size(); }
  index_t b2_offset() const { return w2_offset() + pieces * w2_size(); }
  // Rows of what the evaluation keeps for the VJP besides F: sigma(W z + b) before rho
  // (outside), sigma(z) (inside), the hidden units (bottleneck).
  index_t cache_rows() const {
    return kind == FieldKind::outside ? out() : kind == FieldKind::inside ? S : H;
  }
  // Multiply-adds of one evaluation per sample.
  double work() const {
    return bottleneck() ? double(H) * double(S + out()) : double(out()) * double(S);
  }
};

namespace detail {

// sigma(x) and g * sigma'(from sigma(x)) for a runtime activation (the heavy code is not
// compiled once per activation: only these elementwise kernels are).
template <class T>
void apply_activation(Activation act, index_t n, const T* x, T* out) {
  with_activation(act, [&](auto A) { activate<decltype(A)>(n, x, out); });
}
template <class T>
void apply_slope(Activation act, index_t n, const T* value, const T* g, T* out) {
  with_activation(act, [&](auto A) { multiply_by_slope<decltype(A)>(n, value, g, out); });
}

// F = F_k(z) (O x n) for a block z (S x n); `cache` (cache_rows x n) for cde_field_vjp.
template <class T>
void cde_field_eval(const CdeField<T>& f, index_t k, index_t n, const T* z, T* F, T* cache) {
  const index_t S = f.S, O = f.out(), H = f.H;
  const T* W1 = f.W1 + k * f.w1_size();
  const T* b1 = f.b1 + k * f.b1_size();
  const bool rho = f.has_output_activation;
  switch (f.kind) {
    case FieldKind::outside: {  // a = sigma(W z + b), F = rho(a) (a kept only with rho)
      T* a = rho ? cache : F;
      affine(O, S, n, W1, b1, z, a);
      apply_activation(f.activation, O * n, a, a);
      if (rho) apply_activation(f.output_activation, O * n, a, F);
      return;
    }
    case FieldKind::inside:  // s = sigma(z), F = rho(W s + b)
      apply_activation(f.activation, S * n, z, cache);
      affine(O, S, n, W1, b1, cache, F);
      break;
    case FieldKind::bottleneck:  // a = sigma(W1 z + b1), F = rho(W2 a + b2)
      affine(H, S, n, W1, b1, z, cache);
      apply_activation(f.activation, H * n, cache, cache);
      affine(O, H, n, f.W2 + k * f.w2_size(), f.b2 + k * f.b2_size(), cache, F);
      break;
  }
  if (rho) apply_activation(f.output_activation, O * n, F, F);
}

// zbar (S x n) = (dF/dz)^T Fbar and grads += (dF/dtheta_k)^T Fbar at the point of the last
// cde_field_eval (its F and cache). Fbar is used as scratch; hbar (H x n) too (bottleneck).
template <class T>
void cde_field_vjp(const CdeField<T>& f, index_t k, index_t n, const T* z, const T* F,
                   const T* cache, T* Fbar, T* zbar, T* grads, T* hbar) {
  const index_t S = f.S, O = f.out(), H = f.H;
  const T* W1 = f.W1 + k * f.w1_size();
  T* dW1 = grads + k * f.w1_size();
  T* db1 = grads + f.b1_offset() + k * f.b1_size();
  const bool rho = f.has_output_activation;
  if (rho) apply_slope(f.output_activation, O * n, F, Fbar, Fbar);  // back through rho
  switch (f.kind) {
    case FieldKind::outside:  // g = Fbar sigma'; dW += g z^T; db += g 1; zbar = W^T g
      apply_slope(f.activation, O * n, rho ? cache : F, Fbar, Fbar);
      affine_param_grads(O, S, n, n, T(1), Fbar, z, dW1, db1);
      affine_transpose(O, S, n, W1, Fbar, zbar);
      return;
    case FieldKind::inside:  // dW += Fbar s^T; db += Fbar 1; zbar = (W^T Fbar) sigma'(z)
      affine_param_grads(O, S, n, n, T(1), Fbar, cache, dW1, db1);
      affine_transpose(O, S, n, W1, Fbar, zbar);
      apply_slope(f.activation, S * n, cache, zbar, zbar);
      return;
    case FieldKind::bottleneck: {
      T* dW2 = grads + f.w2_offset() + k * f.w2_size();
      T* db2 = grads + f.b2_offset() + k * f.b2_size();
      affine_param_grads(O, H, n, n, T(1), Fbar, cache, dW2, db2);
      affine_transpose(O, H, n, f.W2 + k * f.w2_size(), Fbar, hbar);
      apply_slope(f.activation, H * n, cache, hbar, hbar);
      affine_param_grads(H, S, n, n, T(1), hbar, z, dW1, db1);
      affine_transpose(H, S, n, W1, hbar, zbar);
      return;
    }
  }
}

// g (S x n): g_d = sum_c F_{d*C+c} dX_c for F (S*C x n) and dX (C x n).
template <class T>
void contract_channels(index_t S, index_t C, index_t n, const T* F, const T* dX, T* g) {
  dispatch([&]() RESODE_KERNEL {
    for (index_t d = 0; d < S; ++d) {
      T* out = g + d * n;
      const T* row = F + d * C * n;
      for (index_t s = 0; s < n; ++s) out[s] = row[s] * dX[s];
      for (index_t c = 1; c < C; ++c)
        for (index_t s = 0; s < n; ++s) out[s] += row[c * n + s] * dX[c * n + s];
    }
  });
}

// The transpose of contract_channels: Fbar_{d*C+c} = gbar_d dX_c, dXbar_c = sum_d gbar_d F_{d*C+c}.
template <class T>
void contract_channels_vjp(index_t S, index_t C, index_t n, const T* F, const T* dX,
                           const T* gbar, T* Fbar, T* dXbar) {
  dispatch([&]() RESODE_KERNEL {
    for (index_t i = 0; i < C * n; ++i) dXbar[i] = T(0);
    for (index_t d = 0; d < S; ++d) {
      const T* gd = gbar + d * n;
      for (index_t c = 0; c < C; ++c) {
        const T* f = F + (d * C + c) * n;
        T* fb = Fbar + (d * C + c) * n;
        T* xb = dXbar + c * n;
        const T* x = dX + c * n;
        for (index_t s = 0; s < n; ++s) {
          fb[s] = gd[s] * x[s];
          xb[s] += gd[s] * f[s];
        }
      }
    }
  });
}

}  // namespace detail

}  // namespace resode
