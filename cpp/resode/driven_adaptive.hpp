// Adaptive Runge-Kutta methods (dopri5, tsit5, bosh3) for the input-driven neural ODE of
// driven.hpp.
//
// Each sample runs docs/adaptive.md's algorithm on its own (per-sample step control): with
// K_i = f_k([x + h sum_{l<i} a_il K_l; u(tau + c_i h)]),
//   x_next = x + h sum_i b_i K_i,   err = h sum_i e_i K_i,
//   E = sqrt(mean_d (err_d / (atol + rtol max(|x_d|, |x_next,d|)))^2)
// (a non-finite x_next or E rejects the step), Hairer's PI controller (adaptive.hpp's
// StepController) and StepSizeError / NonFiniteError on failure. Steps are clipped so that
// they land on every breakpoint of the sample's substeps = 1 grid (driven.hpp: the piece
// boundaries T j / K, the sample's knots and the requested output times strictly inside
// (0, T)) with adaptive.hpp's landing() snap (diffrax's jump_ts): a step never straddles a
// knot, where u' jumps, nor a piece boundary, where the field changes. A step between two
// breakpoints uses that interval's path interval and piece. Every step evaluates all its
// stages anew (no FSAL reuse; the cost is one evaluation per step).
//
// Starting step (Hairer, docs/adaptive.md) from x_0 at t = 0: f0 = f([x_0; u(0)]), d0 =
// rms(x_0 / sc), d1 = rms(f0 / sc), h0 = 0.01 d0 / d1 (1e-6 if either < 1e-5), f1 =
// f([x_0 + h0 f0; u(0)]) (u held at 0, as the neural CDE's dX/dt), d2 = rms((f1 - f0) / sc) /
// h0, h1 = (0.01 / max(d1, d2))^(1/k) (max(1e-6, 1e-3 h0) if max <= 1e-15), h = min(100 h0, h1).
//
// The result and its gradient: each sample's accepted times are handed to driven.hpp
// (DrivenProblem::accepted), which replays them with the solution stages of the tableau, so
// the output is the computed solution on the accepted grid and the gradient is the exact
// reverse sweep of it with the grid held constant (the controller is not differentiated).
#pragma once
#include <cmath>
#include <limits>
#include <memory>
#include <vector>

#include "adaptive.hpp"
#include "cde_adaptive.hpp"  // solution_tableau
#include "driven.hpp"
#include "embedded_tableau.hpp"

