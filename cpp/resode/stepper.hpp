// One step of an explicit Runge-Kutta method on a block of samples, forward and in reverse:
//   rk_step          x_{j+1} = x_j + dt sum_i b_i k_i,  k_i = f(X_i),  X_i = x_j + dt sum_{l<i} a_il k_l
//   rk_step_vjp      the exact reverse of rk_step (discretise-then-optimise)
//   backsolve_step   one step of the continuous adjoint system, integrated from t_{j+1} to t_j
// Step j uses the parameters of piece j / substeps in all of its stages (the controls are
// piecewise constant and indexed by step number, never by floating-point time).
// A ResNet layer x + h f_k(x) is rk_step with the Euler tableau, dt = h and substeps = 1.
#pragma once
#include <algorithm>
#include <vector>

#include "fields.hpp"
#include "tableau.hpp"

namespace resode {

// Everything that defines the discrete flow x -> x_steps.
template <class T>
struct Dynamics {
  FieldParams<T> field;
  Activation activation = Activation::tanh;
  Tableau tab = tableau(Method::rk4);
  index_t substeps = 1;
  T dt = T(1);

  index_t steps() const { return field.pieces * substeps; }
  index_t piece(index_t j) const { return j / substeps; }
};

// Per-thread stage storage for blocks of up to `capacity` samples: stage inputs X_i, stage
// derivatives K_i, their cotangents Y_i, the field caches, and scratch.
template <class T>
class StageBuffers {
 public:
  StageBuffers(const FieldParams<T>& field, int stages, index_t capacity) {
    const index_t len = capacity * field.D, cache_len = field.cache_size(capacity);
    const index_t scratch = field.scratch_size(capacity);
    memory_.assign(std::size_t(stages * (3 * len + cache_len) + 2 * len + scratch), T(0));
    T* p = memory_.data();
    for (int i = 0; i < stages; ++i) {
      X[i] = p, p += len;
      K[i] = p, p += len;
      Y[i] = p, p += len;
      cache[i] = p, p += cache_len;
    }
    kbar = p, p += len;
    adjoint_stage = p, p += len;
    scratch_ = p;
  }
  T* X[Tableau::max_stages] = {};
  T* K[Tableau::max_stages] = {};
  T* Y[Tableau::max_stages] = {};
  T* cache[Tableau::max_stages] = {};
  T* kbar = nullptr;
  T* adjoint_stage = nullptr;
  T* scratch() { return scratch_; }

