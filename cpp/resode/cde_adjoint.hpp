// The continuous adjoint (backsolve) of the neural CDE (cde.hpp), gradient = "adjoint".
//
// Per sample, from z(T_i) of the discrete forward on its step grid (the fixed-step grid, or
// an adaptive run's accepted grid: CdeProblem::accepted), the augmented system
//   z' = G(z) dX/dt,   a' = -J^T a   (J = d(G(z) dX/dt)/dz)
// is integrated backwards over the same grid reversed with the same tableau (step -h), and
// the gradients are the quadratures of its stages (Z_i, A_i at tau + h - c_i h):
//   dtheta += h sum_i b_i (d(G v)/dtheta)(Z_i)^T A_i,
//   dslope += h sum_i b_i (dv(t_i)/dslope)^T G(Z_i)^T A_i      (v = dX/dt, linear in slopes),
// and a(t_0) is the cotangent of z(t_0) = A x_0 + a. A cotangent at an output time is added
// to a when the backward run passes it (it is a grid point). The result converges to the
// discrete gradient as the steps shrink; it is not the gradient of the computed solution.
// Samples run one at a time (n = 1 columns) in groups with their own accumulators, reduced
// in group order (results do not depend on the thread count).
#pragma once
#include <memory>
#include <vector>

#include "cde.hpp"
#include "cde_adaptive.hpp"

