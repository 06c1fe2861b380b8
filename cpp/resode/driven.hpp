// The input-driven neural ODE with fixed-step Runge-Kutta methods, forward and with the exact
// discrete gradient (the VJP of the discrete forward map) with respect to the field's
// parameters, the initial states x0 and the observations U.
//
// The model of sample i (state width D, C input channels, K pieces of [0, T]):
//   x(0) = x0_i,  dx/dt = f_k([x; u_i(t)])
// with f_k one of (sigma the activation, acting on the concatenation v = [x; u] of width D + C):
//   outside     sigma(W[k] v + b[k])                  W (K, D, D + C), b (K, D)
//   inside      W[k] sigma(v) + b[k]                  W (K, D, D + C), b (K, D)
//   bottleneck  W2[k] sigma(W1[k] v + b1[k]) + b2[k]  W1 (K, H, D + C), b1 (K, H), W2 (K, D, H)
// u_i is the path of sample i's observations (paths.hpp: lengths, NaN fill, slopes d_k), its
// VALUE at tau on [t_k, t_{k+1}], theta = (tau - t_k) / dt_k:
//   linear  x_k + dt_k theta d_k
//   cubic   x_k + dt_k ((theta - B) m_k + B d_k),  B = 2 theta^2 - theta^3,  m_k = d_{k-1},
//           m_0 = d_0 (the integral of paths.hpp's dX/dt: torchcde's Hermite cubic)
// held constant outside the observation window [t_{i,0}, T_i] (the first filled row before it,
// the last after it).
// The step grid of sample i: the breakpoints t_j = T j / (K * substeps) (the model's grid
// without inputs), sample i's knots strictly inside (0, T) and the requested output times
// strictly inside (0, T); each interval between consecutive breakpoints is one step. A step
// [tau, tau + h] uses the piece and the path interval (or "before"/"after" the window)
// containing tau + h/2; stage j reads u at tau + c_j h on that interval.
//
// Work decomposition: one sample at a time (row vectors), OpenMP over samples; the gradient
// sweeps give each of up to 8 groups of consecutive samples its own accumulator, reduced in
// group order, so results do not depend on the thread count. The reverse sweep keeps every
// step's state and recomputes that step's stages from it on the way back.
// Adaptive methods (driven_adaptive.hpp) hand their accepted step times to this file
// (DrivenProblem::accepted): each interval between consecutive accepted times is one step, so
// the output is the computed solution on that grid and the gradient its exact reverse sweep.
// The continuous adjoint (driven_adjoint.hpp) plugs its own per-sample reverse into the same
// sweeps (driven_vjp_with, driven_loss_and_grad_with).
#pragma once
#include <algorithm>
#include <cmath>
#include <memory>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

#include "activations.hpp"
#include "buffer.hpp"
#include "config.hpp"
#include "errors.hpp"
#include "losses.hpp"
#include "paths.hpp"
#include "tableau.hpp"
#include "threads.hpp"

namespace resode {

enum class DrivenKind { outside, inside, bottleneck };

inline DrivenKind parse_driven_field(const std::string& name) {
  if (name == "outside") return DrivenKind::outside;
  if (name == "inside") return DrivenKind::inside;
  if (name == "bottleneck") return DrivenKind::bottleneck;
  throw std::invalid_argument("field must be 'outside', 'inside' or 'bottleneck'; got '" + name +
                              "'");
}

// The field's arrays: W1/b1 are W/b for outside and inside; W2/b2 the bottleneck's second layer.
template <class T>
struct DrivenField {
  DrivenKind kind = DrivenKind::outside;
  Activation activation = Activation::tanh;
  index_t pieces = 1, D = 0, C = 0, H = 0;
  const T *W1 = nullptr, *b1 = nullptr, *W2 = nullptr, *b2 = nullptr;

  bool bottleneck() const { return kind == DrivenKind::bottleneck; }
  index_t in() const { return D + C; }
  index_t rows1() const { return bottleneck() ? H : D; }  // rows of W1
  index_t w1_size() const { return rows1() * in(); }
  index_t b1_size() const { return rows1(); }
  index_t w2_size() const { return bottleneck() ? D * H : 0; }
  index_t b2_size() const { return bottleneck() ? D : 0; }
  index_t piece_size() const { return w1_size() + b1_size() + w2_size() + b2_size(); }
  // flat gradient layout [W1 | b1 | W2 | b2], each over all pieces
  index_t size() const { return pieces * piece_size(); }
};

template <class T>
struct DrivenProblem {
  DrivenField<T> field;
  Tableau tab = tableau(Method::rk4);
  index_t substeps = 1;
  double T_end = 1.0;
  Interpolation interpolation = Interpolation::cubic;
  index_t N = 0, L = 0, C = 0;
  const T* x0 = nullptr;              // (N, D)
  const T* U = nullptr;               // (N, L, C), NaN = missing or padding
  const double* times = nullptr;      // (L,) or (N, L) with per_sample_times
  bool per_sample_times = false;
  const double* out_times = nullptr;  // (out_count,), strictly increasing within [0, T]
  index_t out_count = 0;
  index_t classes = 0;                // logits and loss: P (classes, D), c (classes,)
  const T *P = nullptr, *c = nullptr;
  // Adaptive methods: each sample's accepted step times 0 .. T (every breakpoint of the
  // substeps = 1 grid among them); nullptr: the fixed-step grid.
  std::shared_ptr<const std::vector<std::vector<double>>> accepted;