namespace resode {

// What an adaptive run reports per sample.
using DrivenAdaptiveRecord = AdaptiveRecord;  // accepted times 0 .. T

namespace detail {

// Every stage of an embedded tableau (its FSAL one included) as a Tableau: driven_stages
// then evaluates all of them, and b (0 for the last stage) gives x_next.
inline Tableau all_stages_tableau(const EmbeddedTableau& e) {
  Tableau t;
  t.stages = e.stages;
  for (int i = 0; i < t.stages; ++i) {
    t.b[i] = e.b[i];
    for (int l = 0; l < i; ++l) t.a[i][l] = e.a[i][l];
  }
  return t;
}

// Hairer's starting step for sample i (w.path built, steps[0] the first break interval).
template <class T>
double driven_starting_step(const DrivenProblem<T>& pb, const EmbeddedTableau& tab,
                            const AdaptiveOptions& opt, const DrivenStep& first, const T* x0,
                            DrivenWork<T>& w, long& nfev) {
  const index_t D = pb.field.D, in = pb.field.in();
  std::copy(x0, x0 + D, w.v.begin());
  driven_stage_eval(pb, first.piece, first.interval, first.tau, 0, w);
  const std::vector<T> f0(w.K.begin(), w.K.begin() + D);
  std::vector<double> sc(static_cast<std::size_t>(D));
  for (index_t d = 0; d < D; ++d) sc[std::size_t(d)] = opt.atol + opt.rtol * std::abs(double(x0[d]));
  const double d0 = scaled_rms(D, 1, 0, x0, sc.data()), d1 = scaled_rms(D, 1, 0, f0.data(), sc.data());
  const double h0 = (d0 < 1e-5 || d1 < 1e-5) ? 1e-6 : 0.01 * d0 / d1;
  T* v1 = w.v.data() + in;  // stage slot 1
  for (index_t d = 0; d < D; ++d) v1[d] = x0[d] + T(h0) * f0[std::size_t(d)];
  driven_stage_eval(pb, first.piece, first.interval, first.tau, 1, w);
  nfev += 2;
  double sum = 0.0;
  for (index_t d = 0; d < D; ++d) {
    const double r = (double(w.K[std::size_t(D + d)]) - double(f0[std::size_t(d)])) /
                     sc[std::size_t(d)];
    sum += r * r;
  }
  const double d2 = std::sqrt(sum / double(D)) / h0, dmax = std::max(d1, d2);
  const double h1 = dmax <= 1e-15 ? std::max(1e-6, h0 * 1e-3)
                                  : std::pow(0.01 / dmax, 1.0 / tab.error_order_k);
  return std::min(100.0 * h0, h1);
}

// A trial step st from x (all stages, with pb.tab = all_stages_tableau): x_next into xnew and
// the error norm E.
template <class T>
double driven_trial_step(const DrivenProblem<T>& pb, const EmbeddedTableau& tab,
                         const AdaptiveOptions& opt, const DrivenStep& st, const T* x,
                         DrivenWork<T>& w, T* xnew) {
  const index_t D = pb.field.D;
  driven_stages(pb, st, x, w);
  driven_update(pb, st, x, w, xnew);
  double E = 0.0;
  for (index_t d = 0; d < D; ++d) {
    T acc = T(0);
    for (int i = 0; i < tab.stages; ++i)
      if (tab.e[i] != 0.0) acc += T(tab.e[i]) * w.K[std::size_t(i * D + d)];
    const double err = double(T(st.h) * acc);
    const double a = std::abs(double(x[d])), b = std::abs(double(xnew[d]));
    const double r = std::isfinite(b) ? err / (opt.atol + opt.rtol * std::max(a, b)) : NAN;
    E += r * r;
  }
  return std::sqrt(E / double(D));
}

// The adaptive run of sample i (pb: all_stages_tableau, substeps 1, no accepted grid): its
// record, or a failure (fail.sample >= 0).
template <class T>
void driven_adaptive_sample(const DrivenProblem<T>& pb, const EmbeddedTableau& tab,
                            const AdaptiveOptions& opt, index_t i, index_t len, DrivenWork<T>& w,
                            DrivenAdaptiveRecord& rec, Failure& fail) {
  const index_t D = pb.field.D;
  build_path(pb, i, len, w.path);
  build_steps(pb, i, w.path, w.breaks, w.steps);  // one entry per break interval
  const std::vector<double>& breaks = w.breaks;
  std::vector<T> x(pb.x0 + i * D, pb.x0 + (i + 1) * D), xnew(static_cast<std::size_t>(D));
  rec.grid.assign(1, breaks[0]);
  double h = opt.first_step > 0.0
                 ? opt.first_step
                 : driven_starting_step(pb, tab, opt, w.steps[0], x.data(), w, rec.nfev);
  step_through_breaks(
      breaks, h, tab, opt, i, rec, fail,
      [&](std::size_t seg, double tnow, double dt) {
        const DrivenStep& sg = w.steps[seg];
        return driven_trial_step(pb, tab, opt, {tnow, dt, sg.piece, sg.interval}, x.data(), w,
                                 xnew.data());
      },
      [&] { std::swap(x, xnew); });
}

}  // namespace detail

// The adaptive run of every sample (validates U, times and t as driven_solve does): per sample
// its accepted times and counts. pb.tab and pb.substeps are ignored.
template <class T>
std::vector<DrivenAdaptiveRecord> driven_adaptive_grids(const DrivenProblem<T>& pb,
                                                        const EmbeddedTableau& tab,
                                                        const AdaptiveOptions& opt) {
  DrivenProblem<T> q = pb;
  q.accepted = nullptr, q.substeps = 1, q.tab = detail::all_stages_tableau(tab);
  std::vector<index_t> length;
  detail::check_driven_paths(q, length);
  const index_t N = q.N;
  std::vector<DrivenAdaptiveRecord> records(static_cast<std::size_t>(N));
  std::vector<detail::Failure> failures(static_cast<std::size_t>(N));
  const int threads = detail::driven_threads(N);
  std::vector<std::unique_ptr<detail::DrivenWork<T>>> works(static_cast<std::size_t>(threads));
  parallel_for(N, threads, [&](int th, index_t i) {
    auto& slot = works[std::size_t(th)];
    if (!slot) slot = std::make_unique<detail::DrivenWork<T>>(q);
    detail::driven_adaptive_sample(q, tab, opt, i, length[std::size_t(i)], *slot,
                                   records[std::size_t(i)], failures[std::size_t(i)]);
  });
  detail::raise_failure(failures);
  return records;
}

// pb with the accepted grids of `records` and the tableau's solution stages: driven_solve,
// driven_vjp, driven_logits and driven_loss_and_grad of it replay the adaptive run.
template <class T>
DrivenProblem<T> driven_replay_problem(const DrivenProblem<T>& pb, const EmbeddedTableau& tab,
                                       const std::vector<DrivenAdaptiveRecord>& records) {
  auto grids = std::make_shared<std::vector<std::vector<double>>>();
  grids->reserve(records.size());
  for (const auto& r : records) grids->push_back(r.grid);
  DrivenProblem<T> q = pb;
  q.accepted = std::move(grids);
  q.tab = solution_tableau(tab);
  q.substeps = 1;
  return q;
}

}  // namespace resode