namespace resode {
namespace detail {

template <class T>
struct CdeAdjointWork {
  CdeAdaptiveWork<T> fw;  // path, grid and one stage's scratch (F, cache, dX)
  std::vector<T> z, a, Fbar, hbar, dXbar, dbar, xbar, scratch_grads;
  std::vector<T> Z[Tableau::max_stages], Aa[Tableau::max_stages];
  std::vector<T> Kz[Tableau::max_stages], Ka[Tableau::max_stages];
  CdeAdjointWork(const CdeProblem<T>& pb, index_t max_len) {
    const index_t S = pb.field.S, C = pb.C, O = pb.field.out();
    for (int s = 0; s < Tableau::max_stages; ++s) {
      Z[s].assign(std::size_t(S), T(0)), Aa[s].assign(std::size_t(S), T(0));
      Kz[s].assign(std::size_t(S), T(0)), Ka[s].assign(std::size_t(S), T(0));
    }
    fw.F.assign(std::size_t(O), T(0));
    fw.cache.assign(std::size_t(std::max<index_t>(pb.field.cache_rows(), 1)), T(0));
    fw.dX.assign(std::size_t(C), T(0));
    z.assign(std::size_t(S), T(0)), a.assign(std::size_t(S), T(0));
    Fbar.assign(std::size_t(O), T(0));
    hbar.assign(std::size_t(std::max<index_t>(pb.field.H, 1)), T(0));
    dXbar.assign(std::size_t(C), T(0));
    dbar.assign(std::size_t(max_len * C), T(0)), xbar.assign(std::size_t(max_len * C), T(0));
    scratch_grads.assign(std::size_t(pb.field.size()), T(0));
  }
};

// Z = base + sign sum_{l<i} T(a_il) K_l.
template <class T>
void adjoint_stage_input(index_t S, const Tableau& tab, int i, const T* base, T sign,
                         const std::vector<T>* K, T* Z) {
  std::copy(base, base + S, Z);
  for (int l = 0; l < i; ++l) {
    if (tab.a[i][l] == 0.0) continue;
    const T c = sign * T(tab.a[i][l]);
    for (index_t d = 0; d < S; ++d) Z[d] += c * K[l][std::size_t(d)];
  }
}

// The discrete forward of sample i on its grid (w.fw.grid, path set up): z(T_i) in w.z.
// Returns false at a non-finite state (bad: its step and time).
template <class T>
bool cde_sample_forward(const CdeProblem<T>& pb, index_t i, CdeAdjointWork<T>& w,
                        CdeBadStep& bad) {
  const index_t S = pb.field.S, C = pb.C;
  const double* t = pb.sample_times(i);
  affine(S, C, 1, pb.A, pb.a, w.fw.x.data(), w.z.data());
  const Tableau& tab = pb.tab;
  const auto& steps = w.fw.grid.steps;
  for (std::size_t j = 0; j < steps.size(); ++j) {
    const CdeStep& st = steps[j];
    for (int s = 0; s < tab.stages; ++s) {
      double node = 0.0;
      for (int l = 0; l < s; ++l) node += tab.a[s][l];
      adjoint_stage_input(S, tab, s, w.z.data(), T(1), w.Kz, w.Z[s].data());
      cde_adaptive_stage(pb, t, st.interval, st.piece, st.tau, node, st.h, w.Z[s].data(), w.fw,
                         w.Kz[s].data());
    }
    for (int s = 0; s < tab.stages; ++s) {
      if (tab.b[s] == 0.0) continue;
      const T b = T(tab.b[s]);
      for (index_t d = 0; d < S; ++d) w.z[std::size_t(d)] += b * w.Kz[s][std::size_t(d)];
    }
    if (!all_finite(S, w.z.data())) {
      bad = {index_t(j), i, st.tau + st.h};
      return false;
    }
  }
  return true;
}

// The backward run of sample i from w.z = z(T_i) and w.a = the cotangent of z(T_i);
// add_cotangent(state, a) adds the cotangent of grid state `state` < steps. Adds the field
// grads, dA and da into acc ([field | A | a]) and writes the sample's row of dU.
template <class T, class AddCotangent>
void cde_sample_adjoint(const CdeProblem<T>& pb, index_t i, index_t len, CdeAdjointWork<T>& w,
                        T* acc, T* dU, AddCotangent&& add_cotangent) {
  const index_t S = pb.field.S, C = pb.C;
  const double* t = pb.sample_times(i);
  const Tableau& tab = pb.tab;
  const auto& steps = w.fw.grid.steps;
  std::fill(w.dbar.begin(), w.dbar.end(), T(0));
  for (index_t j = index_t(steps.size()) - 1; j >= 0; --j) {
    const CdeStep& st = steps[std::size_t(j)];
    for (int s = 0; s < tab.stages; ++s) {
      double node = 0.0;
      for (int l = 0; l < s; ++l) node += tab.a[s][l];
      adjoint_stage_input(S, tab, s, w.z.data(), T(-1), w.Kz, w.Z[s].data());
      adjoint_stage_input(S, tab, s, w.a.data(), T(1), w.Ka, w.Aa[s].data());
      // Kz_s = G(Z_s) h v(tau + h - c_s h); its VJP with A_s: Fbar = A_s (x) h v, h G^T A_s
      cde_adaptive_stage(pb, t, st.interval, st.piece, st.tau + st.h, -node, st.h,
                         w.Z[s].data(), w.fw, w.Kz[s].data());
      // (rho's slope after the quadrature weight b: cde_field_vjp applies it)
      contract_channels_vjp(S, C, Activation::identity, Columns{0, 1}, w.fw.F.data(),
                            w.fw.dX.data(), w.Aa[s].data(), w.Fbar.data(), w.dXbar.data());
      const double b = tab.b[s];
      if (b != 0.0) {  // the quadratures, weight b_s (h is in dX)
        for (auto& f : w.Fbar) f *= T(b);
        cde_field_vjp(pb.field, st.piece, Columns{0, 1}, w.Z[s].data(), w.fw.F.data(),
                      w.fw.cache.data(), w.Fbar.data(), w.Ka[s].data(), acc, w.hbar.data());
        const T inv = T(1.0 / b);
        for (auto& k : w.Ka[s]) k *= inv;
        const PathWeights pw = path_weights(pb.interpolation, st.interval, t[st.interval],
                                            t[st.interval + 1], st.tau + st.h - node * st.h);
        const T hb = T(b * st.h * pw.beta), ha = T(b * st.h * pw.alpha);
        for (index_t c = 0; c < C; ++c) {
          w.dbar[std::size_t(st.interval * C + c)] += hb * w.dXbar[std::size_t(c)];
          if (pw.alpha != 0.0) w.dbar[std::size_t(pw.prev * C + c)] += ha * w.dXbar[std::size_t(c)];
        }
      } else {  // J^T A_s only: the parameter cotangents land in scratch
        cde_field_vjp(pb.field, st.piece, Columns{0, 1}, w.Z[s].data(), w.fw.F.data(),
                      w.fw.cache.data(), w.Fbar.data(), w.Ka[s].data(), w.scratch_grads.data(),
                      w.hbar.data());
      }
    }
    for (int s = 0; s < tab.stages; ++s) {
      if (tab.b[s] == 0.0) continue;
      const T b = T(tab.b[s]);
      for (index_t d = 0; d < S; ++d) {
        w.z[std::size_t(d)] -= b * w.Kz[s][std::size_t(d)];
        w.a[std::size_t(d)] += b * w.Ka[s][std::size_t(d)];
      }
    }
    add_cotangent(j, w.a.data());
  }
  // z_0 = A x_0 + a: dA += a x_0^T, da += a, xbar_0 = A^T a
  T* dA = acc + pb.field.size();
  T* da = dA + S * C;
  std::fill(w.xbar.begin(), w.xbar.end(), T(0));
  for (index_t d = 0; d < S; ++d) {
    const T ad = w.a[std::size_t(d)];
    da[d] += ad;
    for (index_t c = 0; c < C; ++c) {
      dA[d * C + c] += ad * w.fw.x[std::size_t(c)];
      w.xbar[std::size_t(c)] += pb.A[d * C + c] * ad;
    }
  }
  for (index_t k = 0; k + 1 < len; ++k) {  // d_k = (x_{k+1} - x_k) / dt_k
    const T dt = T(t[k + 1] - t[k]);
    for (index_t c = 0; c < C; ++c) {
      const T v = w.dbar[std::size_t(k * C + c)] / dt;
      w.xbar[std::size_t((k + 1) * C + c)] += v;
      w.xbar[std::size_t(k * C + c)] -= v;
    }
  }
  const T* U = pb.sample_values(i);
  T* dUi = dU + i * pb.L * C;
  std::fill(dUi, dUi + pb.L * C, T(0));
  for (index_t c = 0; c < C; ++c) {
    fill_weights(U, C, c, len, t, w.fw.fill.data());
    for (index_t r = 0; r < len; ++r)
      fill_transpose(C, c, w.fw.fill[std::size_t(r)], w.xbar[std::size_t(r * C + c)], dUi);
  }
}

// Every sample's forward (zT (N, S)) and then (backward) its backward run, with
// final_cotangent(i, grid, a) setting a = the cotangent of z(T_i) and add_cotangent(i, grid,
// j, a) adding that of grid state j: grads ([field | A | a]) and dU.
template <class T, class Final, class Add>
void cde_adjoint_sweep(const CdeProblem<T>& pb, T* zT, T* grads, T* dU, bool backward,
                       Final&& final_cotangent, Add&& add_cotangent) {
  const auto plan = make_plan(pb, false);  // validates; lengths and window
  const index_t N = pb.N, S = pb.field.S, C = pb.C;
  const index_t gsize = pb.field.size() + S * C + S;
  const index_t groups = std::min<index_t>(N, 8);
  const int threads = int(std::clamp<index_t>(get_num_threads(), 1, groups));
  Buffer<T> acc(groups * gsize);
  std::vector<CdeBadStep> bad(static_cast<std::size_t>(groups));
  parallel_for(groups, threads, [&](int, index_t g) {
    CdeAdjointWork<T> w(pb, plan.max_length);
    T* mine = acc.data() + g * gsize;
    std::fill(mine, mine + gsize, T(0));
    for (index_t i = N * g / groups; i < N * (g + 1) / groups; ++i) {
      const index_t len = plan.length[std::size_t(i)];
      cde_adaptive_path(pb, i, len, w.fw);
      build_grid(pb, plan, i, pb.sample_times(i), len, w.fw.grid);
      if (!cde_sample_forward(pb, i, w, bad[std::size_t(g)])) return;
      std::copy(w.z.begin(), w.z.end(), zT + i * S);
      if (!backward) continue;
      final_cotangent(i, w.fw.grid, w.a.data());
      cde_sample_adjoint(pb, i, len, w, mine, dU,
                         [&](index_t j, T* a) { add_cotangent(i, w.fw.grid, j, a); });
    }
  });
  raise_if_cde_non_finite(bad);
  if (!backward) return;
  for (index_t g = 0; g < groups; ++g) {
    const T* a = acc.data() + g * gsize;
    for (index_t k = 0; k < gsize; ++k) grads[k] = g == 0 ? a[k] : grads[k] + a[k];
  }
}

}  // namespace detail

// The continuous adjoint's pull-back of a cotangent of cde_solve's output ((N, S), or
// (out_count, N, S)): dfield (flat [W1 | b1 | W2 | b2]), dA, da, dU, as cde_vjp.
template <class T>
void cde_adjoint_vjp(const CdeProblem<T>& pb, const T* cotangent, T* dfield, T* dA, T* da,
                     T* dU) {
  const index_t S = pb.field.S, C = pb.C, N = pb.N, nf = pb.field.size();
  Buffer<T> zT(N * S), grads(nf + S * C + S);
  // the cotangents of the output times that read grid state j of sample i
  auto add = [&](index_t i, const detail::CdeGrid& g, index_t j, T* a) {
    for (index_t r = 0; r < pb.out_count; ++r)
      if (g.out_state[std::size_t(r)] == j)
        for (index_t d = 0; d < S; ++d) a[d] += cotangent[(r * N + i) * S + d];
  };
  auto final_cotangent = [&](index_t i, const detail::CdeGrid& g, T* a) {
    std::fill(a, a + S, T(0));
    if (pb.out_count == 0)
      for (index_t d = 0; d < S; ++d) a[d] = cotangent[i * S + d];
    else
      add(i, g, index_t(g.steps.size()), a);
  };
  detail::cde_adjoint_sweep(pb, zT.data(), grads.data(), dU, true, final_cotangent, add);
  const T* g = grads.data();
  std::copy(g, g + nf, dfield);
  std::copy(g + nf, g + nf + S * C, dA);
  std::copy(g + nf + S * C, g + nf + S * C + S, da);
  detail::require_finite_gradient(nf + S * C + S, g, "parameters");
  detail::require_finite_gradient(N * pb.L * C, dU, "U");
}

// The loss of cde_loss_and_grad and its gradient by the continuous adjoint (and the logits,
// as cde_loss_and_grad's).
template <class T>
double cde_adjoint_loss_and_grad(const CdeProblem<T>& pb, const Targets<T>& targets,
                                 double weight_decay, T* dfield, T* dA, T* da, T* dP, T* dc,
                                 T* dU, T* logits_out = nullptr) {
  const index_t S = pb.field.S, C = pb.C, N = pb.N, nf = pb.field.size();
  const index_t classes = pb.readout.classes;
  Buffer<T> zT(N * S), zcols(S * N), logits(classes * N), logits_bar(classes * N);
  Buffer<T> zbar(S * N), grads(nf + S * C + S);
  auto none = [](index_t, const detail::CdeGrid&, T*) {};
  auto no_add = [](index_t, const detail::CdeGrid&, index_t, T*) {};
  detail::cde_adjoint_sweep(pb, zT.data(), grads.data(), dU, false, none, no_add);
  for (index_t i = 0; i < N; ++i)
    for (index_t d = 0; d < S; ++d) zcols.data()[d * N + i] = zT.data()[i * S + d];
  readout(pb.readout, N, S, zcols.data(), logits.data());
  if (!all_finite(classes * N, logits.data()))
    throw non_finite_error("the logits z(T) P^T + c are not finite: the readout overflowed", -1,
                           0.0);
  if (logits_out)  // (N, classes) from the feature-major (classes, N)
    for (index_t i = 0; i < N; ++i)
      for (index_t j = 0; j < classes; ++j) logits_out[i * classes + j] = logits.data()[j * N + i];
  double loss = block_loss(targets, classes, 0, N, N, logits.data(), logits_bar.data(), 1.0);
  std::fill(dP, dP + classes * S, T(0));
  std::fill(dc, dc + classes, T(0));
  readout_vjp(pb.readout, N, N, S, zcols.data(), logits_bar.data(), zbar.data(), false, dP, dc);
  auto final_cotangent = [&](index_t i, const detail::CdeGrid&, T* a) {
    for (index_t d = 0; d < S; ++d) a[d] = zbar.data()[d * N + i];
  };
  detail::cde_adjoint_sweep(pb, zT.data(), grads.data(), dU, true, final_cotangent, no_add);
  T* g = grads.data();
  if (weight_decay != 0.0) {  // as cde_loss_and_grad
    const T* tensors[4] = {pb.field.W1, pb.field.b1, pb.field.W2, pb.field.b2};
    const index_t K = pb.field.pieces;
    const index_t sizes[4] = {K * pb.field.w1_size(), K * pb.field.b1_size(),
                              K * pb.field.w2_size(), K * pb.field.b2_size()};
    T* gi = g;
    for (int m = 0; m < 4; ++m) {
      for (index_t i = 0; i < sizes[m]; ++i) {
        loss += weight_decay * double(tensors[m][i]) * double(tensors[m][i]);
        gi[i] += T(2.0 * weight_decay) * tensors[m][i];
      }
      gi += sizes[m];
    }
  }
  if (!std::isfinite(loss)) throw non_finite_error("the loss is not finite", -1, 0.0);
  std::copy(g, g + nf, dfield);
  std::copy(g + nf, g + nf + S * C, dA);
  std::copy(g + nf + S * C, g + nf + S * C + S, da);
  detail::require_finite_gradient(nf + S * C + S, g, "parameters");
  detail::require_finite_gradient(N * pb.L * C, dU, "U");
  return loss;
}

}  // namespace resode
