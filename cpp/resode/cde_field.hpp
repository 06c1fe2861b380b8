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
#include <cstring>

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

// The columns [begin, n) of a feature-major block of n columns (row stride n): the samples
// still stepping. (cde.hpp sorts a block's samples by their number of steps, so those that have
// finished form a prefix; the kernels below read and write only the active columns.)
struct Columns {
  index_t begin = 0, n = 0;
  index_t count() const { return n - begin; }
  bool all() const { return begin == 0; }
};

// sigma(x) and g * sigma'(from sigma(x)) on the active columns of `rows` rows, for a runtime
// activation (the heavy code is not compiled once per activation: only these elementwise
// kernels are). Pointers are to the block's first column.
template <class T>
void apply_activation(Activation act, index_t rows, Columns cols, const T* x, T* out) {
  with_activation(act, [&](auto A) {
    using Act = decltype(A);
    if (cols.all()) return activate<Act>(rows * cols.n, x, out);
    activate<Act>(rows, cols.count(), cols.n, x + cols.begin, out + cols.begin);
  });
}
template <class T>
void apply_slope(Activation act, index_t rows, Columns cols, const T* value, const T* g, T* out) {
  with_activation(act, [&](auto A) {
    using Act = decltype(A);
    if (cols.all()) return multiply_by_slope<Act>(rows * cols.n, value, g, out);
    const index_t b = cols.begin;
    multiply_by_slope<Act>(rows, cols.count(), cols.n, value + b, g + b, out + b);
  });
}

// M = post(W X + bias 1^T) (M: rows x n, W: rows x k, X: k x n) on the active columns; post
// is applied to each value as it is stored (linalg.hpp's gemm).
template <class T, class Post = detail::StoreAsIs>
void affine(index_t rows, index_t k, Columns cols, const T* W, const T* bias, const T* X, T* M,
            const Post& post = Post{}) {
  const index_t b = cols.begin;
  gemm(rows, cols.count(), k, T(1), W, k, index_t(1), X + b, cols.n, M + b, cols.n, false, bias,
       post);
}

// Xbar (k x n) = post(W^T G) (W: rows x k, G: rows x n) on the active columns.
template <class T, class Post = detail::StoreAsIs>
void affine_transpose(index_t rows, index_t k, Columns cols, const T* W, const T* G, T* Xbar,
                      const Post& post = Post{}) {
  const index_t b = cols.begin;
  gemm(k, cols.count(), rows, T(1), W, index_t(1), k, G + b, cols.n, Xbar + b, cols.n, false,
       static_cast<const T*>(nullptr), post);
}

// out (p x q, row stride ldo) += A B^T and sums (p) += A 1 over the active columns of A (p x n)
// and B (q x n), B the narrow side: B^T (count x q) is formed once and the register-tiled GEMM
// runs with A as its broadcast side (gemm_abt's dot products would pay one horizontal sum per
// output for only count / lanes vector products). Fewer columns than a vector: gemm_abt.
template <class T>
void add_products(index_t p, index_t q, Columns cols, const T* A, const T* B, T* out,
                  index_t ldo, T* sums) {
  const index_t b = cols.begin, m = cols.count(), ld = cols.n;
  if (m < lanes<T, 32>) {
    gemm_abt(p, q, m, T(1), A + b, ld, B + b, ld, out, ldo);
  } else {
    T* Bt = transpose_buffer<T>(m * q);
    transpose(q, m, B + b, ld, Bt, q);
    gemm_kernels(p, q, m, T(1), A + b, ld, index_t(1), Bt, q, out, ldo, true);
  }
  if (sums) row_sums(p, m, T(1), A + b, ld, sums);
}

// Whether the bottleneck's dW2 (S*C x H) is accumulated transposed, as dW2^T += a Fbar^T, in a
// (K, H, S*C) scratch (transposing the narrower Fbar instead of the hidden units each stage);
// fold_transposed_w2 adds it into the gradient.
template <class T>
bool accumulates_w2_transposed(const CdeField<T>& f) {
  return f.bottleneck() && f.out() < f.H;
}
template <class T>
void fold_transposed_w2(const CdeField<T>& f, const T* w2t, T* grads) {
  const index_t O = f.out(), H = f.H;
  for (index_t k = 0; k < f.pieces; ++k) {
    T* dW2 = grads + f.w2_offset() + k * f.w2_size();
    const T* t = w2t + k * f.w2_size();
    for (index_t o = 0; o < O; ++o)
      for (index_t h = 0; h < H; ++h) dW2[o * H + h] += t[h * O + o];
  }
}