  const double* sample_times(index_t i) const { return per_sample_times ? times + i * L : times; }
  const T* sample_values(index_t i) const { return U + i * L * C; }
};

namespace detail {

// One sample's path: knots, fill weights (C x len), filled values x (len x C), slopes d.
template <class T>
struct DrivenPath {
  index_t len = 0;
  const double* t = nullptr;
  std::vector<FillWeight> fill;
  std::vector<T> x, d;
};

// u(time) = x[base] + sum_j w_j d[index_j] (at most 2 terms).
struct ValueWeights {
  index_t base = 0, count = 0;
  index_t index[2] = {0, 0};
  double w[2] = {0.0, 0.0};
};

struct DrivenStep {
  double tau, h;
  index_t piece, interval;  // interval -1: before the window, len - 1: after it
};

template <class T>
void check_driven_paths(const DrivenProblem<T>& pb, std::vector<index_t>& length) {
  length.assign(std::size_t(pb.N), 0);
  for (index_t i = 0; i < pb.N; ++i) {
    const T* U = pb.sample_values(i);
    const index_t len = observed_length(U, pb.L, pb.C);
    require(len > 0, [&] { return "U: sample " + std::to_string(i) + " has no observed value"; });
    require(len >= 2, [&] {
      return "U: sample " + std::to_string(i) +
             " has 1 observed row; a path needs at least 2 (rows after the last observed one "
             "are padding)";
    });
    for (index_t c = 0; c < pb.C; ++c) {
      bool seen = false;
      for (index_t r = 0; r < len && !seen; ++r) seen = !std::isnan(U[r * pb.C + c]);
      require(seen, [&] {
        return "U: channel " + std::to_string(c) + " of sample " + std::to_string(i) +
               " has no observed value";
      });
    }
    const double* t = pb.sample_times(i);
    for (index_t r = 0; r < len; ++r) {
      require(std::isfinite(t[r]), [&] {
        return "times must be finite over each sample's observed rows; row " + std::to_string(r) +
               " of sample " + std::to_string(i) + " is not";
      });
      require(r == 0 || t[r] > t[r - 1], [&] {
        return "times must be strictly increasing over each sample's observed rows; row " +
               std::to_string(r) + " of sample " + std::to_string(i) + " is not";
      });
    }
    length[std::size_t(i)] = len;
  }
  for (index_t r = 0; r < pb.out_count; ++r) {
    const double tr = pb.out_times[r];
    require(std::isfinite(tr) && tr >= 0.0 && tr <= pb.T_end, [&] {
      std::ostringstream msg;
      msg << "t must lie within [0, T] = [0, " << pb.T_end << "]; got " << tr << " at index " << r;
      return msg.str();
    });
    require(r == 0 || tr > pb.out_times[r - 1], "t must be strictly increasing");
  }
}

template <class T>
void build_path(const DrivenProblem<T>& pb, index_t i, index_t len, DrivenPath<T>& p) {
  const index_t C = pb.C;
  const T* U = pb.sample_values(i);
  p.len = len, p.t = pb.sample_times(i);
  p.fill.resize(std::size_t(C * len));
  p.x.resize(std::size_t(len * C));
  p.d.resize(std::size_t((len - 1) * C));
  for (index_t c = 0; c < C; ++c) {
    FillWeight* w = p.fill.data() + c * len;
    fill_weights(U, C, c, len, p.t, w);
    for (index_t r = 0; r < len; ++r) p.x[std::size_t(r * C + c)] = filled_value(U, C, c, w[r]);
  }
  for (index_t k = 0; k + 1 < len; ++k) {
    const T dt = T(p.t[k + 1] - p.t[k]);
    for (index_t c = 0; c < C; ++c)
      p.d[std::size_t(k * C + c)] = (p.x[std::size_t((k + 1) * C + c)] - p.x[std::size_t(k * C + c)]) / dt;
  }
}

template <class T>
ValueWeights value_weights(const DrivenPath<T>& p, Interpolation interp, index_t k, double tau) {
  ValueWeights v;
  if (k < 0 || k >= p.len - 1) {  // held constant outside the window
    v.base = k < 0 ? 0 : p.len - 1;
    return v;
  }
  v.base = k;
  const double dt = p.t[k + 1] - p.t[k], theta = (tau - p.t[k]) / dt;
  if (interp == Interpolation::linear || k == 0) {
    v.count = 1, v.index[0] = k, v.w[0] = dt * theta;
    return v;
  }
  const double B = 2.0 * theta * theta - theta * theta * theta;
  v.count = 2;
  v.index[0] = k - 1, v.w[0] = dt * (theta - B);
  v.index[1] = k, v.w[1] = dt * B;
  return v;
}

// The sample's breakpoints (state times) and steps: the fixed-step grid, or sample i's
// accepted grid of an adaptive run.
template <class T>
void build_steps(const DrivenProblem<T>& pb, index_t i, const DrivenPath<T>& p,
                 std::vector<double>& breaks, std::vector<DrivenStep>& steps) {
  const index_t K = pb.field.pieces, n = K * pb.substeps;
  const double T_end = pb.T_end;
  breaks.clear();
  if (pb.accepted) {
    breaks = (*pb.accepted)[std::size_t(i)];
  } else {
    for (index_t j = 0; j <= n; ++j) breaks.push_back(T_end * double(j) / double(n));
    for (index_t k = 0; k < p.len; ++k)
      if (p.t[k] > 0.0 && p.t[k] < T_end) breaks.push_back(p.t[k]);
    for (index_t r = 0; r < pb.out_count; ++r)
      if (pb.out_times[r] > 0.0 && pb.out_times[r] < T_end) breaks.push_back(pb.out_times[r]);
    std::sort(breaks.begin(), breaks.end());
    breaks.erase(std::unique(breaks.begin(), breaks.end()), breaks.end());
  }
  steps.clear();
  for (std::size_t b = 0; b + 1 < breaks.size(); ++b) {
    const double tau = breaks[b], h = breaks[b + 1] - breaks[b], mid = tau + 0.5 * h;
    index_t piece = 0;
    for (index_t j = 1; j < K; ++j)
      if (T_end * double(j) / double(K) <= mid) piece = j;
    const index_t interval = index_t(std::upper_bound(p.t, p.t + p.len, mid) - p.t) - 1;
    steps.push_back({tau, h, piece, interval});
  }
}

// Workspace of one sample's stages: v = [Y; u] (in), pre (rows1), out (D) per stage.
template <class T>
struct DrivenWork {
  DrivenWork(const DrivenProblem<T>& pb) {
    const auto& f = pb.field;
    const index_t s = pb.tab.stages;
    v.resize(std::size_t(s * f.in())), a1.resize(std::size_t(s * f.in()));
    hid.resize(std::size_t(s * f.rows1())), K.resize(std::size_t(s * f.D));
    weights.resize(std::size_t(s));
    Ybar.resize(std::size_t(s * f.D)), kbar.resize(std::size_t(f.D));
    g1.resize(std::size_t(std::max(f.rows1(), f.D))), vbar.resize(std::size_t(f.in()));
  }
  std::vector<T> v, a1, hid, K, Ybar, kbar, g1, vbar, tape, xbar, dbar, grads;
  std::vector<T> KA, scratch;  // the continuous adjoint's stages J^T A_i and unused grads
  std::vector<ValueWeights> weights;
  DrivenPath<T> path;
  std::vector<double> breaks;
  std::vector<DrivenStep> steps;
};

// out (rows) = W (rows x cols) x + b.
template <class T>
void affine_row(index_t rows, index_t cols, const T* W, const T* b, const T* x, T* out) {
  for (index_t o = 0; o < rows; ++o) {
    T s = T(0);
    for (index_t i = 0; i < cols; ++i) s += W[o * cols + i] * x[i];
    out[o] = s + b[o];
  }
}

// Stage i's K = f_k(v) with v = w.v[i]; caches a1 (sigma(v) for inside) and hid.
template <class T>
void field_forward(const DrivenField<T>& f, index_t k, index_t i, DrivenWork<T>& w) {
  const index_t in = f.in(), r1 = f.rows1(), D = f.D;
  const T* v = w.v.data() + i * in;
  T* K = w.K.data() + i * D;
  T* hid = w.hid.data() + i * r1;
  const T* W1 = f.W1 + k * f.w1_size();
  const T* b1 = f.b1 + k * f.b1_size();
  with_activation(f.activation, [&](auto act) {
    using Act = decltype(act);
    if (f.kind == DrivenKind::outside) {
      affine_row(D, in, W1, b1, v, hid);
      for (index_t d = 0; d < D; ++d) hid[d] = Act::value(hid[d]), K[d] = hid[d];
    } else if (f.kind == DrivenKind::inside) {
      T* a = w.a1.data() + i * in;
      for (index_t j = 0; j < in; ++j) a[j] = Act::value(v[j]);
      affine_row(D, in, W1, b1, a, K);
    } else {
      affine_row(r1, in, W1, b1, v, hid);
      for (index_t j = 0; j < r1; ++j) hid[j] = Act::value(hid[j]);
      affine_row(D, r1, f.W2 + k * f.w2_size(), f.b2 + k * f.b2_size(), hid, K);
    }
  });
}

// vbar = J^T kbar at stage i; adds the parameter gradients of piece k to g ([W1|b1|W2|b2]).
template <class T>
void field_vjp(const DrivenField<T>& f, index_t k, index_t i, DrivenWork<T>& w, T* g) {
  const index_t in = f.in(), r1 = f.rows1(), D = f.D, K = f.pieces;
  const T* v = w.v.data() + i * in;
  const T* hid = w.hid.data() + i * r1;
  const T* kbar = w.kbar.data();
  T* vbar = w.vbar.data();
  T* g1 = w.g1.data();
  const T* W1 = f.W1 + k * f.w1_size();
  T* dW1 = g + k * f.w1_size();
  T* db1 = g + K * f.w1_size() + k * f.b1_size();
  std::fill(vbar, vbar + in, T(0));
  with_activation(f.activation, [&](auto act) {
    using Act = decltype(act);
    const T* x1 = v;  // the input of the first layer's weights
    if (f.kind == DrivenKind::outside) {
      for (index_t d = 0; d < D; ++d) g1[d] = kbar[d] * Act::deriv_of_value(hid[d]);
    } else if (f.kind == DrivenKind::inside) {
      for (index_t d = 0; d < D; ++d) g1[d] = kbar[d];
      x1 = w.a1.data() + i * in;
    } else {
      const T* W2 = f.W2 + k * f.w2_size();
      T* dW2 = g + K * (f.w1_size() + f.b1_size()) + k * f.w2_size();
      T* db2 = g + K * (f.w1_size() + f.b1_size() + f.w2_size()) + k * f.b2_size();
      for (index_t j = 0; j < r1; ++j) g1[j] = T(0);
      for (index_t d = 0; d < D; ++d) {
        db2[d] += kbar[d];
        for (index_t j = 0; j < r1; ++j) {
          dW2[d * r1 + j] += kbar[d] * hid[j];
          g1[j] += W2[d * r1 + j] * kbar[d];
        }
      }
      for (index_t j = 0; j < r1; ++j) g1[j] *= Act::deriv_of_value(hid[j]);
    }
    for (index_t o = 0; o < r1; ++o) {
      db1[o] += g1[o];
      for (index_t j = 0; j < in; ++j) {
        dW1[o * in + j] += g1[o] * x1[j];
        vbar[j] += W1[o * in + j] * g1[o];
      }
    }
    if (f.kind == DrivenKind::inside)
      for (index_t j = 0; j < in; ++j) vbar[j] *= Act::deriv_of_value(x1[j]);
  });
}

// Stage i's K = f_piece([Y; u(time)]) with Y already in w.v[i] (its first D entries) and u
// read on path interval `interval`: fills the rest of w.v[i], w.weights[i], K and caches.
template <class T>
void driven_stage_eval(const DrivenProblem<T>& pb, index_t piece, index_t interval, double time,
                       index_t i, DrivenWork<T>& w) {
  const index_t D = pb.field.D, C = pb.C;
  const ValueWeights vw = value_weights(w.path, pb.interpolation, interval, time);
  w.weights[std::size_t(i)] = vw;
  T* u = w.v.data() + i * pb.field.in() + D;
  for (index_t ch = 0; ch < C; ++ch) u[ch] = w.path.x[std::size_t(vw.base * C + ch)];
  for (index_t m = 0; m < vw.count; ++m) {
    const T wm = T(vw.w[m]);
    for (index_t ch = 0; ch < C; ++ch) u[ch] += wm * w.path.d[std::size_t(vw.index[m] * C + ch)];
  }
  field_forward(pb.field, piece, i, w);
}

// The stages of one step from state x (D): fills w.v, w.K, caches and weights.
template <class T>
void driven_stages(const DrivenProblem<T>& pb, const DrivenStep& st, const T* x, DrivenWork<T>& w) {
  const auto& f = pb.field;
  const index_t D = f.D, in = f.in();
  const T h = T(st.h);
  for (index_t i = 0; i < pb.tab.stages; ++i) {
    T* v = w.v.data() + i * in;
    std::copy(x, x + D, v);
    double c = 0.0;
    for (index_t l = 0; l < i; ++l) {
      c += pb.tab.a[i][l];
      if (pb.tab.a[i][l] == 0.0) continue;
      const T ha = h * T(pb.tab.a[i][l]);
      const T* Kl = w.K.data() + l * D;
      for (index_t d = 0; d < D; ++d) v[d] += ha * Kl[d];
    }
    driven_stage_eval(pb, st.piece, st.interval, st.tau + c * st.h, i, w);
  }
}

// ubar (C), the cotangent of stage i's input u, into w.xbar (len x C) and w.dbar.
template <class T>
void add_input_cotangent(index_t C, const ValueWeights& vw, const T* ubar, DrivenWork<T>& w) {
  for (index_t ch = 0; ch < C; ++ch) w.xbar[std::size_t(vw.base * C + ch)] += ubar[ch];
  for (index_t m = 0; m < vw.count; ++m)
    for (index_t ch = 0; ch < C; ++ch)
      w.dbar[std::size_t(vw.index[m] * C + ch)] += T(vw.w[m]) * ubar[ch];
}

template <class T>
void driven_update(const DrivenProblem<T>& pb, const DrivenStep& st, const T* x, DrivenWork<T>& w,
                   T* next) {
  const index_t D = pb.field.D;
  std::copy(x, x + D, next);
  for (index_t i = 0; i < pb.tab.stages; ++i) {
    if (pb.tab.b[i] == 0.0) continue;
    const T hb = T(st.h) * T(pb.tab.b[i]);
    const T* K = w.K.data() + i * D;
    for (index_t d = 0; d < D; ++d) next[d] += hb * K[d];
  }
}

// The reverse of one step: xbar (D) in/out; adds to g and, with with_path, to the path's
// cotangents w.xbar (len x C) and w.dbar (the route to dU).
template <class T>
void driven_step_vjp(const DrivenProblem<T>& pb, const DrivenStep& st, DrivenWork<T>& w, T* xbar,
                     T* g, bool with_path = true) {
  const index_t D = pb.field.D, C = pb.C, s = pb.tab.stages;
  const T h = T(st.h);
  std::vector<T> acc(xbar, xbar + D);
  for (index_t i = s - 1; i >= 0; --i) {
    const T hb = h * T(pb.tab.b[i]);
    for (index_t d = 0; d < D; ++d) w.kbar[std::size_t(d)] = hb * xbar[d];
    for (index_t m = i + 1; m < s; ++m) {
      if (pb.tab.a[m][i] == 0.0) continue;
      const T ha = h * T(pb.tab.a[m][i]);
      for (index_t d = 0; d < D; ++d) w.kbar[std::size_t(d)] += ha * w.Ybar[std::size_t(m * D + d)];
    }
    field_vjp(pb.field, st.piece, i, w, g);
    for (index_t d = 0; d < D; ++d) {
      w.Ybar[std::size_t(i * D + d)] = w.vbar[std::size_t(d)];
      acc[std::size_t(d)] += w.vbar[std::size_t(d)];
    }
    if (with_path) add_input_cotangent(C, w.weights[std::size_t(i)], w.vbar.data() + D, w);
  }
  std::copy(acc.begin(), acc.end(), xbar);
}

template <class T>
bool finite_row(index_t n, const T* x) {
  for (index_t i = 0; i < n; ++i)
    if (!std::isfinite(x[i])) return false;
  return true;
}

[[noreturn]] inline void raise_driven_non_finite(index_t sample, index_t step, double t) {
  std::ostringstream msg;
  msg << "the state became non-finite (NaN or Inf) in step " << step << " (counted from 0) of "
      << "the step grid of sample " << sample << ", ending at t = " << t
      << "; reduce the weights, the inputs or the step size (substeps)";
  throw non_finite_error(msg.str(), long(step), t);
}

// Sample i forward: its path, grid and every state in w.tape ((steps + 1) x D); with
// keep = false only x(T), in the tape's first row (two rows in turn: the adjoint's forward).
template <class T>
void driven_forward_sample(const DrivenProblem<T>& pb, index_t i, index_t len, DrivenWork<T>& w,
                           bool keep = true) {
  const index_t D = pb.field.D;
  build_path(pb, i, len, w.path);
  build_steps(pb, i, w.path, w.breaks, w.steps);
  const index_t n = index_t(w.steps.size());
  w.tape.resize(std::size_t((keep ? n + 1 : 2) * D));
  std::copy(pb.x0 + i * D, pb.x0 + (i + 1) * D, w.tape.begin());
  for (index_t j = 0; j < n; ++j) {
    const T* x = w.tape.data() + (keep ? j : j % 2) * D;
    T* next = w.tape.data() + (keep ? j + 1 : (j + 1) % 2) * D;
    driven_stages(pb, w.steps[std::size_t(j)], x, w);
    driven_update(pb, w.steps[std::size_t(j)], x, w, next);
    if (!finite_row(D, next)) raise_driven_non_finite(i, j, w.breaks[std::size_t(j + 1)]);
  }
  if (!keep && n % 2 == 1) std::copy(w.tape.begin() + D, w.tape.begin() + 2 * D, w.tape.begin());
}

// Sample i's x(T) after driven_forward_sample(..., keep).
template <class T>
T* final_state(DrivenWork<T>& w, index_t D, bool keep) {
  return w.tape.data() + (keep ? index_t(w.steps.size()) * D : 0);
}

// The state index each output time reads (every output time is a breakpoint).
inline index_t out_state(const std::vector<double>& breaks, double tr) {
  return index_t(std::lower_bound(breaks.begin(), breaks.end(), tr) - breaks.begin());
}

template <class T>
void path_cotangent_to_dU(const DrivenProblem<T>& pb, index_t i, DrivenWork<T>& w, T* dU);

// Sample i backward after driven_forward_sample: xbar (D) holds the final state's cotangent;
// cot_at(j, xbar) adds the cotangent of state j < steps. Adds to g; writes dx0_i and, unless
// dU is null (training, which reads only the parameters' gradient), dU_i.
template <class T, class CotAt>
void driven_reverse_sample(const DrivenProblem<T>& pb, index_t i, DrivenWork<T>& w, T* xbar,
                           T* g, T* dx0, T* dU, CotAt&& cot_at) {
  const index_t D = pb.field.D, C = pb.C, len = w.path.len;
  w.xbar.assign(std::size_t(len * C), T(0));
  w.dbar.assign(std::size_t((len - 1) * C), T(0));
  for (index_t j = index_t(w.steps.size()) - 1; j >= 0; --j) {
    const DrivenStep& st = w.steps[std::size_t(j)];
    driven_stages(pb, st, w.tape.data() + j * D, w);
    driven_step_vjp(pb, st, w, xbar, g, dU != nullptr);
    cot_at(j, xbar);
  }
  std::copy(xbar, xbar + D, dx0 + i * D);
  if (dU) path_cotangent_to_dU(pb, i, w, dU);
}

// The cotangents of the filled values (w.xbar) and slopes (w.dbar) of sample i's path to its
// row of dU (0 where U is NaN and on padding).
template <class T>
void path_cotangent_to_dU(const DrivenProblem<T>& pb, index_t i, DrivenWork<T>& w, T* dU) {
  const index_t C = pb.C, len = w.path.len;
  for (index_t k = 0; k + 1 < len; ++k) {  // d_k = (x_{k+1} - x_k) / dt_k
    const T dt = T(w.path.t[k + 1] - w.path.t[k]);
    for (index_t c = 0; c < C; ++c) {
      const T v = w.dbar[std::size_t(k * C + c)] / dt;
      w.xbar[std::size_t((k + 1) * C + c)] += v;
      w.xbar[std::size_t(k * C + c)] -= v;
    }
  }
  T* dUi = dU + i * pb.L * C;
  std::fill(dUi, dUi + pb.L * C, T(0));
  for (index_t c = 0; c < C; ++c)
    for (index_t r = 0; r < len; ++r)
      fill_transpose(C, c, w.path.fill[std::size_t(c * len + r)], w.xbar[std::size_t(r * C + c)], dUi);
}

inline int driven_threads(index_t items) {
  return int(std::clamp<index_t>(get_num_threads(), 1, std::max<index_t>(items, 1)));
}

// The exact discrete reverse of one sample (driven_reverse_sample) as a sweep's `reverse`.
struct DiscreteReverse {
  static constexpr bool keeps_tape = true;  // it recomputes each step from its stored state
  template <class T, class CotAt>
  void operator()(const DrivenProblem<T>& pb, index_t i, DrivenWork<T>& w, T* xbar, T* g, T* dx0,
                  T* dU, CotAt&& cot_at) const {
    driven_reverse_sample(pb, i, w, xbar, g, dx0, dU, cot_at);
  }
};

// The gradient sweep over groups of samples: final(i, w, xT, xbar, acc) sets xbar from x_i(T);
// cot_at(i, w, j, xbar) adds state j's cotangent; reverse (DiscreteReverse or the adjoint's)
// runs one sample backwards. The group accumulators (size gsize, the field's first) are
// reduced in group order into g.
template <class T, class Final, class CotAt, class Reverse>
void driven_gradient_sweep(const DrivenProblem<T>& pb, const std::vector<index_t>& length,
                           index_t gsize, T* g, T* dx0, T* dU, Final&& final, CotAt&& cot_at,
                           Reverse&& reverse) {
  const index_t groups = std::min<index_t>(pb.N, 8), D = pb.field.D;
  const int threads = driven_threads(groups);
  std::vector<std::unique_ptr<DrivenWork<T>>> works(static_cast<std::size_t>(threads));
  Buffer<T> acc(groups * gsize);
  parallel_for(groups, threads, [&](int th, index_t grp) {
    if (!works[std::size_t(th)]) works[std::size_t(th)] = std::make_unique<DrivenWork<T>>(pb);
    DrivenWork<T>& w = *works[std::size_t(th)];
    T* a = acc.data() + grp * gsize;
    std::fill(a, a + gsize, T(0));
    std::vector<T> xbar(static_cast<std::size_t>(D));
    for (index_t i = pb.N * grp / groups; i < pb.N * (grp + 1) / groups; ++i) {
      constexpr bool keep = std::decay_t<Reverse>::keeps_tape;
      driven_forward_sample(pb, i, length[std::size_t(i)], w, keep);
      final(i, w, final_state(w, D, keep), xbar.data(), a);
      reverse(pb, i, w, xbar.data(), a, dx0, dU, [&](index_t j, T* xb) { cot_at(i, w, j, xb); });
    }
  });
  for (index_t grp = 0; grp < groups; ++grp)
    for (index_t k = 0; k < gsize; ++k)
      g[k] = grp == 0 ? acc.data()[k] : g[k] + acc.data()[grp * gsize + k];
}

template <class T>
void require_finite_driven_gradient(index_t n, const T* g, const char* what) {
  if (!finite_row(n, g))
    throw non_finite_error(std::string("the gradient (") + what +
                               ") is not finite: the backward sweep overflowed",
                           -1, 0.0);
}

}  // namespace detail

// The states x_i(T) (N, D), or with out_count > 0 the states at the output times
// (out_count, N, D).
template <class T>
void driven_solve(const DrivenProblem<T>& pb, T* out) {
  std::vector<index_t> length;
  detail::check_driven_paths(pb, length);
  const index_t D = pb.field.D, N = pb.N;
  const int threads = detail::driven_threads(N);
  std::vector<std::unique_ptr<detail::DrivenWork<T>>> works(static_cast<std::size_t>(threads));
  parallel_for(N, threads, [&](int th, index_t i) {
    if (!works[std::size_t(th)]) works[std::size_t(th)] = std::make_unique<detail::DrivenWork<T>>(pb);
    auto& w = *works[std::size_t(th)];
    detail::driven_forward_sample(pb, i, length[std::size_t(i)], w);
    if (pb.out_count == 0) {
      const T* xT = w.tape.data() + index_t(w.steps.size()) * D;
      std::copy(xT, xT + D, out + i * D);
      return;
    }
    for (index_t r = 0; r < pb.out_count; ++r) {
      const T* x = w.tape.data() + detail::out_state(w.breaks, pb.out_times[r]) * D;
      std::copy(x, x + D, out + (r * N + i) * D);
    }
  });
}

// Logits x_i(T) P^T + c (N, classes).
template <class T>
void driven_logits(const DrivenProblem<T>& pb, T* out) {
  const index_t D = pb.field.D, O = pb.classes;
  std::vector<T> xT(std::size_t(pb.N * D));
  DrivenProblem<T> at_end = pb;
  at_end.out_count = 0;
  driven_solve(at_end, xT.data());
  for (index_t i = 0; i < pb.N; ++i)
    detail::affine_row(O, D, pb.P, pb.c, xT.data() + i * D, out + i * O);
  if (!detail::finite_row(pb.N * O, out))
    throw non_finite_error("the logits x(T) P^T + c are not finite: the readout overflowed", -1,
                           0.0);
}

// VJP of driven_solve for a cotangent of its output: dfield (flat [W1 | b1 | W2 | b2]),
// dx0 (N, D), dU (N, L, C) (0 where U is NaN and on padding), with `reverse` running each
// sample backwards (detail::DiscreteReverse: the exact discrete gradient).
template <class T, class Reverse>
void driven_vjp_with(const DrivenProblem<T>& pb, const T* cotangent, T* dfield, T* dx0, T* dU,
                     Reverse&& reverse) {
  std::vector<index_t> length;
  detail::check_driven_paths(pb, length);
  const index_t D = pb.field.D, N = pb.N, nf = pb.field.size();
  auto add_rows = [&](index_t i, const detail::DrivenWork<T>& w, index_t j, T* xbar) {
    for (index_t r = 0; r < pb.out_count; ++r)
      if (detail::out_state(w.breaks, pb.out_times[r]) == j)
        for (index_t d = 0; d < D; ++d) xbar[d] += cotangent[(r * N + i) * D + d];
  };
  detail::driven_gradient_sweep(
      pb, length, nf, dfield, dx0, dU,
      [&](index_t i, const detail::DrivenWork<T>& w, const T*, T* xbar, T*) {
        std::fill(xbar, xbar + D, T(0));
        if (pb.out_count == 0)
          for (index_t d = 0; d < D; ++d) xbar[d] = cotangent[i * D + d];
        else
          add_rows(i, w, index_t(w.steps.size()), xbar);
      },
      [&](index_t i, const detail::DrivenWork<T>& w, index_t j, T* xbar) {
        if (pb.out_count > 0) add_rows(i, w, j, xbar);
      },
      reverse);
  detail::require_finite_driven_gradient(nf, dfield, "parameters");
  detail::require_finite_driven_gradient(N * D, dx0, "x0");
  detail::require_finite_driven_gradient(N * pb.L * pb.C, dU, "U");
}

// The exact discrete VJP of driven_solve.
template <class T>
void driven_vjp(const DrivenProblem<T>& pb, const T* cotangent, T* dfield, T* dx0, T* dU) {
  driven_vjp_with(pb, cotangent, dfield, dx0, dU, detail::DiscreteReverse{});
}

// Data loss of the logits (cross-entropy: mean over samples of logsumexp(z) - z_y; mse: mean
// over all N * classes entries of the squared error) plus weight_decay * |field|^2, and its
// gradient: dfield, dP (classes, D), dc (classes,), dx0 (N, D), dU (N, L, C), with `reverse`
// running each sample backwards. A null dU skips the observations' cotangent (training reads
// only the parameters' gradient).
template <class T, class Reverse>
double driven_loss_and_grad_with(const DrivenProblem<T>& pb, const std::int64_t* labels,
                                 const T* values, double weight_decay, T* dfield, T* dP, T* dc,
                                 T* dx0, T* dU, Reverse&& reverse) {
  std::vector<index_t> length;
  detail::check_driven_paths(pb, length);
  const index_t D = pb.field.D, N = pb.N, O = pb.classes, nf = pb.field.size();
  const index_t gsize = nf + O * D + O;
  Targets<T> targets;  // losses.hpp's, read one sample (a 1-column block) at a time
  targets.kind = labels ? LossKind::cross_entropy : LossKind::mse;
  targets.count = N;
  targets.labels = labels;
  targets.values = values;
  std::vector<double> losses(std::size_t(N), 0.0);
  std::vector<char> overflow(std::size_t(N), 0);
  Buffer<T> g(gsize);
  detail::driven_gradient_sweep(
      pb, length, gsize, g.data(), dx0, dU,
      [&](index_t i, const detail::DrivenWork<T>&, const T* xT, T* xbar, T* acc) {
        std::vector<T> z(static_cast<std::size_t>(O)), zbar(static_cast<std::size_t>(O));
        detail::affine_row(O, D, pb.P, pb.c, xT, z.data());
        if (!detail::finite_row(O, z.data())) overflow[std::size_t(i)] = 1;
        losses[std::size_t(i)] = block_loss(targets, O, i, 1, 1, z.data(), zbar.data(), 1.0);
        T* gP = acc + nf;
        T* gc = gP + O * D;
        for (index_t d = 0; d < D; ++d) xbar[d] = T(0);
        for (index_t o = 0; o < O; ++o) {
          gc[o] += zbar[std::size_t(o)];
          for (index_t d = 0; d < D; ++d) {
            gP[o * D + d] += zbar[std::size_t(o)] * xT[d];
            xbar[d] += pb.P[o * D + d] * zbar[std::size_t(o)];
          }
        }
      },
      [](index_t, const detail::DrivenWork<T>&, index_t, T*) {}, reverse);
  if (std::find(overflow.begin(), overflow.end(), 1) != overflow.end())
    throw non_finite_error("the logits x(T) P^T + c are not finite: the readout overflowed", -1,
                           0.0);
  double loss = 0.0;
  for (double l : losses) loss += l;  // in sample order: the same bits for any thread count
  if (weight_decay != 0.0) {  // loss += wd |theta|^2 over the field's arrays, g += 2 wd theta
    const auto& f = pb.field;
    const T* tensors[4] = {f.W1, f.b1, f.W2, f.b2};
    const index_t K = f.pieces;
    const index_t sizes[4] = {K * f.w1_size(), K * f.b1_size(), K * f.w2_size(), K * f.b2_size()};
    T* gi = g.data();
    for (int m = 0; m < 4; ++m) {
      for (index_t i = 0; i < sizes[m]; ++i) {
        loss += weight_decay * double(tensors[m][i]) * double(tensors[m][i]);
        gi[i] += T(2.0 * weight_decay) * tensors[m][i];
      }
      gi += sizes[m];
    }
  }
  if (!std::isfinite(loss)) throw non_finite_error("the loss is not finite", -1, 0.0);
  std::copy(g.data(), g.data() + nf, dfield);
  std::copy(g.data() + nf, g.data() + nf + O * D, dP);
  std::copy(g.data() + nf + O * D, g.data() + gsize, dc);
  detail::require_finite_driven_gradient(gsize, g.data(), "parameters");
  detail::require_finite_driven_gradient(N * D, dx0, "x0");
  if (dU) detail::require_finite_driven_gradient(N * pb.L * pb.C, dU, "U");
  return loss;
}

// The loss and its exact discrete gradient.
template <class T>
double driven_loss_and_grad(const DrivenProblem<T>& pb, const std::int64_t* labels,
                            const T* values, double weight_decay, T* dfield, T* dP, T* dc, T* dx0,
                            T* dU) {
  return driven_loss_and_grad_with(pb, labels, values, weight_decay, dfield, dP, dc, dx0, dU,
                                   detail::DiscreteReverse{});
}

}  // namespace resode