 private:
  std::vector<T> memory_;
  T* scratch_ = nullptr;
};

namespace detail {
// y[i] += alpha * x[i]
template <class T>
void axpy(index_t n, T alpha, const T* x, T* y) {
  for (index_t i = 0; i < n; ++i) y[i] += alpha * x[i];
}

// Evaluates the stages of step j from x (n samples): X_i and K_i and caches in `s`.
template <class Act, class T>
void compute_stages(const Dynamics<T>& dyn, index_t j, index_t n, const T* x, StageBuffers<T>& s) {
  const index_t len = n * dyn.field.D, k = dyn.piece(j);
  for (int i = 0; i < dyn.tab.stages; ++i) {
    std::copy(x, x + len, s.X[i]);  // X_i = x_j + dt sum_{l<i} a_il K_l
    for (int l = 0; l < i; ++l)
      if (dyn.tab.a[i][l] != 0.0) axpy(len, T(dyn.dt * dyn.tab.a[i][l]), s.K[l], s.X[i]);
    field_eval<Act>(dyn.field, k, n, s.X[i], s.K[i], s.cache[i]);  // K_i = f_k(X_i)
  }
}
}  // namespace detail

// x_next = x + dt sum_i b_i K_i (x_next must not alias x).
template <class Act, class T>
void rk_step(const Dynamics<T>& dyn, index_t j, index_t n, const T* x, T* x_next,
             StageBuffers<T>& s) {
  const index_t len = n * dyn.field.D;
  detail::compute_stages<Act>(dyn, j, n, x, s);
  std::copy(x, x + len, x_next);
  for (int i = 0; i < dyn.tab.stages; ++i)
    if (dyn.tab.b[i] != 0.0) detail::axpy(len, T(dyn.dt * dyn.tab.b[i]), s.K[i], x_next);
}

// Reverse of rk_step at state x = x_j. On entry xbar is the cotangent of x_{j+1}; on exit, of
// x_j. Stages are recomputed from x, then swept in reverse:
//   kbar_i = dt b_i xbar + sum_{m>i} dt a_mi Y_m,   Y_i = J_i^T kbar_i,   grads += (df/dtheta)^T kbar_i
//   xbar_j = xbar + sum_i Y_i
template <class Act, class T>
void rk_step_vjp(const Dynamics<T>& dyn, index_t j, index_t n, const T* x, T* xbar, T* grads,
                 StageBuffers<T>& s) {
  const index_t len = n * dyn.field.D, k = dyn.piece(j);
  const int stages = dyn.tab.stages;
  detail::compute_stages<Act>(dyn, j, n, x, s);
  for (int i = stages - 1; i >= 0; --i) {
    for (index_t e = 0; e < len; ++e) s.kbar[e] = T(dyn.dt * dyn.tab.b[i]) * xbar[e];
    for (int m = i + 1; m < stages; ++m)
      if (dyn.tab.a[m][i] != 0.0) detail::axpy(len, T(dyn.dt * dyn.tab.a[m][i]), s.Y[m], s.kbar);
    field_vjp<Act>(dyn.field, k, n, s.X[i], s.cache[i], s.kbar, s.Y[i], grads, T(1), s.scratch());
  }
  for (int i = 0; i < stages; ++i) detail::axpy(len, T(1), s.Y[i], xbar);
}

// A source term of the adjoint equation that needs nothing: the terminal-loss case.
struct NoSource {
  template <class T>
  void operator()(index_t, const T*, T*, double) const {}
};

// One step of the continuous adjoint (backsolve) system from t_{j+1} back to t_j, with the same
// tableau and step -dt:
//   x' = f(x),   a' = -(df/dx)^T a - dl/dx,   g_theta' = -(df/dtheta)^T a
// x and a are updated in place; the theta-gradient is accumulated straight into `grads`
// (g_j = g_{j+1} + dt sum_i b_i (df/dtheta)^T A_i), which is exact because g never feeds back.
// source(n, X_i, Ka_i, weight) subtracts dl/dx(X_i) from Ka_i and accumulates weight * the
// readout gradient (the running cost of the turnpike loss); NoSource for a terminal loss.
template <class Act, class T, class Source>
void backsolve_step(const Dynamics<T>& dyn, index_t j, index_t n, T* x, T* a, T* grads,
                    StageBuffers<T>& s, const Source& source) {
  const index_t len = n * dyn.field.D, k = dyn.piece(j);
  const int stages = dyn.tab.stages;
  T* Kx[Tableau::max_stages];
  T* Ka[Tableau::max_stages];
  for (int i = 0; i < stages; ++i) Kx[i] = s.K[i], Ka[i] = s.Y[i];
  for (int i = 0; i < stages; ++i) {
    T* Xi = s.X[i];
    T* Ai = s.adjoint_stage;
    std::copy(x, x + len, Xi);  // X_i = x - dt sum_{l<i} a_il Kx_l, A_i likewise
    std::copy(a, a + len, Ai);
    for (int l = 0; l < i; ++l) {
      if (dyn.tab.a[i][l] == 0.0) continue;
      detail::axpy(len, T(-dyn.dt * dyn.tab.a[i][l]), Kx[l], Xi);
      detail::axpy(len, T(-dyn.dt * dyn.tab.a[i][l]), Ka[l], Ai);
    }
    const double weight = double(dyn.dt) * dyn.tab.b[i];
    field_eval<Act>(dyn.field, k, n, Xi, Kx[i], s.cache[0]);
    field_vjp<Act>(dyn.field, k, n, Xi, s.cache[0], Ai, Ka[i], grads, T(weight), s.scratch());
    for (index_t e = 0; e < len; ++e) Ka[i][e] = -Ka[i][e];  // Ka_i = -(df/dx)^T A_i
    source(n, Xi, Ka[i], weight);
  }
  for (int i = 0; i < stages; ++i) {
    if (dyn.tab.b[i] == 0.0) continue;
    detail::axpy(len, T(-dyn.dt * dyn.tab.b[i]), Kx[i], x);
    detail::axpy(len, T(-dyn.dt * dyn.tab.b[i]), Ka[i], a);
  }
}

}  // namespace resode