// gemm posts (linalg.hpp) that fuse relu's pass over a product into its store, for the
// bottleneck's hidden layer (torchcde's example field): relu(x) as the value is stored, and
// the value times relu'(a) for `a` laid out as the product (a = relu(.), whose sign is the
// slope's side). The same operations as activate and multiply_by_slope, so the same bits; the
// other activations keep their own pass (tanh's is no cheaper fused: narrow.hpp).
struct ReluOnStore {
  template <class V, class T>
  RESODE_INLINE V operator()(V v, const T*) const { return Relu::value(v); }
};
template <class T>
struct ReluSlopeOnStore {
  const T* origin;  // the product's first entry, whose slope is read from a[0]
  const T* a;
  template <class V>
  RESODE_INLINE V operator()(V v, const T* at) const {
    V value;
    std::memcpy(&value, a + (at - origin), sizeof value);
    return v * Relu::deriv_of_value(value);
  }
};

// The bottleneck's hidden units a = sigma(W1_k z + b1_k) (H x n) on the active columns: the
// field's cache, which cde_field_eval computes and the reverse sweep may compute again from z
// (the same calls, so the same bits).
template <class T>
void bottleneck_hidden(const CdeField<T>& f, index_t k, Columns cols, const T* z, T* a) {
  const T* W1 = f.W1 + k * f.w1_size();
  const T* b1 = f.b1 + k * f.b1_size();
  if (f.activation == Activation::relu) return affine(f.H, f.S, cols, W1, b1, z, a, ReluOnStore{});
  affine(f.H, f.S, cols, W1, b1, z, a);
  apply_activation(f.activation, f.H, cols, a, a);
}

// hbar (H x n) = (W2_k^T Fbar) sigma'(a) for the bottleneck's hidden units a, on the active
// columns.
template <class T>
void bottleneck_hidden_vjp(const CdeField<T>& f, index_t k, Columns cols, const T* a,
                           const T* Fbar, T* hbar) {
  const T* W2 = f.W2 + k * f.w2_size();
  if (f.activation == Activation::relu) {
    const index_t b = cols.begin;
    return affine_transpose(f.out(), f.H, cols, W2, Fbar, hbar,
                            ReluSlopeOnStore<T>{hbar + b, a + b});
  }
  affine_transpose(f.out(), f.H, cols, W2, Fbar, hbar);
  apply_slope(f.activation, f.H, cols, a, hbar, hbar);
}

// F = F_k(z) (O x n) for a block z (S x n); `cache` (cache_rows x n) for cde_field_vjp. Only
// the active columns are read and written.
template <class T>
void cde_field_eval(const CdeField<T>& f, index_t k, Columns cols, const T* z, T* F, T* cache) {
  const index_t S = f.S, O = f.out(), H = f.H;
  const T* W1 = f.W1 + k * f.w1_size();
  const T* b1 = f.b1 + k * f.b1_size();
  const bool rho = f.has_output_activation;
  switch (f.kind) {
    case FieldKind::outside: {  // a = sigma(W z + b), F = rho(a) (a kept only with rho)
      T* a = rho ? cache : F;
      affine(O, S, cols, W1, b1, z, a);
      apply_activation(f.activation, O, cols, a, a);
      if (rho) apply_activation(f.output_activation, O, cols, a, F);
      return;
    }
    case FieldKind::inside:  // s = sigma(z), F = rho(W s + b)
      apply_activation(f.activation, S, cols, z, cache);
      affine(O, S, cols, W1, b1, cache, F);
      break;
    case FieldKind::bottleneck:  // a = sigma(W1 z + b1), F = rho(W2 a + b2)
      bottleneck_hidden(f, k, cols, z, cache);
      affine(O, H, cols, f.W2 + k * f.w2_size(), f.b2 + k * f.b2_size(), cache, F);
      break;
  }
  if (rho) apply_activation(f.output_activation, O, cols, F, F);
}

