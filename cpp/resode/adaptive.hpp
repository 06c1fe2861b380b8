// Adaptive embedded Runge-Kutta integration with per-sample step control, dense output and the
// discrete gradient of the computed solution. The algorithm (norm, PI controller, first step,
// piece boundaries, failures, interpolants) is fixed in docs/guide/adaptive.md; resode.reference
// implements the same one in NumPy.
//
// Blocks and columns. Samples run in the blocks of sweep.hpp (feature-major D x n). Within a
// block every column has its own time t, step size and acceptance: a step is computed for the
// whole block with a per-column step size dt_s (dt_s = 0 for a column that idles), so a sample's
// arithmetic never depends on the other columns and its result is the same in any batch. The
// block runs piece by piece: a column that reaches the piece's end idles until every column
// has, because the field (the GEMM's weights) is the piece's for the whole block.
// Step control "batch" runs all samples as one block with one error (the max over samples).
//
// Gradients: the forward run yields each sample's grid of accepted times. A replay steps the
// blocks again on those grids (the accepted step sizes held constant: the controller is not
// differentiated), storing states and stages on a tape (or checkpoints), and the reverse sweep
// runs the exact reverse of each replayed step with per-column step sizes. Replaying a grid
// reproduces the forward run bitwise (the same operations on the same values).
#pragma once
#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <sstream>
#include <vector>

#include "embedded_tableau.hpp"
#include "sweep.hpp"

