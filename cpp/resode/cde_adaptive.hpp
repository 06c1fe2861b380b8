// Adaptive Runge-Kutta methods (dopri5, tsit5, bosh3) for the neural CDE of cde.hpp.
//
// Each sample runs docs/adaptive.md's algorithm on its own (per-sample step control): the
// embedded tableau, the error norm over its S state components, Hairer's PI controller and
// starting step, StepSizeError / NonFiniteError on failure. Steps are clipped so that they
// land on every breakpoint of the sample's fixed-step grid (cde.hpp: its knots, the piece
// boundaries and the requested output times strictly inside (t_{i,0}, T_i)), with the snap of
// adaptive.hpp's landing() (diffrax's jump_ts). A step between two breakpoints uses that
// interval's path interval and piece; stage i evaluates h dX/dt at tau + c_i h on it.
// The first stage of every step is evaluated anew (no FSAL reuse): for linear paths dX/dt
// jumps at the knots.
//
// Starting step (docs/adaptive.md, Hairer): f0 = G(z_0) dX/dt(t_0); both of its evaluations
// use dX/dt at t_0 on the first path interval.
//
// The result and its gradient: the accepted times of each sample are handed to cde.hpp
// (CdeProblem::accepted), which replays them with the solution stages of the tableau, so the
// output is the computed solution on the accepted grid and the gradient is the exact reverse
// sweep of it with the grid held constant (the controller is not differentiated), as resode's
// adaptive neural ODE.
#pragma once
#include <cmath>
#include <limits>
#include <memory>
#include <vector>

#include "adaptive.hpp"
#include "cde.hpp"
#include "embedded_tableau.hpp"