// zbar (S x n) = (dF/dz)^T Fbar and grads += (dF/dtheta_k)^T Fbar at the point of the last
// cde_field_eval (its F and cache), on the active columns. Fbar is used as scratch; hbar
// (H x n) too (bottleneck). With w2t (accumulates_w2_transposed) the bottleneck's dW2 goes
// there, transposed.
//
// cde_field_vjp_before_rho is the same from the cotangent of the output activation's input
// (Fbar already multiplied by rho'; contract_channels_vjp does it in its own pass).
template <class T>
void cde_field_vjp_before_rho(const CdeField<T>& f, index_t k, Columns cols, const T* z,
                              const T* F, const T* cache, T* Fbar, T* zbar, T* grads, T* hbar,
                              T* w2t = nullptr) {
  const index_t S = f.S, O = f.out(), H = f.H;
  const T* W1 = f.W1 + k * f.w1_size();
  T* dW1 = grads + k * f.w1_size();
  T* db1 = grads + f.b1_offset() + k * f.b1_size();
  const bool rho = f.has_output_activation;
  switch (f.kind) {
    case FieldKind::outside:  // g = Fbar sigma'; dW += g z^T; db += g 1; zbar = W^T g
      apply_slope(f.activation, O, cols, rho ? cache : F, Fbar, Fbar);
      add_products(O, S, cols, Fbar, z, dW1, S, db1);
      affine_transpose(O, S, cols, W1, Fbar, zbar);
      return;
    case FieldKind::inside:  // dW += Fbar s^T; db += Fbar 1; zbar = (W^T Fbar) sigma'(z)
      add_products(O, S, cols, Fbar, cache, dW1, S, db1);
      affine_transpose(O, S, cols, W1, Fbar, zbar);
      apply_slope(f.activation, S, cols, cache, zbar, zbar);
      return;
    case FieldKind::bottleneck: {  // dW2 += Fbar a^T, hbar = (W2^T Fbar) sigma', dW1 += hbar z^T
      T* db2 = grads + f.b2_offset() + k * f.b2_size();
      if (w2t) {
        add_products(H, O, cols, cache, Fbar, w2t + k * f.w2_size(), O, static_cast<T*>(nullptr));
        row_sums(O, cols.count(), T(1), Fbar + cols.begin, cols.n, db2);
      } else {
        add_products(O, H, cols, Fbar, cache, grads + f.w2_offset() + k * f.w2_size(), H, db2);
      }
      bottleneck_hidden_vjp(f, k, cols, cache, Fbar, hbar);
      add_products(H, S, cols, hbar, z, dW1, S, db1);
      affine_transpose(H, S, cols, W1, hbar, zbar);
      return;
    }
  }
}

template <class T>
void cde_field_vjp(const CdeField<T>& f, index_t k, Columns cols, const T* z, const T* F,
                   const T* cache, T* Fbar, T* zbar, T* grads, T* hbar, T* w2t = nullptr) {
  if (f.has_output_activation)  // back through rho
    apply_slope(f.output_activation, f.out(), cols, F, Fbar, Fbar);
  cde_field_vjp_before_rho(f, k, cols, z, F, cache, Fbar, zbar, grads, hbar, w2t);
}

// g (S x n): g_d = sum_c F_{d*C+c} dX_c for F (S*C x n) and dX (C x n), active columns.
template <class T>
void contract_channels(index_t S, index_t C, Columns cols, const T* F, const T* dX, T* g) {
  const index_t n = cols.n, b = cols.begin;
  dispatch([&]() RESODE_KERNEL {
    for (index_t d = 0; d < S; ++d) {
      T* out = g + d * n;
      const T* row = F + d * C * n;
      for (index_t s = b; s < n; ++s) out[s] = row[s] * dX[s];
      for (index_t c = 1; c < C; ++c)
        for (index_t s = b; s < n; ++s) out[s] += row[c * n + s] * dX[c * n + s];
    }
  });
}

// The field's output activation rho, the identity without one.
template <class T>
Activation output_activation_or_identity(const CdeField<T>& f) {
  return f.has_output_activation ? f.output_activation : Activation::identity;
}

// The transpose of contract_channels, followed by the output activation's slope:
//   Fbar_{d*C+c} = rho'(F_{d*C+c}) gbar_d dX_c   (rho' from the value F = rho(.), as
//                                               multiply_by_slope takes it; identity: 1)
//   dXbar_c = sum_d gbar_d F_{d*C+c}             (only with dXbar non-null: the path's
//                                               cotangent, which training does not need)
// One pass over F and Fbar instead of three (F is read from the stage tape, beyond L2).
template <class T>
void contract_channels_vjp(index_t S, index_t C, Activation rho, Columns cols, const T* F,
                           const T* dX, const T* gbar, T* Fbar, T* dXbar) {
  const index_t n = cols.n, b = cols.begin;
  with_activation(rho, [&](auto A) {
    using Rho = decltype(A);
    dispatch([&]() RESODE_KERNEL {
      if (dXbar)
        for (index_t c = 0; c < C; ++c)
          for (index_t s = b; s < n; ++s) dXbar[c * n + s] = T(0);
      for (index_t d = 0; d < S; ++d) {
        const T* gd = gbar + d * n;
        for (index_t c = 0; c < C; ++c) {
          const T* fv = F + (d * C + c) * n;
          T* fb = Fbar + (d * C + c) * n;
          const T* x = dX + c * n;
          // (Identity's slope is the constant 1: the product folds away)
          if (!dXbar) {
            for (index_t s = b; s < n; ++s) fb[s] = (gd[s] * x[s]) * Rho::deriv_of_value(fv[s]);
            continue;
          }
          T* xb = dXbar + c * n;
          for (index_t s = b; s < n; ++s) {
            fb[s] = (gd[s] * x[s]) * Rho::deriv_of_value(fv[s]);
            xb[s] += gd[s] * fv[s];
          }
        }
      }
    });
  });
}

}  // namespace detail

}  // namespace resode
