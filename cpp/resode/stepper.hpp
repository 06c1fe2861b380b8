// One step of an explicit Runge-Kutta method on a block of samples, forward and in reverse:
//   rk_step         x_{j+1} = x_j + dt sum_i b_i K_i,  K_i = f(X_i),  X_i = x_j + dt sum_{l<i} a_il K_l
//   rk_step_vjp     the exact reverse of rk_step (discretise-then-optimise)
//   backsolve_step  one step of the continuous adjoint system, integrated from t_{j+1} to t_j
// Step j uses the parameters of piece j / substeps in all of its stages (the controls are
// piecewise constant and indexed by step number, never by floating-point time).
// A ResNet layer x + h f_k(x) is rk_step with the Euler tableau, dt = h and substeps = 1.
// Blocks are feature-major D x n (see linalg.hpp).
#pragma once
#include <algorithm>
#include <vector>

#include "buffer.hpp"
#include "elementwise.hpp"
#include "fields.hpp"
#include "tableau.hpp"

namespace resode {

// Everything that defines the discrete flow x_0 -> x_steps.
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

// The stages of one step of one block: stage inputs X_i (X_0 is the step's state itself, not
// owned), stage derivatives K_i = f(X_i) and the field caches. The sweeps keep one StepStages
// per step on a tape, so the reverse sweep reuses them instead of evaluating f again.
template <class T>
struct StepStages {
  T* X[Tableau::max_stages] = {};  // X[0] aliases the state x_j and is never written through
  T* K[Tableau::max_stages] = {};
  T* cache[Tableau::max_stages] = {};

  // Elements one step's stages need for blocks of up to `capacity` samples.
  static index_t size(const FieldParams<T>& f, int stages, index_t capacity) {
    return (2 * stages - 1) * f.D * capacity + stages * f.cache_size(capacity);
  }
  // Lays the stages out in `memory` (size() elements).
  static StepStages carve(const FieldParams<T>& f, int stages, index_t capacity, T* memory) {
    StepStages s;
    const index_t len = f.D * capacity, cache = f.cache_size(capacity);
    for (int i = 0; i < stages; ++i) {
      if (i > 0) s.X[i] = memory, memory += len;
      s.K[i] = memory, memory += len;
      s.cache[i] = memory, memory += cache;
    }
    return s;
  }
};

// Per-thread scratch of the reverse sweeps: stage cotangents Y_i, kbar, an adjoint stage, and
// the field's scratch.
template <class T>
class ReverseWork {
 public:
  ReverseWork(const FieldParams<T>& f, int stages, index_t capacity) {
    const index_t len = f.D * capacity;
    memory_ = Buffer<T>((stages + 2) * len + f.scratch_size(capacity));
    T* p = memory_.data();
    for (int i = 0; i < stages; ++i) Y[i] = p, p += len;
    kbar = p, p += len;
    adjoint_stage = p, p += len;
    scratch = p;
  }
  T* Y[Tableau::max_stages] = {};
  T* kbar = nullptr;
  T* adjoint_stage = nullptr;
  T* scratch = nullptr;

