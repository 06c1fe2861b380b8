// The continuous adjoint (backsolve) of the input-driven neural ODE (driven.hpp),
// gradient = "adjoint".
//
// Per sample, from x(T) of the discrete forward on its step grid (the fixed-step grid, or an
// adaptive run's accepted grid: DrivenProblem::accepted), the augmented system
//   x' = f(x, u(t)),   a' = -J_x^T a   (J = df/d[x; u] = [J_x | J_u] at [x; u(t)])
// is integrated backwards over the same grid reversed with the same tableau (step -h): from
// (x, a) at tau + h, stage s at time tau + h - c_s h has
//   X_s = x - h sum_{l<s} a_sl KX_l,   A_s = a + h sum_{l<s} a_sl KA_l,
//   KX_s = f([X_s; u(tau + h - c_s h)]),   KA_s = J_x^T A_s,
// then x <- x - h sum_s b_s KX_s and a <- a + h sum_s b_s KA_s. The gradients are the
// quadratures of its stages:
//   dtheta += h sum_s b_s (df/dtheta)^T A_s,   du(tau + h - c_s h) += h b_s J_u^T A_s,
// the latter pulled back through the path (u is linear in the filled values and slopes; the
// slopes in turn in U). a(0) is dx0. A cotangent at an output time is added to a when the
// backward run passes it (it is a grid point). The result converges to the discrete gradient
// as the steps shrink (at the method's order); it is not the gradient of the computed solution.
#pragma once
#include <algorithm>
#include <vector>

#include "driven.hpp"

namespace resode {
namespace detail {

// The backward run of sample i after driven_forward_sample(..., keep = false) (x(T) the
// tape's first row, no other state kept: memory independent of the steps): a =
// xbar (D) the cotangent of x(T) in, a(0) out; cot_at(j, a) adds state j's cotangent. Adds the
// field's gradients to g; writes dx0_i and, unless dU is null, dU_i.
template <class T, class CotAt>
void driven_adjoint_sample(const DrivenProblem<T>& pb, index_t i, DrivenWork<T>& w, T* a, T* g,
                           T* dx0, T* dU, CotAt&& cot_at) {
  const index_t D = pb.field.D, C = pb.C, len = w.path.len, in = pb.field.in();
  const index_t s = pb.tab.stages, n = index_t(w.steps.size());
  w.xbar.assign(std::size_t(len * C), T(0));
  w.dbar.assign(std::size_t((len - 1) * C), T(0));
  w.KA.assign(std::size_t(s * D), T(0));
  w.scratch.assign(std::size_t(pb.field.size()), T(0));
  std::vector<T> x(w.tape.begin(), w.tape.begin() + D);  // x(T), recomputed backwards
  for (index_t j = n - 1; j >= 0; --j) {
    const DrivenStep& st = w.steps[std::size_t(j)];
    const T h = T(st.h);
    for (index_t m = 0; m < s; ++m) {
      T* X = w.v.data() + m * in;
      std::copy(x.begin(), x.end(), X);
      std::copy(a, a + D, w.Ybar.data() + m * D);  // A_m
      T* A = w.Ybar.data() + m * D;
      double c = 0.0;
      for (index_t l = 0; l < m; ++l) {
        c += pb.tab.a[m][l];
        if (pb.tab.a[m][l] == 0.0) continue;
        const T ha = h * T(pb.tab.a[m][l]);
        for (index_t d = 0; d < D; ++d) {
          X[d] -= ha * w.K[std::size_t(l * D + d)];
          A[d] += ha * w.KA[std::size_t(l * D + d)];
        }
      }
      driven_stage_eval(pb, st.piece, st.interval, st.tau + st.h - c * st.h, m, w);
      const double b = pb.tab.b[m];
      // kbar = h b_m A_m: field_vjp adds the quadrature's parameter term to g and returns
      // vbar = h b_m J^T A_m; without weight (b_m = 0) only KA_m is needed.
      const T weight = b != 0.0 ? h * T(b) : T(1);
      for (index_t d = 0; d < D; ++d) w.kbar[std::size_t(d)] = weight * A[d];
      field_vjp(pb.field, st.piece, m, w, b != 0.0 ? g : w.scratch.data());
      for (index_t d = 0; d < D; ++d) w.KA[std::size_t(m * D + d)] = w.vbar[std::size_t(d)] / weight;
      if (b != 0.0 && dU)
        add_input_cotangent(C, w.weights[std::size_t(m)], w.vbar.data() + D, w);
    }
    for (index_t m = 0; m < s; ++m) {
      if (pb.tab.b[m] == 0.0) continue;
      const T hb = h * T(pb.tab.b[m]);
      for (index_t d = 0; d < D; ++d) {
        x[std::size_t(d)] -= hb * w.K[std::size_t(m * D + d)];
        a[d] += hb * w.KA[std::size_t(m * D + d)];
      }
    }
    cot_at(j, a);
  }
  std::copy(a, a + D, dx0 + i * D);
  if (dU) path_cotangent_to_dU(pb, i, w, dU);
}

// driven_adjoint_sample as a sweep's `reverse`.
struct AdjointReverse {
  static constexpr bool keeps_tape = false;
  template <class T, class CotAt>
  void operator()(const DrivenProblem<T>& pb, index_t i, DrivenWork<T>& w, T* a, T* g, T* dx0,
                  T* dU, CotAt&& cot_at) const {
    driven_adjoint_sample(pb, i, w, a, g, dx0, dU, cot_at);
  }
};

}  // namespace detail

// The continuous adjoint's pull-back of a cotangent of driven_solve's output: dfield, dx0, dU
// as driven_vjp.
template <class T>
void driven_adjoint_vjp(const DrivenProblem<T>& pb, const T* cotangent, T* dfield, T* dx0,
                        T* dU) {
  driven_vjp_with(pb, cotangent, dfield, dx0, dU, detail::AdjointReverse{});
}

// The loss of driven_loss_and_grad and its gradient by the continuous adjoint.
template <class T>
double driven_adjoint_loss_and_grad(const DrivenProblem<T>& pb, const std::int64_t* labels,
                                    const T* values, double weight_decay, T* dfield, T* dP, T* dc,
                                    T* dx0, T* dU) {
  return driven_loss_and_grad_with(pb, labels, values, weight_decay, dfield, dP, dc, dx0, dU,
                                   detail::AdjointReverse{});
}

}  // namespace resode