namespace resode {

enum class StepControl { sample, batch };

// T in a parameter that must not take part in template deduction (a nullptr argument).
template <class T>
struct SameType {
  using type = T;
};
template <class T>
using Same = typename SameType<T>::type;

// Controller constants (docs/guide/adaptive.md): Hairer's PI controller (his DOPRI5 code's), with
// beta = 0.2 / k and alpha = 1 / k - 0.75 beta = 0.85 / k.
struct ControllerConstants {
  static constexpr double safety = 0.9, min_factor = 0.2, max_factor = 10.0;
};

// The PI controller of docs/guide/adaptive.md for one sample: after a step with error E (a
// non-finite E is a rejection), whether it is accepted and the next step size.
struct StepController {
  double k = 5.0;        // error estimator order + 1
  double E_prev = 1.0;  // the error of the last accepted step
  // Returns whether the step of size dt with error E is accepted; h = the next step size.
  bool update(double E, double dt, double& h) {
    using C = ControllerConstants;
    if (std::isfinite(E) && E <= 1.0) {
      double factor = C::max_factor;
      if (E > 0.0)
        factor = std::clamp(C::safety * std::pow(std::max(E, 1e-10), -0.85 / k) *
                                std::pow(E_prev, 0.2 / k),
                            C::min_factor, C::max_factor);
      E_prev = std::max(E, 1e-4);
      h = dt * factor;
      return true;
    }
    const double factor =
        std::isfinite(E) ? std::min(1.0, std::max(C::min_factor, C::safety * std::pow(E, -1.0 / k)))
                         : C::min_factor;
    h = dt * factor;
    return false;
  }
};

struct AdaptiveOptions {
  double rtol = 1e-7, atol = 1e-9;
  double first_step = 0.0;  // 0: Hairer's heuristic
  index_t max_steps = 100000;
  StepControl control = StepControl::sample;
};

// What an adaptive run reports per sample.
struct SampleRecord {
  long nfev = 0, accepted = 0, rejected = 0;
  std::vector<double> grid;  // accepted times from 0 to T, every piece boundary included
  // The backward run of gradient='adjoint' (backward: whether one ran): its evaluations of f
  // (each with its vector-Jacobian product) and its accepted and rejected steps.
  bool backward = false;
  long backward_nfev = 0, backward_accepted = 0, backward_rejected = 0;
};

// An adaptive (or replayed) integration problem: the Problem's field, data and readout, the
// method's tableau and T. Output times (sorted, in [0, T]) for dense output, if any.
template <class T>
struct AdaptiveProblem {
  const Problem<T>* pb = nullptr;
  EmbeddedTableau tab;
  double T_end = 1.0;
  AdaptiveOptions opt;
  const double* times = nullptr;
  index_t n_times = 0;
  index_t pieces() const { return pb->dyn.field.pieces; }
  // t_k = (T k) / pieces, and T itself for k = pieces ((T K) / K is not always T).
  double boundary(index_t k) const {
    return k == pieces() ? T_end : (T_end * double(k)) / double(pieces());
  }
};

namespace detail {

// Where a step of proposed size h from t lands in a piece that ends at t_end (forward: t_end >
// t, h > 0; backward: t_end < t, h < 0): t + h, clipped to t_end, and snapped to t_end when it
// would land within 100 eps |t_end| of it (docs/guide/adaptive.md): the sliver left otherwise would
// be a step at or below the resolution of t (a StepSizeError) or a needlessly tiny step.
inline double landing(double t, double h, double t_end) {
  constexpr double eps = std::numeric_limits<double>::epsilon();
  const double t_new = t + h, snap = 100.0 * eps * std::abs(t_end);
  if (t_end > t ? t_new >= t_end - snap : t_new <= t_end + snap) return t_end;
  return t_new;
}

// out[:, s] = (scale_base ? T(dt_s w_base) : 1) base[:, s] + sum_c T(dt_s w_c) vec_c[:, s] for
// the nonzero w_c, summed in increasing c (D x n blocks; out may alias base).
template <class T>
void column_combine(index_t D, index_t n, const double* dt, bool scale_base, double w_base,
                    const T* base, int count, const double* w, const T* const* vec,
                    std::vector<T>& coef, T* out) {
  const T* used[EmbeddedTableau::max_stages + 1];
  int m = 0;
  coef.resize(std::size_t((count + 1) * n));
  for (int c = 0; c < count; ++c) {
    if (w[c] == 0.0) continue;
    for (index_t s = 0; s < n; ++s) coef[std::size_t(m * n + s)] = T(dt[s] * w[c]);
    used[m++] = vec[c];
  }
  T* base_coef = coef.data() + m * n;
  if (scale_base)
    for (index_t s = 0; s < n; ++s) base_coef[s] = T(dt[s] * w_base);
  for (index_t d = 0; d < D; ++d) {
    T* o = out + d * n;
    const T* b = base + d * n;
    if (scale_base)
      for (index_t s = 0; s < n; ++s) o[s] = base_coef[s] * b[s];
    else if (o != b)
      std::copy(b, b + n, o);
    for (int c = 0; c < m; ++c) {
      const T* v = used[c] + d * n;
      const T* cf = coef.data() + c * n;
      for (index_t s = 0; s < n; ++s) o[s] += cf[s] * v[s];
    }
  }
}

// The interpolant of column s: out (D) = x + sum_i T(dt bt_i(theta)) K_i (docs/guide/adaptive.md).
template <class T>
void interpolate_column(const EmbeddedTableau& tab, int stages, index_t D, index_t n, index_t s,
                        const T* x, const T* const* K, double dt, double theta, T* out) {
  T c[EmbeddedTableau::max_stages];
  for (int i = 0; i < stages; ++i) c[i] = T(dt * tab.interpolant(i, theta));
  for (index_t d = 0; d < D; ++d) {
    T acc = x[d * n + s];
    for (int i = 0; i < stages; ++i) acc += c[i] * K[i][d * n + s];
    out[d] = acc;
  }
}

// E_s = rms_d( err_d / (atol + rtol max(|x_d|, |x_new_d|)) ),  err = sum_i T(dt_s e_i) K_i
// (in the state's dtype, like the stages; the norm in float64). A trial state x_new with a
// component that is not finite gives E = NaN (a rejection): its own term would be 0 (err over
// an infinite scale) and the overflow would be accepted.
template <class T>
void error_norms(const EmbeddedTableau& tab, index_t D, index_t n, const T* x, const T* xnew,
                 const T* const* K, const double* dt, double rtol, double atol, double* E) {
  std::fill(E, E + n, 0.0);
  for (index_t d = 0; d < D; ++d)
    for (index_t s = 0; s < n; ++s) {
      T acc = T(0);
      for (int i = 0; i < tab.stages; ++i)
        if (tab.e[i] != 0.0) acc += T(dt[s] * tab.e[i]) * K[i][d * n + s];
      const double err = double(acc);
      const double a = std::abs(double(x[d * n + s])), b = std::abs(double(xnew[d * n + s]));
      const double r = std::isfinite(b) ? err / (atol + rtol * std::max(a, b)) : NAN;
      E[s] += r * r;
    }
  for (index_t s = 0; s < n; ++s) E[s] = std::sqrt(E[s] / double(D));
}

// rms over the D components of column s of v / sc.
template <class T>
double scaled_rms(index_t D, index_t n, index_t s, const T* v, const double* sc) {
  double sum = 0.0;
  for (index_t d = 0; d < D; ++d) {
    const double r = double(v[d * n + s]) / sc[d];
    sum += r * r;
  }
  return std::sqrt(sum / double(D));
}

// One block's buffers for the adaptive forward run: the state x, the stages (X_0 aliases x,
// X_{s-1} is the trial state x_new) and the per-column controller state.
template <class T>
struct AdaptiveWork {
  AdaptiveWork(const FieldParams<T>& f, int stages, index_t capacity)
      : memory(f.D * capacity + StepStages<T>::size(f, stages, capacity)) {
    x = memory.data();
    st = StepStages<T>::carve(f, stages, capacity, x + f.D * capacity);
    for (auto* v : {&t, &t_new, &h, &dt, &E, &E_own, &E_rejected, &E_last})
      v->assign(std::size_t(capacity), 0.0);
    control.assign(std::size_t(capacity), StepController{});
    active.assign(std::size_t(capacity), 0);
    bad_trial.assign(std::size_t(capacity), 0);
    attempts.assign(std::size_t(capacity), 0);
    slot_dt.assign(std::size_t(capacity), 0.0);
    slot_sample.assign(std::size_t(capacity), 0);
    parked.assign(std::size_t(f.D * capacity), T(0));
  }
  Buffer<T> memory;
  T* x;
  StepStages<T> st;
  // Compaction (adaptive_block): the block's columns in use are its first `width`; column j
  // holds sample slot_sample[j] (block-local, in increasing order) and steps with slot_dt[j]
  // (0: idles). The states of the samples dropped from the columns wait in `parked` (D x n,
  // column s: sample s) until the piece ends.
  index_t width = 0;
  std::vector<double> slot_dt;
  std::vector<index_t> slot_sample;
  std::vector<T> parked;
  // E: the norm the controller sees (batch control: the max over the samples); E_own: each
  // sample's own norm of the last attempt, E_rejected: of the last rejected one (it names the
  // sample of a batch failure). bad_trial: the last rejected attempt's E_own was not finite.
  std::vector<double> t, t_new, h, dt, E, E_own, E_rejected, E_last;
  std::vector<StepController> control;
  std::vector<char> active, bad_trial;
  std::vector<index_t> attempts;
  std::vector<T> coef, z;  // z: the block's logits (classes x capacity), when asked for
};

// The first failure of a block (sample < 0: none). non_finite: the sample's last rejected
// trial step had a non-finite error (its trial state or error estimate overflowed).
struct Failure {
  long sample = -1;
  bool non_finite = false, max_steps = false;
  double t = 0, dt = 0, error = 0;
  bool backward = false;  // in the backward run of the adjoint (t runs from T to 0)
};

// The column a batch failure names: the first whose last rejected trial overflowed, else the
// one of the largest own error norm in the last rejected attempt (the one that forced the
// rejections), else `fallback`.
inline index_t blamed_column(index_t real, const std::vector<char>& bad_trial,
                             const std::vector<double>& E_rejected, index_t fallback) {
  for (index_t s = 0; s < real; ++s)
    if (bad_trial[std::size_t(s)]) return s;
  index_t worst = fallback;
  for (index_t s = 0; s < real; ++s)
    if (E_rejected[std::size_t(s)] > E_rejected[std::size_t(worst)]) worst = s;
  return worst;
}

// The stages of a step of the columns in use, each with its slot_dt (K_0 = f_k(x) on entry):
// X_i, K_i, i >= 1.
template <class Act, class T>
void adaptive_stages(const AdaptiveProblem<T>& ap, index_t k, AdaptiveWork<T>& w) {
  const auto& f = ap.pb->dyn.field;
  const auto& tab = ap.tab;
  const index_t m = w.width;
  for (int i = 1; i < tab.stages; ++i) {
    column_combine(f.D, m, w.slot_dt.data(), false, 1.0, w.x, i, tab.a[i], w.st.K, w.coef,
                   w.st.X[i]);
    field_eval<Act>(f, k, m, w.st.X[i], w.st.K[i], w.st.cache[i]);
  }
}

// Compaction of the forward run. A sample that ends its piece before the others of its block
// would idle (dt = 0) in every later iteration of the piece, costing as much as a running one:
// the seed data leaves 58% of the accepted-step columns idle, one stiff sample in a block of
// 168 84%. So the running samples are moved to the front, in order, and the steps evaluate the
// first `width` columns only, whole 64-byte vectors (the kernels' full-width path, as every block
// width is). A column's arithmetic does not depend on its position nor on the width, so each
// sample's steps stay bitwise those it takes alone or in any batch.

// Column s of a D x n block into column `to` of a D x m one (out of place).
template <class T>
void copy_column(index_t D, index_t n, index_t s, const T* from, index_t m, index_t to, T* into) {
  for (index_t d = 0; d < D; ++d) into[d * m + to] = from[d * n + s];
}

// a (D x m) becomes the D x kept block of its columns from[0] < from[1] < ..., in place (each
// element moves to a lower or equal index, visited in increasing order).
template <class T>
void keep_columns(index_t D, index_t m, const std::vector<index_t>& from, T* a) {
  const index_t kept = index_t(from.size());
  for (index_t d = 0; d < D; ++d)
    for (index_t j = 0; j < kept; ++j) a[d * kept + j] = a[d * m + from[std::size_t(j)]];
}

// The block's own layout (column s: sample s, all n columns): at the start of a run and at the
// end of every piece (the next one starts with every sample, and with f_k(x) on all of them).
template <class T>
void restore_columns(index_t D, index_t n, AdaptiveWork<T>& w) {
  if (w.width == n) return;  // never compacted: already in its own layout
  for (index_t j = 0; j < w.width; ++j)
    copy_column(D, w.width, j, w.x, n, w.slot_sample[std::size_t(j)], w.parked.data());
  std::copy(w.parked.begin(), w.parked.begin() + D * n, w.x);
  w.width = n;
  for (index_t s = 0; s < n; ++s) w.slot_sample[std::size_t(s)] = s;
}

// Drops finished samples from the columns in use when a whole vector of them can go: the running
// samples stay, in order, with as many finished ones as fill the last vector; the dropped ones'
// states are parked. The state x and the FSAL stage K_0 move; the other stages are recomputed.
template <class T>
void compact_columns(index_t D, index_t n, index_t real, index_t running, AdaptiveWork<T>& w) {
  constexpr index_t lanes = BlockPlan<T>::pad;
  const index_t m = w.width, kept = (running + lanes - 1) / lanes * lanes;
  if (running == 0 || kept >= m) return;
  std::vector<index_t> from;
  index_t fillers = kept - running;
  for (index_t j = 0; j < m; ++j) {
    const index_t s = w.slot_sample[std::size_t(j)];
    if (s < real && w.active[std::size_t(s)]) {
      from.push_back(j);
    } else if (fillers > 0) {
      from.push_back(j), --fillers;
    } else {
      copy_column(D, m, j, w.x, n, s, w.parked.data());
    }
  }
  keep_columns(D, m, from, w.x);
  keep_columns(D, m, from, w.st.K[0]);
  for (index_t j = 0; j < kept; ++j)
    w.slot_sample[std::size_t(j)] = w.slot_sample[std::size_t(from[std::size_t(j)])];
  w.width = kept;
}

// Hairer's starting step for every column (docs/guide/adaptive.md); K_0 = f_0(x_0) on exit.
template <class Act, class T>
void starting_steps(const AdaptiveProblem<T>& ap, index_t n, AdaptiveWork<T>& w) {
  const auto& f = ap.pb->dyn.field;
  const index_t D = f.D;
  field_eval<Act>(f, 0, n, w.x, w.st.K[0], w.st.cache[0]);
  std::vector<double> sc(static_cast<std::size_t>(D)), h0(static_cast<std::size_t>(n)), d1s(static_cast<std::size_t>(n));
  for (index_t s = 0; s < n; ++s) {
    for (index_t d = 0; d < D; ++d)
      sc[d] = ap.opt.atol + ap.opt.rtol * std::abs(double(w.x[d * n + s]));
    const double d0 = scaled_rms(D, n, s, w.x, sc.data());
    const double d1 = scaled_rms(D, n, s, w.st.K[0], sc.data());
    h0[s] = (d0 < 1e-5 || d1 < 1e-5) ? 1e-6 : 0.01 * d0 / d1;
    d1s[s] = d1;
  }
  // x1 = x0 + h0 f0 (in X_1), f(x1) (in K_1)
  const double one = 1.0;
  const T* f0[1] = {w.st.K[0]};
  column_combine(D, n, h0.data(), false, 1.0, w.x, 1, &one, f0, w.coef, w.st.X[1]);
  field_eval<Act>(f, 0, n, w.st.X[1], w.st.K[1], w.st.cache[1]);
  std::vector<double> diff(static_cast<std::size_t>(D));
  for (index_t s = 0; s < n; ++s) {
    double sum = 0.0;
    for (index_t d = 0; d < D; ++d) {
      const double scd = ap.opt.atol + ap.opt.rtol * std::abs(double(w.x[d * n + s]));
      const double r = (double(w.st.K[1][d * n + s]) - double(w.st.K[0][d * n + s])) / scd;
      sum += r * r;
    }
    const double d2 = std::sqrt(sum / double(D)) / h0[s];
    const double dmax = std::max(d1s[s], d2);
    const double h1 = dmax <= 1e-15 ? std::max(1e-6, h0[s] * 1e-3)
                                    : std::pow(0.01 / dmax, 1.0 / ap.tab.error_order_k);
    w.h[s] = std::min(100.0 * h0[s], h1);
  }
}

// Copies column s of a D x n block into row `row` of a row-major (rows, D) array.
template <class T>
void column_to_row(index_t D, index_t n, index_t s, const T* x, T* row) {
  for (index_t d = 0; d < D; ++d) row[d] = x[d * n + s];
}

// The adaptive forward run of one block (with `batch`, one step sequence for all its columns).
// Writes the final states (rows of final_out, if not null), dense outputs at ap.times into
// dense_out (n_times, N, D), and each real column's record.
template <class Act, class T>
Failure adaptive_block(const AdaptiveProblem<T>& ap, const Block& blk, bool batch,
                       AdaptiveWork<T>& w, SampleRecord* records, T* final_out, T* dense_out) {
  const Problem<T>& pb = *ap.pb;
  const auto& f = pb.dyn.field;
  const auto& tab = ap.tab;
  const index_t D = f.D, n = blk.n, real = blk.real, N = pb.N;
  const int s_last = tab.stages - 1;
  constexpr double eps = std::numeric_limits<double>::epsilon();
  Failure fail;
  load_initial_state(pb, blk, w.x);
  std::vector<index_t> next_out(std::size_t(n), 0);
  for (index_t s = 0; s < real; ++s) {
    auto& r = records[blk.first + s];
    r = SampleRecord{};
    r.grid.push_back(0.0);
    w.t[s] = 0.0, w.E_last[s] = 0.0, w.E_own[s] = 0.0, w.E_rejected[s] = 0.0;
    w.attempts[s] = 0, w.bad_trial[s] = 0;
    w.control[s] = StepController{double(tab.error_order_k)};
    while (next_out[s] < ap.n_times && ap.times[next_out[s]] <= 0.0) {  // x(0) = x_0
      column_to_row(D, n, s, w.x, dense_out + (next_out[s] * N + blk.first + s) * D);
      ++next_out[s];
    }
  }
  const bool heuristic = ap.opt.first_step <= 0.0;
  if (heuristic) {
    starting_steps<Act>(ap, n, w);
    for (index_t s = 0; s < real; ++s) records[blk.first + s].nfev += 2;
    if (batch) {
      const double h = *std::min_element(w.h.begin(), w.h.begin() + real);
      std::fill(w.h.begin(), w.h.end(), h);
    }
  } else {
    std::fill(w.h.begin(), w.h.end(), ap.opt.first_step);
  }
  auto fail_at = [&](index_t s, bool max_steps) {
    if (batch) s = blamed_column(real, w.bad_trial, w.E_rejected, s);
    fail.sample = long(blk.first + s);
    fail.non_finite = w.bad_trial[s];
    fail.max_steps = max_steps;
    fail.t = w.t[s], fail.dt = w.dt[s], fail.error = w.E_last[s];
    return fail;
  };
  w.width = n;  // the block's own layout (see compact_columns)
  for (index_t s = 0; s < n; ++s) w.slot_sample[std::size_t(s)] = s;
  for (index_t piece = 0; piece < ap.pieces(); ++piece) {
    const double t_end = ap.boundary(piece + 1);
    if (piece > 0 || !heuristic) {  // the field changed: a new first stage (no FSAL)
      field_eval<Act>(f, piece, n, w.x, w.st.K[0], w.st.cache[0]);
      for (index_t s = 0; s < real; ++s) records[blk.first + s].nfev += 1;
    }
    std::fill(w.active.begin(), w.active.begin() + real, 1);
    std::fill(w.active.begin() + real, w.active.end(), 0);
    index_t running = real;
    while (running > 0) {
      const index_t m = w.width;  // column j: sample w.slot_sample[j]
      for (index_t j = 0; j < m; ++j) {
        const index_t s = w.slot_sample[std::size_t(j)];
        w.slot_dt[j] = 0.0;  // idles in this step unless it runs
        if (!w.active[s]) continue;
        if (w.attempts[s] >= ap.opt.max_steps) return fail_at(s, true);  // dt: the last one
        w.t_new[s] = landing(w.t[s], w.h[s], t_end);
        w.dt[s] = w.slot_dt[j] = w.t_new[s] - w.t[s];
        if (!(w.dt[s] > 4.0 * eps * std::abs(w.t_new[s]))) return fail_at(s, false);
      }
      adaptive_stages<Act>(ap, piece, w);
      const T* xnew = w.st.X[s_last];
      error_norms(tab, D, m, w.x, xnew, w.st.K, w.slot_dt.data(), ap.opt.rtol, ap.opt.atol,
                  w.E.data());
      for (index_t j = 0; j < m; ++j) {
        const index_t s = w.slot_sample[std::size_t(j)];
        if (s < real) w.E_own[s] = w.E[j];
      }
      if (batch) {  // one error for all: the max over the samples (NaN wins)
        double worst = 0.0;
        for (index_t j = 0; j < m; ++j)
          if (w.slot_sample[std::size_t(j)] < real)
            worst = std::isnan(w.E[j]) || std::isnan(worst) ? NAN : std::max(worst, w.E[j]);
        std::fill(w.E.begin(), w.E.begin() + m, worst);
      }
      for (index_t j = 0; j < m; ++j) {
        const index_t s = w.slot_sample[std::size_t(j)];
        if (!w.active[s]) continue;
        auto& rec = records[blk.first + s];
        ++w.attempts[s];
        rec.nfev += tab.stages - 1;
        const double E = w.E[j];
        w.E_last[s] = E;
        if (w.control[s].update(E, w.dt[s], w.h[s])) {  // accepted; h: the next step
          while (next_out[s] < ap.n_times && ap.times[next_out[s]] <= w.t_new[s]) {
            T* row = dense_out + (next_out[s] * N + blk.first + s) * D;
            const double tau = ap.times[next_out[s]];
            if (tau == w.t_new[s])
              column_to_row(D, m, j, xnew, row);
            else
              interpolate_column(tab, tab.stages, D, m, j, w.x, w.st.K, w.dt[s],
                                 (tau - w.t[s]) / w.dt[s], row);
            ++next_out[s];
          }
          for (index_t d = 0; d < D; ++d) {
            w.x[d * m + j] = xnew[d * m + j];
            w.st.K[0][d * m + j] = w.st.K[s_last][d * m + j];  // FSAL
          }
          w.t[s] = w.t_new[s];
          ++rec.accepted;
          rec.grid.push_back(w.t[s]);
          if (w.t[s] == t_end) w.active[s] = 0, --running;
        } else {  // rejected
          w.E_rejected[s] = w.E_own[s];
          w.bad_trial[s] = !std::isfinite(w.E_own[s]);
          ++rec.rejected;
        }
      }
      compact_columns(D, n, real, running, w);
    }
    restore_columns(D, n, w);
  }
  if (final_out) store_rows(blk, D, w.x, final_out);
  return fail;
}

// Throws the failure of the lowest sample index, if any: NonFiniteError when that sample's
// last rejected trial step overflowed (docs/guide/adaptive.md, Failures), else StepSizeError.
inline void raise_failure(const std::vector<Failure>& failures) {
  const Failure* first = nullptr;
  for (const auto& f : failures)
    if (f.sample >= 0 && (!first || f.sample < first->sample)) first = &f;
  if (!first) return;
  std::ostringstream msg;
  msg.precision(17);
  const char* run = first->backward ? " (in the adjoint's backward run)" : "";
  const char* reason =
      first->max_steps
          ? (first->backward ? "max_steps steps (accepted and rejected) did not reach 0"
                             : "max_steps steps (accepted and rejected) did not reach T")
          : "the step fell below the floating-point resolution of t";
  if (first->non_finite) {
    msg << "the state of sample " << first->sample << " became non-finite (NaN or Inf) at t = "
        << first->t << run << ": " << reason
        << ", its last rejected trial step overflowed (last step size dt = " << first->dt
        << "); reduce the step size, the weights or the inputs";
    throw non_finite_error(msg.str(), -1, first->t);
  }
  msg << "the adaptive step size failed for sample " << first->sample << " at t = " << first->t
      << run << ": " << reason
      << "; last step size dt = " << first->dt << ", its error estimate " << first->error
      << " (1 = the tolerance); loosen rtol/atol, raise max_steps, or check the field for "
         "stiffness";
  throw step_size_error(msg.str(), first->sample, first->t, first->dt, first->error);
}

// Throws NonFiniteError if an output is not finite: the final states (N, D) or the dense
// outputs (n_times, N, D) at ap.times (an interpolant may overflow between finite states).
template <class T>
void raise_if_outputs_non_finite(const AdaptiveProblem<T>& ap, const T* final_out,
                                 const T* dense_out) {
  const index_t slice = ap.pb->N * ap.pb->dyn.field.D;
  if (final_out && !all_finite(slice, final_out))
    throw non_finite_error("the final state is not finite (NaN or Inf)", -1, ap.T_end);
  for (index_t q = 0; dense_out && q < ap.n_times; ++q)
    if (!all_finite(slice, dense_out + q * slice)) {
      std::ostringstream msg;
      msg.precision(17);
      msg << "the dense output at t = " << ap.times[q]
          << " is not finite (NaN or Inf): the interpolant overflowed";
      throw non_finite_error(msg.str(), -1, ap.times[q]);
    }
}

// The per-column steps of a block on given grids, piece by piece (see the top of this file):
// iteration j of the block runs in piece[j]; column s steps from t0 to t1 with dt (0: idles).
struct Schedule {
  index_t n = 0, iterations = 0;
  bool fixed = false;  // the fixed-step grid: every real column steps with the Dynamics' dt
  std::vector<index_t> piece;
  std::vector<double> dt, t0, t1;  // iterations x n
  double* dt_of(index_t j) { return dt.data() + j * n; }
  const double* dt_of(index_t j) const { return dt.data() + j * n; }
};

// The schedule of a block's real columns on their accepted grids (grids[sample]).
template <class T>
Schedule grid_schedule(const AdaptiveProblem<T>& ap, const Block& blk,
                       const std::vector<std::vector<double>>& grids) {
  Schedule sc;
  sc.n = blk.n;
  std::vector<std::size_t> at(std::size_t(blk.n), 0);
  for (index_t piece = 0; piece < ap.pieces(); ++piece) {
    const double t_end = ap.boundary(piece + 1);
    std::vector<index_t> count(std::size_t(blk.n), 0);
    index_t most = 0;
    for (index_t s = 0; s < blk.real; ++s) {
      const auto& g = grids[std::size_t(blk.first + s)];
      while (at[s] + count[s] + 1 < g.size() && g[at[s] + count[s] + 1] <= t_end) ++count[s];
      most = std::max(most, count[s]);
    }
    for (index_t i = 0; i < most; ++i) {
      sc.piece.push_back(piece);
      for (index_t s = 0; s < blk.n; ++s) {
        double t0 = 0, t1 = 0;
        if (s < blk.real && i < count[s]) {
          const auto& g = grids[std::size_t(blk.first + s)];
          t0 = g[at[s] + i], t1 = g[at[s] + i + 1];
        }
        sc.t0.push_back(t0), sc.t1.push_back(t1), sc.dt.push_back(t1 - t0);
      }
    }
    for (index_t s = 0; s < blk.real; ++s) at[s] += count[s];
    sc.iterations += most;
  }
  return sc;
}

// The fixed-step schedule (steps = pieces * substeps of size dt, t_j = (T j) / steps).
template <class T>
Schedule fixed_schedule(const AdaptiveProblem<T>& ap, const Block& blk) {
  Schedule sc;
  sc.n = blk.n;
  sc.fixed = true;
  const auto& dyn = ap.pb->dyn;
  const index_t steps = dyn.steps();
  sc.iterations = steps;
  for (index_t j = 0; j < steps; ++j) {
    sc.piece.push_back(dyn.piece(j));
    const double t0 = (ap.T_end * double(j)) / double(steps);
    const double t1 = j + 1 == steps ? ap.T_end : (ap.T_end * double(j + 1)) / double(steps);
    for (index_t s = 0; s < blk.n; ++s) {
      const bool real = s < blk.real;
      sc.t0.push_back(t0), sc.t1.push_back(t1), sc.dt.push_back(real ? double(dyn.dt) : 0.0);
    }
  }
  return sc;
}

// A dense output of a block: output q of column s at step `iteration` (-1: x_0), either the
// step's end state (at_end) or its interpolant at theta.
struct OutputEvent {
  index_t iteration, column, q;
  bool at_end;
  double theta;
};

// The outputs of the block's real columns, ordered by iteration.
template <class T>
std::vector<OutputEvent> output_events(const AdaptiveProblem<T>& ap, const Block& blk,
                                       const Schedule& sc) {
  std::vector<OutputEvent> events;
  for (index_t s = 0; s < blk.real; ++s) {
    index_t q = 0;
    while (q < ap.n_times && ap.times[q] <= 0.0) events.push_back({-1, s, q++, true, 0.0});
    for (index_t j = 0; j < sc.iterations && q < ap.n_times; ++j) {
      const index_t i = j * sc.n + s;
      if (sc.dt[i] == 0.0) continue;
      while (q < ap.n_times && ap.times[q] <= sc.t1[i]) {
        const double tau = ap.times[q];
        events.push_back({j, s, q++, tau == sc.t1[i], (tau - sc.t0[i]) / sc.dt[i]});
      }
    }
  }
  std::stable_sort(events.begin(), events.end(),
                   [](const OutputEvent& a, const OutputEvent& b) {
                     return a.iteration < b.iteration;
                   });
  return events;
}

// The default tape of a replay's reverse sweep, per thread (see replay_sweep).
constexpr double replay_tape_bytes = 6.0 * 1024 * 1024;

// The tape of a replay: (segment + 1) slots of (state, its compacted columns, stages) and
// checkpoint states.
template <class T>
struct ReplayWork {
  ReplayWork(const FieldParams<T>& f, int stages, index_t capacity, index_t classes)
      : reverse(f, stages, capacity), stages(stages), capacity(capacity),
        len(f.D * capacity), stage_len(StepStages<T>::size(f, stages, capacity)),
        slot(len + stage_len) {
    const index_t zlen = std::max<index_t>(classes, 1) * capacity;
    small = Buffer<T>(3 * len + 2 * zlen + index_t(stages) * len);
    T* p = small.data();
    cur = p, p += len;
    xbar = p, p += len;
    tmp = p, p += len;
    z = p, p += zlen;
    zbar = p, p += zlen;
    for (int i = 0; i < stages; ++i) extra[i] = p, p += len;
  }
  // Sizes the tape for `slots` slots and `checkpoints` checkpoint states.
  void reserve(const FieldParams<T>& f, index_t slots, index_t checkpoints) {
    const index_t need = slots * slot + checkpoints * len;
    if (tape_size < need) tape = Buffer<T>(need), tape_size = need;  // pooled, not zeroed
    checkpoint_states = tape.data() + slots * slot;
    field = &f;
  }
  T* slot_state(index_t j) { return tape.data() + j * slot; }
  // Step j's state on its compacted columns (replay_compact_step), stage 0 of its stages.
  T* slot_compact(index_t j) { return slot_state(j) + len; }
  StepStages<T> slot_stages(index_t j) {
    return StepStages<T>::carve(*field, stages, capacity, slot_state(j) + slot - stage_len);
  }
  ReverseWork<T> reverse;
  int stages;
  index_t capacity, len, stage_len;
  // A slot's elements: the state, its compacted copy where a step of the block is compacted
  // (only then: a longer slot means shorter tape segments), the stages.
  index_t slot;
  void use_compact_slots(bool compact) { slot = (compact ? 2 * len : len) + stage_len; }
  const FieldParams<T>* field = nullptr;
  Buffer<T> tape;
  index_t tape_size = 0;
  T* checkpoint_states = nullptr;
  Buffer<T> small;
  T *cur, *xbar, *tmp, *z, *zbar;
  T* extra[EmbeddedTableau::max_stages] = {};
  std::vector<T> coef;
  std::vector<double> dt;  // the step sizes of the compacted columns
};

// A step of n columns with step sizes dt in piece k: stages from x (used stages only) and
// x_next = x + sum_i T(dt b_i) K_i.
template <class Act, class T>
void replay_columns(const AdaptiveProblem<T>& ap, index_t k, index_t n, const double* dt,
                    int used, const T* x, T* x_next, StepStages<T>& st, std::vector<T>& coef) {
  const auto& f = ap.pb->dyn.field;
  const auto& tab = ap.tab;
  st.X[0] = const_cast<T*>(x);  // read-only alias of the state
  for (int i = 0; i < used; ++i) {
    if (i > 0) column_combine(f.D, n, dt, false, 1.0, x, i, tab.a[i], st.K, coef, st.X[i]);
    field_eval<Act>(f, k, n, st.X[i], st.K[i], st.cache[i]);
  }
  column_combine(f.D, n, dt, false, 1.0, x, tab.solution_stages(), tab.b, st.K, coef, x_next);
}

// One replayed step j: stages from x (used stages only) and x_next = x + sum_i T(dt b_i) K_i.
// On the fixed-step grid the step is the sweeps' rk_step, so that the states (and the dense
// output at the step times) are bitwise those of the trajectory; the appended stage of the
// Hermite interpolant is then f_k(x_next) itself.
template <class Act, class T>
void replay_step(const AdaptiveProblem<T>& ap, const Schedule& sc, index_t j, int used,
                 const T* x, T* x_next, StepStages<T>& st, std::vector<T>& coef) {
  const auto& f = ap.pb->dyn.field;
  const index_t n = sc.n, k = sc.piece[std::size_t(j)];
  const double* dt = sc.dt_of(j);
  if (sc.fixed) {
    rk_step<Act>(ap.pb->dyn, j, n, x, x_next, st);
    const int last = ap.pb->dyn.tab.stages;  // the appended stage, when used
    if (used > last) {
      std::copy(x_next, x_next + f.D * n, st.X[last]);
      field_eval<Act>(f, k, n, st.X[last], st.K[last], st.cache[last]);
    }
    return;
  }
  replay_columns<Act>(ap, k, n, dt, used, x, x_next, st, coef);
}

// Reverse of replay_step j: xbar (cotangent of x_{j+1}) becomes that of x_j; `extra` holds
// cotangents added to the stage derivatives by dense outputs (when has_extra).
//   kbar_i = T(dt b_i) xbar + sum_{m>i} T(dt a_mi) Y_m (+ extra_i),  Y_i = J_i^T kbar_i,
//   grads += (df/dtheta)_i^T kbar_i,  xbar_j = xbar + sum_i Y_i
template <class Act, class T>
void replay_columns_vjp(const AdaptiveProblem<T>& ap, index_t k, index_t n, const double* dt,
                        int used, index_t real, const StepStages<T>& st, bool has_extra, T* xbar,
                        T* grads, ReplayWork<T>& w) {
  const auto& f = ap.pb->dyn.field;
  const auto& tab = ap.tab;
  ReverseWork<T>& rw = w.reverse;
  for (int i = used - 1; i >= 0; --i) {
    double a_later[EmbeddedTableau::max_stages];
    const T* Y_later[EmbeddedTableau::max_stages];
    int count = 0;
    for (int m = i + 1; m < used; ++m) a_later[count] = tab.a[m][i], Y_later[count++] = rw.Y[m];
    column_combine(f.D, n, dt, true, tab.b[i], xbar, count, a_later, Y_later, w.coef, rw.kbar);
    if (has_extra)
      for (index_t e = 0; e < f.D * n; ++e) rw.kbar[e] += w.extra[i][e];
    field_vjp<Act>(f, k, n, real, st.X[i], st.K[i], st.cache[i], rw.kbar, rw.Y[i], grads, T(1),
                   rw.scratch);
  }
  for (int i = 0; i < used; ++i)
    for (index_t e = 0; e < f.D * n; ++e) xbar[e] += rw.Y[i][e];
}

template <class Act, class T>
void replay_step_vjp(const AdaptiveProblem<T>& ap, const Schedule& sc, index_t j, int used,
                     index_t real, const StepStages<T>& st, bool has_extra, T* xbar, T* grads,
                     ReplayWork<T>& w) {
  replay_columns_vjp<Act>(ap, sc.piece[std::size_t(j)], sc.n, sc.dt_of(j), used, real, st,
                          has_extra, xbar, grads, w);
}


// Compaction of the replay (compact_columns is the forward run's): a step whose active columns
// (dt != 0) fit in fewer whole vectors than the block has runs on them alone, gathered in order
// into the first `count` columns of a D x width block (width: count rounded up to whole 64-byte
// vectors; the others are zero columns that idle and add nothing to the parameter gradients).
// An idle column's state and cotangent pass a step unchanged (x + 0 and xbar + 0 in the block),
// so each sample's arithmetic is the one it has in the whole block.
struct ReplayColumns {
  std::vector<index_t> begin{0};  // step j's active columns: cols[begin[j], begin[j + 1])
  std::vector<index_t> cols;
  std::vector<index_t> width;  // per step; 0: the step runs on the whole block
  index_t count(index_t j) const { return begin[std::size_t(j + 1)] - begin[std::size_t(j)]; }
  const index_t* of(index_t j) const { return cols.data() + begin[std::size_t(j)]; }
};

// The compacted steps of a block's schedule (none with compact = false).
template <class T>
ReplayColumns replay_columns_of(const Schedule& sc, index_t real, bool compact) {
  ReplayColumns rc;
  for (index_t j = 0; j < sc.iterations; ++j) {
    index_t width = 0;
    if (compact) {
      const double* dt = sc.dt_of(j);
      width = BlockPlan<T>::round_up(index_t(std::count_if(dt, dt + real, [](double h) {
        return h != 0.0;
      })));
      if (width >= sc.n) width = 0;
      for (index_t s = 0; width > 0 && s < real; ++s)
        if (dt[s] != 0.0) rc.cols.push_back(s);
    }
    rc.width.push_back(width);
    rc.begin.push_back(index_t(rc.cols.size()));
  }
  return rc;
}

// The step sizes of step j's compacted columns into w.dt, and v's (D x n) columns into a D x
// width block c (zero columns after the active ones).
template <class T>
void gather_columns(const Schedule& sc, const ReplayColumns& rc, index_t j, index_t D,
                    const T* v, T* c, ReplayWork<T>& w) {
  const index_t n = sc.n, m = rc.width[std::size_t(j)], count = rc.count(j);
  const index_t* cols = rc.of(j);
  w.dt.assign(std::size_t(m), 0.0);
  for (index_t i = 0; i < count; ++i) w.dt[std::size_t(i)] = sc.dt_of(j)[cols[i]];
  for (index_t d = 0; d < D; ++d) {
    for (index_t i = 0; i < count; ++i) c[d * m + i] = v[d * n + cols[i]];
    std::fill(c + d * m + count, c + (d + 1) * m, T(0));
  }
}

// The active columns of c (D x width) back into v (D x n).
template <class T>
void scatter_columns(const Schedule& sc, const ReplayColumns& rc, index_t j, index_t D,
                     const T* c, T* v) {
  const index_t n = sc.n, m = rc.width[std::size_t(j)], count = rc.count(j);
  const index_t* cols = rc.of(j);
  for (index_t d = 0; d < D; ++d)
    for (index_t i = 0; i < count; ++i) v[d * n + cols[i]] = c[d * m + i];
}

// replay_step j on its compacted columns: xc (D x width, stage 0 of st) from x, and x_next = x
// with the active columns stepped.
template <class Act, class T>
void replay_compact_step(const AdaptiveProblem<T>& ap, const Schedule& sc,
                         const ReplayColumns& rc, index_t j, int used, const T* x, T* xc,
                         T* x_next, StepStages<T>& st, ReplayWork<T>& w) {
  const index_t D = ap.pb->dyn.field.D;
  gather_columns(sc, rc, j, D, x, xc, w);
  replay_columns<Act>(ap, sc.piece[std::size_t(j)], rc.width[std::size_t(j)], w.dt.data(), used,
                      xc, w.tmp, st, w.coef);
  std::copy(x, x + D * sc.n, x_next);
  scatter_columns(sc, rc, j, D, w.tmp, x_next);
}

// replay_step_vjp j on its compacted columns (the stages of replay_compact_step).
template <class Act, class T>
void replay_compact_step_vjp(const AdaptiveProblem<T>& ap, const Schedule& sc,
                             const ReplayColumns& rc, index_t j, int used, const StepStages<T>& st,
                             T* xbar, T* grads, ReplayWork<T>& w) {
  const index_t D = ap.pb->dyn.field.D;
  gather_columns(sc, rc, j, D, xbar, w.tmp, w);
  replay_columns_vjp<Act>(ap, sc.piece[std::size_t(j)], rc.width[std::size_t(j)], w.dt.data(),
                          used, rc.count(j), st, false, w.tmp, grads, w);
  scatter_columns(sc, rc, j, D, w.tmp, xbar);
}
}  // namespace detail

// The adaptive forward run over all samples: final states (N, D) into final_out (if not null),
// dense outputs (n_times, N, D) into dense_out, the logits of the final states (N, classes)
// into logits_out (if not null), and a record per sample.
template <class T>
void adaptive_solve(const AdaptiveProblem<T>& ap, Same<T>* final_out, Same<T>* dense_out,
                    std::vector<SampleRecord>& records, Same<T>* logits_out = nullptr) {
  const Problem<T>& pb = *ap.pb;
  records.assign(std::size_t(pb.N), SampleRecord{});
  const bool batch = ap.opt.control == StepControl::batch;
  detail::BlockPlan<T> plan(pb);
  // Batch control: one block of every sample (its error is the max over all of them).
  const index_t count = batch ? 1 : plan.count;
  const index_t capacity = batch ? detail::BlockPlan<T>::round_up(pb.N) : plan.rows;
  const int threads = batch ? 1 : plan.threads;
  std::vector<std::unique_ptr<detail::AdaptiveWork<T>>> work(static_cast<std::size_t>(threads));
  std::vector<detail::Failure> failures(static_cast<std::size_t>(count));
  std::vector<char> overflow(static_cast<std::size_t>(count), 0);  // per block: logits not finite
  with_activation(pb.dyn.activation, [&](auto act) {
    using Act = decltype(act);
    parallel_for(count, threads, [&](int t, index_t b) {
      if (!work[t])
        work[t] = std::make_unique<detail::AdaptiveWork<T>>(pb.dyn.field, ap.tab.stages, capacity);
      const detail::Block blk =
          batch ? detail::Block{0, pb.N, capacity} : plan.block(pb, b);
      auto& w = *work[t];
      failures[b] = detail::adaptive_block<Act>(ap, blk, batch, w, records.data(), final_out,
                                                dense_out);
      if (!logits_out || failures[b].sample >= 0) return;
      const index_t C = pb.readout.classes;
      w.z.resize(std::size_t(C * blk.n));
      readout(pb.readout, blk.n, pb.dyn.field.D, w.x, w.z.data());
      overflow[std::size_t(b)] = !all_finite(C * blk.n, w.z.data());
      detail::store_rows(blk, C, w.z.data(), logits_out);
    });
  });
  detail::raise_failure(failures);
  detail::raise_if_outputs_non_finite(ap, static_cast<const T*>(final_out),
                                      static_cast<const T*>(dense_out));
  detail::raise_if_readout_overflowed(pb, overflow);
}

// A replay on given grids (grids[sample]; empty: the fixed-step grid of pb.dyn) with gradient:
// with targets, the terminal loss and its gradient (dfield, dP, dc); otherwise the vjp of the
// states at ap.times (cotangent (n_times, N, D)) or of the final state (cotangent (N, D)).
// Writes d/dX (N, dim) into dX if not null; dense outputs into dense_out when the cotangent is
// null and no targets (a forward replay). Returns the loss.
namespace detail {
// replay_sweep with the samples in their given order.
template <class T>
double replay_in_order(const AdaptiveProblem<T>& ap, const std::vector<std::vector<double>>& grids,
                       const Targets<T>* targets, const T* cotangent, index_t checkpoints,
                       T* dfield, T* dP, T* dc, T* dX, T* final_out, T* dense_out) {
  const Problem<T>& pb = *ap.pb;
  const auto& f = pb.dyn.field;
  const index_t D = f.D, N = pb.N, C = pb.readout.classes;
  const bool backward = targets || cotangent;
  const bool outputs = ap.n_times > 0;
  const int used = outputs ? ap.tab.stages : ap.tab.solution_stages();
  BlockPlan<T> plan(pb);
  const index_t gsize = BlockPlan<T>::gradient_size(pb);
  Buffer<T> block_grads(backward ? plan.count * gsize : 1);
  std::vector<double> block_losses(std::size_t(plan.count), 0.0);
  std::vector<char> block_bad(std::size_t(plan.count), 0);
  std::vector<std::unique_ptr<ReplayWork<T>>> work(static_cast<std::size_t>(plan.threads));
  with_activation(pb.dyn.activation, [&](auto act) {
    using Act = decltype(act);
    parallel_for(plan.count, plan.threads, [&](int t, index_t b) {
      if (!work[t])
        work[t] = std::make_unique<ReplayWork<T>>(f, ap.tab.stages, plan.rows, C);
      auto& w = *work[t];
      const Block blk = plan.block(pb, b);
      const index_t n = blk.n, len = D * n;
      const Schedule sc = grids.empty() ? fixed_schedule(ap, blk)
                                                : grid_schedule(ap, blk, grids);
      const auto events = output_events(ap, blk, sc);
      const ReplayColumns rc = replay_columns_of<T>(sc, blk.real, !sc.fixed && !outputs);
      w.use_compact_slots(!rc.cols.empty());
      const index_t M = sc.iterations;
      // Tape plan: segments of ceil(M / checkpoints) steps, or by default of as many steps as
      // fit replay_tape_bytes: an adaptive step's slot holds all its stages and their caches
      // (a dopri5 step of the seed model: 0.5 MB for 168 samples), and a tape of every step
      // ran from memory (the seed model's loss_and_grad: 194 ms against 95 ms in segments that
      // stay in cache, the recomputation included). Recomputed steps are bitwise the same.
      index_t segment = std::max<index_t>(M, 1);
      if (backward) {
        const double slot_bytes = double(w.slot) * sizeof(T);
        const double budget = checkpoints > 0 ? tape_budget_bytes : replay_tape_bytes;
        if (checkpoints > 0 && checkpoints < M) segment = (M + checkpoints - 1) / checkpoints;
        segment = std::min(segment, index_t(std::max(1.0, budget / slot_bytes - 1)));
      } else {
        segment = 1;
      }
      const bool single = backward && segment >= M;
      const index_t n_ckpt = single ? 0 : (M + segment - 1) / segment;
      w.reserve(f, backward ? segment + 1 : 2, backward ? n_ckpt : 0);
      // Forward.
      T* x = w.slot_state(0);
      load_initial_state(pb, blk, x);
      std::size_t ev = 0;
      auto emit = [&](index_t j, const T* x_now, const T* x_next, StepStages<T>* st) {
        for (; ev < events.size() && events[ev].iteration == j; ++ev) {
          const auto& e = events[ev];
          T* row = dense_out + (e.q * N + blk.first + e.column) * D;
          if (e.at_end)
            column_to_row(D, n, e.column, j < 0 ? x_now : x_next, row);
          else
            interpolate_column(ap.tab, used, D, n, e.column, x_now, st->K,
                                       sc.dt_of(j)[e.column], e.theta, row);
        }
      };
      if (!backward && dense_out) emit(-1, x, x, nullptr);
      for (index_t j = 0; j < M; ++j) {
        if (backward && !single && j % segment == 0)
          std::copy(x, x + len, w.checkpoint_states + (j / segment) * len);
        const index_t slot = single ? j : 0;
        // single: x_j in slot j; otherwise two states alternate (slot 0's state and cur)
        T* x_next = single ? w.slot_state(j + 1) : (x == w.slot_state(0) ? w.cur : w.slot_state(0));
        StepStages<T> st = w.slot_stages(slot);
        if (rc.width[std::size_t(j)] > 0)
          replay_compact_step<Act>(ap, sc, rc, j, used, x, w.slot_compact(slot), x_next, st, w);
        else
          replay_step<Act>(ap, sc, j, used, x, x_next, st, w.coef);
        if (!backward && dense_out) emit(j, x, x_next, &st);
        x = x_next;
      }
      if (!all_finite(len, x)) {
        block_bad[b] = 1;
        return;
      }
      if (final_out) store_rows(blk, D, x, final_out);
      if (!backward) return;
      T* grads = block_grads.data() + b * gsize;
      std::fill(grads, grads + gsize, T(0));
      // Cotangent of the final state.
      if (targets) {
        readout(pb.readout, n, D, x, w.z);
        block_losses[b] = block_loss(*targets, C, blk.first, blk.real, n, w.z, w.zbar, 1.0);
        readout_clamp_vjp(pb.readout, n, w.z, w.zbar);
        readout_vjp(pb.readout, n, blk.real, D, x, w.zbar, w.xbar, false, grads + f.size(),
                    grads + f.size() + C * D);
      } else if (!outputs) {
        load_rows(blk, D, cotangent, w.xbar);
      } else {
        std::fill(w.xbar, w.xbar + len, T(0));
      }
      // Reverse, segment by segment from the end; dense-output cotangents on the way.
      auto cot_row = [&](const OutputEvent& e) {
        return cotangent + (e.q * N + blk.first + e.column) * D;
      };
      std::ptrdiff_t ev_back = std::ptrdiff_t(events.size()) - 1;
      for (index_t seg = (M - 1) / segment; M > 0 && seg >= 0; --seg) {
        const index_t j0 = seg * segment, j1 = std::min(M, j0 + segment);
        if (!single) {  // recompute the segment's states and stages from its checkpoint
          std::copy(w.checkpoint_states + seg * len, w.checkpoint_states + (seg + 1) * len,
                    w.slot_state(0));
          for (index_t j = j0; j < j1; ++j) {
            StepStages<T> st = w.slot_stages(j - j0);
            if (rc.width[std::size_t(j)] > 0)
              replay_compact_step<Act>(ap, sc, rc, j, used, w.slot_state(j - j0),
                                       w.slot_compact(j - j0), w.slot_state(j - j0 + 1), st, w);
            else
              replay_step<Act>(ap, sc, j, used, w.slot_state(j - j0), w.slot_state(j - j0 + 1),
                               st, w.coef);
          }
        }
        for (index_t j = j1 - 1; j >= j0; --j) {
          StepStages<T> st = w.slot_stages(j - j0);
          const bool compact = rc.width[std::size_t(j)] > 0;
          st.X[0] = compact ? w.slot_compact(j - j0) : w.slot_state(j - j0);
          bool has_extra = false;
          std::ptrdiff_t first_ev = ev_back;
          while (first_ev >= 0 && events[std::size_t(first_ev)].iteration == j) --first_ev;
          for (std::ptrdiff_t e = ev_back; e > first_ev; --e) {  // outputs of step j
            const auto& oe = events[std::size_t(e)];
            const T* ybar = cot_row(oe);
            if (oe.at_end) {  // a cotangent on x_{j+1}
              for (index_t d = 0; d < D; ++d) w.xbar[d * n + oe.column] += ybar[d];
              continue;
            }
            if (!has_extra) {
              for (int i = 0; i < used; ++i) std::fill(w.extra[i], w.extra[i] + len, T(0));
              has_extra = true;
            }
            const double h = sc.dt_of(j)[oe.column];
            for (int i = 0; i < used; ++i) {
              const T c = T(h * ap.tab.interpolant(i, oe.theta));
              for (index_t d = 0; d < D; ++d) w.extra[i][d * n + oe.column] += c * ybar[d];
            }
          }
          if (compact)  // no dense outputs (see rc): no extra cotangents
            replay_compact_step_vjp<Act>(ap, sc, rc, j, used, st, w.xbar, grads, w);
          else
            replay_step_vjp<Act>(ap, sc, j, used, blk.real, st, has_extra, w.xbar, grads, w);
          for (std::ptrdiff_t e = ev_back; e > first_ev; --e) {  // x_j's part of the interpolant
            const auto& oe = events[std::size_t(e)];
            if (oe.at_end) continue;
            const T* ybar = cot_row(oe);
            for (index_t d = 0; d < D; ++d) w.xbar[d * n + oe.column] += ybar[d];
          }
          ev_back = first_ev;
        }
      }
      for (; ev_back >= 0; --ev_back) {  // outputs at t = 0: cotangents on x_0
        const auto& oe = events[std::size_t(ev_back)];
        const T* ybar = cot_row(oe);
        for (index_t d = 0; d < D; ++d) w.xbar[d * n + oe.column] += ybar[d];
      }
      if (dX) store_rows(blk, pb.dim(), w.xbar, dX);
    });
  });
  if (std::find(block_bad.begin(), block_bad.end(), 1) != block_bad.end())
    throw non_finite_error("the state became non-finite (NaN or Inf) on the replayed grid", -1,
                           ap.T_end);
  if (!backward) return 0.0;
  reduce_gradients(pb, plan.count, block_grads.data(), dfield, dP, dc);
  double loss = 0.0;
  for (double l : block_losses) loss += l;
  return loss;
}
}  // namespace detail

template <class T>
double replay_sweep(const AdaptiveProblem<T>& ap, const std::vector<std::vector<double>>& grids,
                    const Targets<T>* targets, const Same<T>* cotangent, index_t checkpoints,
                    Same<T>* dfield, Same<T>* dP, Same<T>* dc, Same<T>* dX, Same<T>* final_out,
                    Same<T>* dense_out) {
  // A column idles until the slowest sample of its block has ended the piece, so the replay
  // runs the samples grouped by their number of steps (a stable sort; the seed model's
  // loss_and_grad: 134 -> 79 ms). A sample's arithmetic is its own: only the order of the
  // parameter-gradient sums changes, and it depends on the grids alone.
  const Problem<T>& pb = *ap.pb;
  const index_t N = pb.N, D = pb.dyn.field.D, dim = pb.dim(), C = pb.readout.classes;
  std::vector<index_t> order(static_cast<std::size_t>(N));
  for (index_t i = 0; i < N; ++i) order[std::size_t(i)] = i;
  if (!grids.empty())
    std::stable_sort(order.begin(), order.end(), [&](index_t a, index_t b) {
      return grids[std::size_t(a)].size() < grids[std::size_t(b)].size();
    });
  if (std::is_sorted(order.begin(), order.end())) {
    const double loss = detail::replay_in_order(ap, grids, targets, cotangent, checkpoints,
                                                dfield, dP, dc, dX, final_out, dense_out);
    if (dense_out && !targets && !cotangent)
      detail::raise_if_outputs_non_finite(ap, static_cast<const T*>(nullptr), dense_out);
    return loss;
  }
  // Row i of every permuted array is row order[i] of the caller's.
  auto gather = [&](const T* from, index_t slices, index_t width) {
    std::vector<T> to(std::size_t(slices * N * width));
    for (index_t q = 0; q < slices; ++q)
      for (index_t i = 0; i < N; ++i)
        std::copy_n(from + (q * N + order[std::size_t(i)]) * width, width,
                    to.data() + (q * N + i) * width);
    return to;
  };
  auto scatter = [&](const std::vector<T>& from, index_t slices, index_t width, T* to) {
    for (index_t q = 0; q < slices; ++q)
      for (index_t i = 0; i < N; ++i)
        std::copy_n(from.data() + (q * N + i) * width, width,
                    to + (q * N + order[std::size_t(i)]) * width);
  };
  const std::vector<T> X = gather(pb.X, 1, dim);
  Problem<T> sorted = pb;
  sorted.X = X.data();
  AdaptiveProblem<T> sorted_ap = ap;
  sorted_ap.pb = &sorted;
  std::vector<std::vector<double>> sorted_grids(static_cast<std::size_t>(N));
  for (index_t i = 0; i < N; ++i) sorted_grids[std::size_t(i)] = grids[std::size_t(order[std::size_t(i)])];
  Targets<T> sorted_targets;
  std::vector<std::int64_t> labels;
  std::vector<T> values;
  if (targets) {
    sorted_targets = *targets;
    if (targets->kind == LossKind::cross_entropy) {
      for (index_t i = 0; i < N; ++i) labels.push_back(targets->labels[order[std::size_t(i)]]);
      sorted_targets.labels = labels.data();
    } else {
      values = gather(targets->values, 1, C);
      sorted_targets.values = values.data();
    }
  }
  const index_t Q = std::max<index_t>(ap.n_times, 1);
  const std::vector<T> cot = cotangent ? gather(cotangent, Q, D) : std::vector<T>{};
  std::vector<T> dX_s(dX ? std::size_t(N * dim) : 0), final_s(final_out ? std::size_t(N * D) : 0),
      dense_s(dense_out ? std::size_t(Q * N * D) : 0);
  const double loss = detail::replay_in_order(
      sorted_ap, sorted_grids, targets ? &sorted_targets : nullptr,
      cotangent ? cot.data() : nullptr, checkpoints, dfield, dP, dc,
      dX ? dX_s.data() : nullptr, final_out ? final_s.data() : nullptr,
      dense_out ? dense_s.data() : nullptr);
  if (dX) scatter(dX_s, 1, dim, dX);
  if (final_out) scatter(final_s, 1, D, final_out);
  if (dense_out) scatter(dense_s, Q, D, dense_out);
  if (dense_out && !targets && !cotangent)
    detail::raise_if_outputs_non_finite(ap, static_cast<const T*>(nullptr), dense_out);
  return loss;
}

// Checks a grid given back for a replay: strictly increasing from 0 to T, with every piece
// boundary (T k) / pieces on it exactly.
template <class T>
void check_grid(const AdaptiveProblem<T>& ap, const std::vector<double>& g, index_t sample) {
  auto fail = [&](const std::string& what) {
    throw std::invalid_argument("grid of sample " + std::to_string(sample) + " " + what);
  };
  if (g.size() < 2 || g.front() != 0.0 || g.back() != ap.T_end)
    fail("must run from 0 to T = " + std::to_string(ap.T_end) + " (at least 2 times)");
  for (std::size_t i = 1; i < g.size(); ++i)
    if (!(g[i] > g[i - 1])) fail("must be strictly increasing (and finite)");
  for (index_t k = 1; k < ap.pieces(); ++k)
    if (!std::binary_search(g.begin(), g.end(), ap.boundary(k)))
      fail("must contain every piece boundary (T k) / pieces, exactly; missing k = " +
           std::to_string(k));
}

namespace detail {

// One block's buffers for the backward (adjoint) run: the state x and adjoint a, the stages
// (X_i, Kx_i = f(X_i), caches; A_i; Ka_i = -J_i^T A_i) and the per-column controller state.
template <class T>
struct AdjointWork {
  AdjointWork(const FieldParams<T>& f, int stages, index_t capacity, index_t classes)
      : reverse(f, stages, capacity), len(f.D * capacity) {
    const index_t zlen = std::max<index_t>(classes, 1) * capacity;
    memory = Buffer<T>(2 * len + StepStages<T>::size(f, stages, capacity) +
                       index_t(stages) * len + 2 * zlen);
    T* p = memory.data();
    x = p, p += len;
    a = p, p += len;
    st = StepStages<T>::carve(f, stages, capacity, p);
    p += StepStages<T>::size(f, stages, capacity);
    A[0] = a;
    for (int i = 1; i < stages; ++i) A[i] = p, p += len;
    z = p, p += zlen;
    zbar = p;
    for (auto* v : {&t, &t_new, &h, &dt, &minus_dt, &E, &Ea, &E_last})
      v->assign(std::size_t(capacity), 0.0);
    control.assign(std::size_t(capacity), StepController{});
    active.assign(std::size_t(capacity), 0);
    bad_trial.assign(std::size_t(capacity), 0);
    attempts.assign(std::size_t(capacity), 0);
  }
  ReverseWork<T> reverse;  // Y[i] holds Ka_i; kbar and adjoint_stage: the gradient pass
  index_t len;
  Buffer<T> memory;
  T *x, *a, *z, *zbar;
  StepStages<T> st;
  T* A[EmbeddedTableau::max_stages] = {};
  std::vector<double> t, t_new, h, dt, minus_dt, E, Ea, E_last;
  std::vector<StepController> control;
  std::vector<char> active, bad_trial;
  std::vector<index_t> attempts;
  std::vector<T> coef;
};

// The stages of one backward step of every column, from t to t - dt_s (docs/guide/adaptive.md):
//   X_i = x - dt sum_l a_il Kx_l,  A_i = a - dt sum_l a_il Ka_l,
//   Kx_i = f(X_i),  Ka_i = -(df/dx)(X_i)^T A_i
// (x' = f(x), a' = -(df/dx)^T a integrated backwards). The last stage is (x_new, a_new).
template <class Act, class T>
void adjoint_stages(const AdaptiveProblem<T>& ap, index_t k, index_t n, index_t real,
                    AdjointWork<T>& w, T* grads) {
  const auto& f = ap.pb->dyn.field;
  const auto& tab = ap.tab;
  T** Ka = w.reverse.Y;
  for (int i = 0; i < tab.stages; ++i) {
    if (i > 0) {
      column_combine(f.D, n, w.minus_dt.data(), false, 1.0, w.x, i, tab.a[i], w.st.K, w.coef,
                     w.st.X[i]);
      column_combine(f.D, n, w.minus_dt.data(), false, 1.0, w.a, i, tab.a[i], Ka, w.coef, w.A[i]);
    } else {
      w.st.X[0] = w.x;
    }
    field_eval<Act>(f, k, n, w.st.X[i], w.st.K[i], w.st.cache[i]);
    // J^T A_i only (theta_scale 0): the parameter part waits for the step's acceptance
    field_vjp<Act>(f, k, n, real, w.st.X[i], w.st.K[i], w.st.cache[i], w.A[i], Ka[i], grads, T(0),
                   w.reverse.scratch);
    scaled_copy(f.D * n, T(-1), Ka[i], Ka[i]);
  }
}

// grads += sum_i T(dt_s b_i) (df/dtheta)(X_i)^T A_i over the accepted columns (the others get
// the weight 0): the quadrature of g' = -(df/dtheta)^T a of the accepted steps.
template <class Act, class T>
void adjoint_parameter_gradient(const AdaptiveProblem<T>& ap, index_t k, index_t n, index_t real,
                                const std::vector<char>& accepted, AdjointWork<T>& w, T* grads) {
  const auto& f = ap.pb->dyn.field;
  for (int i = 0; i < ap.tab.stages; ++i) {
    if (ap.tab.b[i] == 0.0) continue;
    T* weighted = w.reverse.kbar;
    for (index_t d = 0; d < f.D; ++d)
      for (index_t s = 0; s < n; ++s)
        weighted[d * n + s] = accepted[s] ? T(w.dt[s] * ap.tab.b[i]) * w.A[i][d * n + s] : T(0);
    field_vjp<Act>(f, k, n, real, w.st.X[i], w.st.K[i], w.st.cache[i], weighted,
                   w.reverse.adjoint_stage, grads, T(1), w.reverse.scratch);
  }
}

// The backward run of one block from T to 0 with per-column step control (x, a in w on entry:
// x(T) and dL/dx(T); on exit a = dL/dx(0)); h0: each column's first step. Returns the failure.
template <class Act, class T>
Failure adjoint_block(const AdaptiveProblem<T>& ap, const Block& blk, const double* h0,
                      AdjointWork<T>& w, T* grads, SampleRecord* records) {
  const auto& f = ap.pb->dyn.field;
  const auto& tab = ap.tab;
  const index_t D = f.D, n = blk.n, real = blk.real;
  const int s_last = tab.stages - 1;
  constexpr double eps = std::numeric_limits<double>::epsilon();
  Failure fail;
  for (index_t s = 0; s < real; ++s) {
    w.t[s] = ap.T_end, w.h[s] = h0[s], w.attempts[s] = 0, w.bad_trial[s] = 0, w.E_last[s] = 0;
    w.control[s] = StepController{double(tab.error_order_k)};
    records[blk.first + s].backward = true;
  }
  std::vector<char> accepted(std::size_t(n), 0);
  for (index_t piece = ap.pieces() - 1; piece >= 0; --piece) {
    const double t_end = ap.boundary(piece);
    std::fill(w.active.begin(), w.active.begin() + real, 1);
    std::fill(w.active.begin() + real, w.active.end(), 0);
    index_t running = real;
    while (running > 0) {
      for (index_t s = 0; s < n; ++s) {
        if (!w.active[s]) {
          w.dt[s] = w.minus_dt[s] = 0.0;
          continue;
        }
        if (w.attempts[s] >= ap.opt.max_steps) {
          const bool overflowed = w.bad_trial[s];
          fail = {long(blk.first + s), overflowed, true, w.t[s], w.dt[s], w.E_last[s], true};
          return fail;
        }
        w.t_new[s] = landing(w.t[s], -w.h[s], t_end);
        w.dt[s] = w.t[s] - w.t_new[s], w.minus_dt[s] = -w.dt[s];
        if (!(w.dt[s] > 4.0 * eps * std::abs(w.t_new[s]))) {
          const bool overflowed = w.bad_trial[s];
          fail = {long(blk.first + s), overflowed, false, w.t[s], w.dt[s], w.E_last[s], true};
          return fail;
        }
      }
      adjoint_stages<Act>(ap, piece, n, real, w, grads);
      const T* x_new = w.st.X[s_last];
      const T* a_new = w.A[s_last];
      // E over the 2D components of (x, a): sqrt((E_x^2 + E_a^2) / 2)
      error_norms(tab, D, n, w.x, x_new, w.st.K, w.minus_dt.data(), ap.opt.rtol, ap.opt.atol,
                  w.E.data());
      error_norms(tab, D, n, w.a, a_new, w.reverse.Y, w.minus_dt.data(), ap.opt.rtol,
                  ap.opt.atol, w.Ea.data());
      bool any = false;
      for (index_t s = 0; s < n; ++s) {
        accepted[s] = 0;
        if (s >= real || !w.active[s]) continue;
        ++w.attempts[s];
        const double E = std::sqrt(0.5 * (w.E[s] * w.E[s] + w.Ea[s] * w.Ea[s]));
        w.E_last[s] = E;
        accepted[s] = w.control[s].update(E, w.dt[s], w.h[s]);
        if (!accepted[s]) w.bad_trial[s] = !std::isfinite(E);
        auto& rec = records[blk.first + s];
        rec.backward_nfev += tab.stages;
        ++(accepted[s] ? rec.backward_accepted : rec.backward_rejected);
        any = any || accepted[s];
      }
      if (!any) continue;
      adjoint_parameter_gradient<Act>(ap, piece, n, real, accepted, w, grads);
      for (index_t s = 0; s < real; ++s) {
        if (!accepted[s]) continue;
        for (index_t d = 0; d < D; ++d) {
          w.x[d * n + s] = x_new[d * n + s];
          w.a[d * n + s] = a_new[d * n + s];
        }
        w.t[s] = w.t_new[s];
        if (w.t[s] == t_end) w.active[s] = 0, --running;
      }
    }
  }
  return fail;
}

}  // namespace detail

// The continuous (backsolve) adjoint of an adaptive run: forward with per-sample control to
// x(T), the cotangent there (the terminal loss's gradient with targets, else cotangent (N, D)),
// then (x, a, g) integrated back to 0 with the same method and tolerances, per sample, pieces
// in reverse, the error over the 2D components of (x, a); the backward run starts with the
// forward's last proposed step. dfield (flat), dP, dc (with targets), dX (N, dim) if not null.
// Returns the data loss.
template <class T>
double adaptive_adjoint_sweep(const AdaptiveProblem<T>& ap, const Targets<T>* targets,
                              const Same<T>* cotangent, Same<T>* dfield, Same<T>* dP,
                              Same<T>* dc, Same<T>* dX, std::vector<SampleRecord>& records) {
  const Problem<T>& pb = *ap.pb;
  require(ap.opt.control == StepControl::sample,
          "gradient='adjoint' runs with step_control='sample' only");
  const auto& f = pb.dyn.field;
  const index_t D = f.D, C = pb.readout.classes;
  records.assign(std::size_t(pb.N), SampleRecord{});
  detail::BlockPlan<T> plan(pb);
  const index_t gsize = detail::BlockPlan<T>::gradient_size(pb);
  Buffer<T> block_grads(plan.count * gsize);
  std::vector<double> block_losses(std::size_t(plan.count), 0.0);
  std::vector<detail::Failure> failures(std::size_t(plan.count));
  std::vector<std::unique_ptr<detail::AdaptiveWork<T>>> forward(std::size_t(plan.threads));
  std::vector<std::unique_ptr<detail::AdjointWork<T>>> backward(std::size_t(plan.threads));
  with_activation(pb.dyn.activation, [&](auto act) {
    using Act = decltype(act);
    parallel_for(plan.count, plan.threads, [&](int t, index_t b) {
      if (!forward[t]) {
        forward[t] = std::make_unique<detail::AdaptiveWork<T>>(f, ap.tab.stages, plan.rows);
        backward[t] = std::make_unique<detail::AdjointWork<T>>(f, ap.tab.stages, plan.rows, C);
      }
      auto& fw = *forward[t];
      auto& bw = *backward[t];
      const detail::Block blk = plan.block(pb, b);
      const index_t n = blk.n, len = D * n;
      T* grads = block_grads.data() + b * gsize;
      std::fill(grads, grads + gsize, T(0));
      failures[b] = detail::adaptive_block<Act>(ap, blk, false, fw, records.data(),
                                                static_cast<T*>(nullptr), static_cast<T*>(nullptr));
      if (failures[b].sample >= 0) return;
      std::copy(fw.x, fw.x + len, bw.x);
      if (targets) {  // a(T) = dL/dx(T); dP, dc
        readout(pb.readout, n, D, bw.x, bw.z);
        block_losses[b] = block_loss(*targets, C, blk.first, blk.real, n, bw.z, bw.zbar, 1.0);
        readout_clamp_vjp(pb.readout, n, bw.z, bw.zbar);
        readout_vjp(pb.readout, n, blk.real, D, bw.x, bw.zbar, bw.a, false, grads + f.size(),
                    grads + f.size() + C * D);
      } else {
        detail::load_rows(blk, D, cotangent, bw.a);
      }
      failures[b] = detail::adjoint_block<Act>(ap, blk, fw.h.data(), bw, grads, records.data());
      if (failures[b].sample < 0 && dX) detail::store_rows(blk, pb.dim(), bw.a, dX);
    });
  });
  detail::raise_failure(failures);
  detail::reduce_gradients(pb, plan.count, block_grads.data(), dfield, dP, dc);
  double loss = 0.0;
  for (double l : block_losses) loss += l;
  return loss;
}

// The terminal loss and its gradient, with the penalties of loss_and_grad (opt: weight decay,
// L1; no turnpike): dfield (flat), dP (C, D), dc (C). Discrete: on the given grids (replayed);
// adjoint: an adaptive run and its backsolve adjoint (which fills records).
template <class T>
double adaptive_loss_and_grad(const AdaptiveProblem<T>& ap,
                              const std::vector<std::vector<double>>& grids,
                              std::vector<SampleRecord>& records, const Targets<T>& targets,
                              const GradientOptions& opt, T* dfield, T* dP, T* dc) {
  require(!opt.turnpike, "turnpike losses are defined on the fixed step grid");
  const double data =
      opt.gradient == Gradient::adjoint
          ? adaptive_adjoint_sweep(ap, &targets, static_cast<const T*>(nullptr), dfield, dP, dc,
                                   static_cast<T*>(nullptr), records)
          : replay_sweep(ap, grids, &targets, static_cast<const T*>(nullptr), opt.checkpoints,
                         dfield, dP, dc, static_cast<T*>(nullptr), static_cast<T*>(nullptr),
                         static_cast<T*>(nullptr));
  return detail::finish_loss(*ap.pb, opt, data, dfield, dP, dc);
}

// The grids of an adaptive run, as replay_sweep takes them.
inline std::vector<std::vector<double>> grids_of(const std::vector<SampleRecord>& records) {
  std::vector<std::vector<double>> grids;
  grids.reserve(records.size());
  for (const auto& r : records) grids.push_back(r.grid);
  return grids;
}

}  // namespace resode