namespace resode {

// What an adaptive CDE run reports per sample.
// One sample's adaptive run (the time-series models: this file, driven_adaptive.hpp).
struct AdaptiveRecord {
  std::vector<double> grid;  // accepted times, start to end, every breakpoint among them
  long nfev = 0, accepted = 0, rejected = 0;
};
using CdeAdaptiveRecord = AdaptiveRecord;

// The solution stages of an embedded tableau as a fixed-step Tableau (the replayed map).
inline Tableau solution_tableau(const EmbeddedTableau& e) {
  Tableau t;
  t.stages = e.solution_stages();
  for (int i = 0; i < t.stages; ++i) {
    t.b[i] = e.b[i];
    for (int l = 0; l < i; ++l) t.a[i][l] = e.a[i][l];
  }
  return t;
}

namespace detail {

// One sample's buffers: its path (filled values x (len x C), slopes d ((len-1) x C)) and the
// stages of one step (n = 1 column each).
template <class T>
struct CdeAdaptiveWork {
  std::vector<T> x, d, z, znew, dX;
  std::vector<T> Z[EmbeddedTableau::max_stages], K[EmbeddedTableau::max_stages];
  std::vector<T> F, cache;
  std::vector<FillWeight> fill;
  CdeGrid grid;
};

// K = G(Z) (h dX/dt)(tau + node h) on path interval k of the sample (times t).
template <class T>
void cde_adaptive_stage(const CdeProblem<T>& pb, const double* t, index_t k, index_t piece,
                        double tau, double node, double h, const T* Z, CdeAdaptiveWork<T>& w,
                        T* K) {
  const index_t C = pb.C, S = pb.field.S;
  const PathWeights pw = path_weights(pb.interpolation, k, t[k], t[k + 1], tau + node * h);
  const T hb = T(h * pw.beta), ha = T(h * pw.alpha);
  for (index_t c = 0; c < C; ++c)
    w.dX[std::size_t(c)] =
        hb * w.d[std::size_t(k * C + c)] + ha * w.d[std::size_t(pw.prev * C + c)];
  cde_field_eval(pb.field, piece, Columns{0, 1}, Z, w.F.data(), w.cache.data());
  contract_channels(S, C, Columns{0, 1}, w.F.data(), w.dX.data(), K);
}

// The path of sample i (len observed rows) into w.x, w.d.
template <class T>
void cde_adaptive_path(const CdeProblem<T>& pb, index_t i, index_t len, CdeAdaptiveWork<T>& w) {
  const index_t C = pb.C;
  const T* U = pb.sample_values(i);
  const double* t = pb.sample_times(i);
  w.fill.resize(std::size_t(len));
  w.x.assign(std::size_t(len * C), T(0));
  w.d.assign(std::size_t((len - 1) * C), T(0));
  for (index_t c = 0; c < C; ++c) {
    fill_weights(U, C, c, len, t, w.fill.data());
    for (index_t r = 0; r < len; ++r)
      w.x[std::size_t(r * C + c)] = filled_value(U, C, c, w.fill[std::size_t(r)]);
  }
  for (index_t k = 0; k + 1 < len; ++k) {
    const T dt = T(t[k + 1] - t[k]);
    for (index_t c = 0; c < C; ++c)
      w.d[std::size_t(k * C + c)] =
          (w.x[std::size_t((k + 1) * C + c)] - w.x[std::size_t(k * C + c)]) / dt;
  }
}

// Hairer's starting step (docs/adaptive.md) from z_0 at t_0 with the first step's interval
// and piece.
template <class T>
double cde_starting_step(const CdeProblem<T>& pb, const EmbeddedTableau& tab,
                         const AdaptiveOptions& opt, const double* t, index_t k, index_t piece,
                         CdeAdaptiveWork<T>& w, long& nfev) {
  const index_t S = pb.field.S;
  const T* z = w.z.data();
  T* f0 = w.K[0].data();
  T* f1 = w.K[1].data();
  cde_adaptive_stage(pb, t, k, piece, t[0], 0.0, 1.0, z, w, f0);
  std::vector<double> sc(static_cast<std::size_t>(S));
  for (index_t d = 0; d < S; ++d) sc[std::size_t(d)] = opt.atol + opt.rtol * std::abs(double(z[d]));
  const double d0 = scaled_rms(S, 1, 0, z, sc.data()), d1 = scaled_rms(S, 1, 0, f0, sc.data());
  const double h0 = (d0 < 1e-5 || d1 < 1e-5) ? 1e-6 : 0.01 * d0 / d1;
  T* x1 = w.Z[1].data();
  for (index_t d = 0; d < S; ++d) x1[d] = z[d] + T(h0) * f0[d];
  cde_adaptive_stage(pb, t, k, piece, t[0], 0.0, 1.0, x1, w, f1);
  nfev += 2;
  double sum = 0.0;
  for (index_t d = 0; d < S; ++d) {
    const double r = (double(f1[d]) - double(f0[d])) / sc[std::size_t(d)];
    sum += r * r;
  }
  const double d2 = std::sqrt(sum / double(S)) / h0, dmax = std::max(d1, d2);
  const double h1 = dmax <= 1e-15 ? std::max(1e-6, h0 * 1e-3)
                                  : std::pow(0.01 / dmax, 1.0 / tab.error_order_k);
  return std::min(100.0 * h0, h1);
}

// A trial step of size h from (tau, w.z): the stages, w.znew and the error norm E.
template <class T>
double cde_trial_step(const CdeProblem<T>& pb, const EmbeddedTableau& tab,
                      const AdaptiveOptions& opt, const double* t, index_t k, index_t piece,
                      double tau, double h, CdeAdaptiveWork<T>& w) {
  const index_t S = pb.field.S;
  const T* z = w.z.data();
  for (int i = 0; i < tab.stages; ++i) {
    double node = 0.0;
    T* Zi = w.Z[i].data();
    std::copy(z, z + S, Zi);
    for (int l = 0; l < i; ++l) {
      node += tab.a[i][l];
      if (tab.a[i][l] == 0.0) continue;
      const T a = T(tab.a[i][l]);
      const T* Kl = w.K[l].data();
      for (index_t d = 0; d < S; ++d) Zi[d] += a * Kl[d];
    }
    cde_adaptive_stage(pb, t, k, piece, tau, node, h, Zi, w, w.K[i].data());
  }
  T* znew = w.znew.data();
  std::copy(z, z + S, znew);
  for (int i = 0; i < tab.stages; ++i) {
    if (tab.b[i] == 0.0) continue;
    const T b = T(tab.b[i]);
    for (index_t d = 0; d < S; ++d) znew[d] += b * w.K[i][std::size_t(d)];
  }
  double E = 0.0;
  for (index_t d = 0; d < S; ++d) {
    T acc = T(0);
    for (int i = 0; i < tab.stages; ++i)
      if (tab.e[i] != 0.0) acc += T(tab.e[i]) * w.K[i][std::size_t(d)];
    const double a = std::abs(double(z[d])), b = std::abs(double(znew[d]));
    const double r = std::isfinite(b) ? double(acc) / (opt.atol + opt.rtol * std::max(a, b)) : NAN;
    E += r * r;
  }
  return std::sqrt(E / double(S));
}

// The per-sample step control of the time-series models: from breaks[0], steps of the
// controller's size clipped (landing) onto each breakpoint in turn; trial(seg, t, dt) takes a
// trial step from t on break interval seg and returns its error norm, accept() keeps it. A step
// below the resolution of t, or max_steps, is a failure of sample i.
template <class Trial, class Accept>
void step_through_breaks(const std::vector<double>& breaks, double h, const EmbeddedTableau& tab,
                         const AdaptiveOptions& opt, index_t i, AdaptiveRecord& rec,
                         Failure& fail, Trial&& trial, Accept&& accept) {
  constexpr double eps = std::numeric_limits<double>::epsilon();
  StepController ctrl{double(tab.error_order_k)};
  double tnow = breaks[0], E_last = 0.0;
  bool bad_trial = false;
  std::size_t seg = 0;
  while (seg + 1 < breaks.size()) {
    const double q = breaks[seg + 1];
    const double t_new = landing(tnow, h, q);
    const double dt = t_new - tnow;
    const bool too_many = rec.accepted + rec.rejected >= opt.max_steps;
    if (too_many || dt <= 4.0 * eps * std::abs(t_new)) {
      fail = {long(i), bad_trial, too_many, tnow, dt, E_last, false};
      return;
    }
    E_last = trial(seg, tnow, dt);
    rec.nfev += tab.stages;
    if (ctrl.update(E_last, dt, h)) {
      accept();
      tnow = t_new;
      rec.grid.push_back(tnow);
      ++rec.accepted;
      if (tnow == q) ++seg;
    } else {
      ++rec.rejected;
      bad_trial = !std::isfinite(E_last);
    }
  }
}

// The adaptive run of sample i: its record, or a failure (f.sample >= 0).
template <class T>
void cde_adaptive_sample(const CdeProblem<T>& pb, const CdePlan<T>& plan,
                         const EmbeddedTableau& tab, const AdaptiveOptions& opt, index_t i,
                         CdeAdaptiveWork<T>& w, CdeAdaptiveRecord& rec, Failure& fail) {
  const index_t S = pb.field.S, C = pb.C, len = plan.length[std::size_t(i)];
  const double* t = pb.sample_times(i);
  cde_adaptive_path(pb, i, len, w);
  build_grid(pb, plan, i, t, len, w.grid);  // breaks and, per break interval, k and piece
  const std::vector<double>& breaks = w.grid.breaks;
  const auto& segments = w.grid.steps;    // substeps = 1 here: one entry per break interval
  w.z.assign(std::size_t(S), T(0));
  w.znew.assign(std::size_t(S), T(0));
  affine(S, C, 1, pb.A, pb.a, w.x.data(), w.z.data());  // z_0 = A x_0 + a
  rec.grid.assign(1, breaks[0]);
  double h = opt.first_step > 0.0
                 ? opt.first_step
                 : cde_starting_step(pb, tab, opt, t, segments[0].interval, segments[0].piece, w,
                                     rec.nfev);
  step_through_breaks(
      breaks, h, tab, opt, i, rec, fail,
      [&](std::size_t seg, double tnow, double dt) {
        const CdeStep& sg = segments[seg];
        return cde_trial_step(pb, tab, opt, t, sg.interval, sg.piece, tnow, dt, w);
      },
      [&] { std::swap(w.z, w.znew); });
}

}  // namespace detail

// The adaptive run of every sample (validates U, times and t as cde.hpp does): per sample its
// accepted times and counts. pb.substeps is ignored (one grid segment per break interval).
template <class T>
std::vector<CdeAdaptiveRecord> cde_adaptive_grids(const CdeProblem<T>& pb,
                                                  const EmbeddedTableau& tab,
                                                  const AdaptiveOptions& opt) {
  CdeProblem<T> q = pb;
  q.accepted = nullptr, q.substeps = 1;
  detail::CdePlan<T> plan;
  detail::check_paths(q, plan);
  detail::set_window(q, plan);
  const index_t N = q.N, S = q.field.S;
  std::vector<CdeAdaptiveRecord> records(static_cast<std::size_t>(N));
  std::vector<detail::Failure> failures(static_cast<std::size_t>(N));
  const int threads = int(std::clamp<index_t>(get_num_threads(), 1, N));
  std::vector<std::unique_ptr<detail::CdeAdaptiveWork<T>>> works(static_cast<std::size_t>(threads));
  parallel_for(N, threads, [&](int th, index_t i) {
    auto& slot = works[std::size_t(th)];
    if (!slot) {
      slot = std::make_unique<detail::CdeAdaptiveWork<T>>();
      for (int s = 0; s < tab.stages; ++s)
        slot->Z[s].assign(std::size_t(S), T(0)), slot->K[s].assign(std::size_t(S), T(0));
      slot->F.assign(std::size_t(q.field.out()), T(0));
      slot->cache.assign(std::size_t(std::max<index_t>(q.field.cache_rows(), 1)), T(0));
      slot->dX.assign(std::size_t(q.C), T(0));
    }
    detail::cde_adaptive_sample(q, plan, tab, opt, i, *slot, records[std::size_t(i)],
                                failures[std::size_t(i)]);
  });
  detail::raise_failure(failures);
  return records;
}

// pb with the accepted grids of `records` and the tableau's solution stages: cde_solve,
// cde_vjp, cde_logits and cde_loss_and_grad of it replay the adaptive run.
template <class T>
CdeProblem<T> cde_replay_problem(const CdeProblem<T>& pb, const EmbeddedTableau& tab,
                                 const std::vector<CdeAdaptiveRecord>& records) {
  auto grids = std::make_shared<std::vector<std::vector<double>>>();
  grids->reserve(records.size());
  for (const auto& r : records) grids->push_back(r.grid);
  CdeProblem<T> q = pb;
  q.accepted = std::move(grids);
  q.tab = solution_tableau(tab);
  q.substeps = 1;
  return q;
}

}  // namespace resode