 private:
  Buffer<T> memory_;
};

namespace detail {
// Evaluates the stages of step j at x (D x n): X_i, K_i and caches in `s`.
template <class Act, class T>
void compute_stages(const Dynamics<T>& dyn, index_t j, index_t n, const T* x, StepStages<T>& s) {
  const index_t len = dyn.field.D * n, k = dyn.piece(j);
  s.X[0] = const_cast<T*>(x);  // read-only alias of the state
  for (int i = 0; i < dyn.tab.stages; ++i) {
    if (i > 0) {  // X_i = x_j + dt sum_{l<i} a_il K_l
      Terms<T> terms;
      for (int l = 0; l < i; ++l) terms.add(double(dyn.dt) * dyn.tab.a[i][l], s.K[l]);
      combine(len, T(1), x, terms.count, terms.coef, terms.vec, s.X[i]);
    }
    field_eval<Act>(dyn.field, k, n, s.X[i], s.K[i], s.cache[i]);  // K_i = f_k(X_i)
  }
}
}  // namespace detail

// x_next = x + dt sum_i b_i K_i, with the stages left in `s` (x_next must not alias x).
template <class Act, class T>
void rk_step(const Dynamics<T>& dyn, index_t j, index_t n, const T* x, T* x_next,
             StepStages<T>& s) {
  const index_t len = dyn.field.D * n;
  detail::compute_stages<Act>(dyn, j, n, x, s);
  Terms<T> terms;
  for (int i = 0; i < dyn.tab.stages; ++i) terms.add(double(dyn.dt) * dyn.tab.b[i], s.K[i]);
  combine(len, T(1), x, terms.count, terms.coef, terms.vec, x_next);
}

// Reverse of rk_step j from its stages `s` (as rk_step left them). On entry xbar is the
// cotangent of x_{j+1}; on exit, of x_j. Columns [real, n) are padding with a zero cotangent
// (left out of the parameter sums, see field_vjp):
//   kbar_i = dt b_i xbar + sum_{m>i} dt a_mi Y_m,   Y_i = J_i^T kbar_i,   grads += (df/dtheta)^T kbar_i
//   xbar_j = xbar + sum_i Y_i
template <class Act, class T>
void rk_step_vjp(const Dynamics<T>& dyn, index_t j, index_t n, index_t real,
                 const StepStages<T>& s, T* xbar, T* grads, ReverseWork<T>& w) {
  const index_t len = dyn.field.D * n, k = dyn.piece(j);
  const int stages = dyn.tab.stages;
  if (stages == 1 && vjp_adds_in_place(dyn.field, n)) {
    // Euler (every ResNet layer): kbar = h xbar, so xbar_j = xbar + h J^T xbar and
    // grads += h (df/dtheta)^T xbar, in place: no kbar and no Y passes over the block.
    const T h = T(dyn.dt * dyn.tab.b[0]);
    field_vjp<Act>(dyn.field, k, n, real, s.X[0], s.K[0], s.cache[0], xbar, xbar, grads, h,
                   w.scratch, XbarUpdate<T>{true, h});
    return;
  }
  for (int i = stages - 1; i >= 0; --i) {
    Terms<T> later;
    for (int m = i + 1; m < stages; ++m) later.add(double(dyn.dt) * dyn.tab.a[m][i], w.Y[m]);
    combine(len, T(dyn.dt * dyn.tab.b[i]), xbar, later.count, later.coef, later.vec, w.kbar);
    field_vjp<Act>(dyn.field, k, n, real, s.X[i], s.K[i], s.cache[i], w.kbar, w.Y[i], grads,
                   T(1), w.scratch);
  }
  Terms<T> all;
  for (int i = 0; i < stages; ++i) all.add(1.0, w.Y[i]);
  combine(len, T(1), xbar, all.count, all.coef, all.vec, xbar);
}

// A source term of the adjoint equation that adds nothing: the terminal-loss case.
struct NoSource {
  template <class T>
  void operator()(index_t, const T*, T*, double) const {}
};

// One step of the continuous adjoint (backsolve) system from t_{j+1} back to t_j, with the same
// tableau and step -dt:
//   x' = f(x),   a' = -(df/dx)^T a - dl/dx,   g_theta' = -(df/dtheta)^T a
// x and a are updated in place. The theta-gradient is accumulated straight into `grads`
// (g_j = g_{j+1} + dt sum_i b_i (df/dtheta)^T A_i), exact because g never feeds back.
// Columns [real, n) are padding whose adjoint stays zero (left out of the parameter sums).
// source(n, X_i, Ka_i, weight) subtracts dl/dx(X_i) from Ka_i and accumulates weight times the
// readout gradient (the running cost of the turnpike loss); NoSource for a terminal loss.
template <class Act, class T, class Source>
void backsolve_step(const Dynamics<T>& dyn, index_t j, index_t n, index_t real, T* x, T* a,
                    T* grads, StepStages<T>& s, ReverseWork<T>& w, const Source& source) {
  const index_t len = dyn.field.D * n, k = dyn.piece(j);
  const int stages = dyn.tab.stages;
  T** Kx = s.K;
  T** Ka = w.Y;
  for (int i = 0; i < stages; ++i) {
    // X_i = x - dt sum_{l<i} a_il Kx_l,  A_i = a - dt sum_{l<i} a_il Ka_l (one pass each)
    T* Xi = i == 0 ? x : s.X[i];
    T* Ai = i == 0 ? a : w.adjoint_stage;
    if (i > 0) {
      Terms<T> state, adjoint;
      for (int l = 0; l < i; ++l) {
        state.add(-double(dyn.dt) * dyn.tab.a[i][l], Kx[l]);
        adjoint.add(-double(dyn.dt) * dyn.tab.a[i][l], Ka[l]);
      }
      combine(len, T(1), x, state.count, state.coef, state.vec, Xi);
      combine(len, T(1), a, adjoint.count, adjoint.coef, adjoint.vec, Ai);
    }
    const double weight = double(dyn.dt) * dyn.tab.b[i];
    field_eval<Act>(dyn.field, k, n, Xi, Kx[i], s.cache[i]);
    field_vjp<Act>(dyn.field, k, n, real, Xi, Kx[i], s.cache[i], Ai, Ka[i], grads, T(weight),
                   w.scratch);
    scaled_copy(len, T(-1), Ka[i], Ka[i]);  // Ka_i = -(df/dx)^T A_i
    source(n, Xi, Ka[i], weight);
  }
  Terms<T> state, adjoint;  // x -= dt sum_i b_i Kx_i,  a -= dt sum_i b_i Ka_i
  for (int i = 0; i < stages; ++i) {
    state.add(-double(dyn.dt) * dyn.tab.b[i], Kx[i]);
    adjoint.add(-double(dyn.dt) * dyn.tab.b[i], Ka[i]);
  }
  combine(len, T(1), x, state.count, state.coef, state.vec, x);
  combine(len, T(1), a, adjoint.count, adjoint.coef, adjoint.vec, a);
}

}  // namespace resode
