// The sweeps over a whole data set: forward trajectory, logits, loss with its gradient, and the
// vector-Jacobian product of the flow map. These are the core's public entry points; ResNets
// and neural ODEs both run through them (a ResNet is the Euler tableau with dt = h).
//
// Work decomposition: samples are cut into fixed blocks of block_size(width) rows (independent
// of the thread count); each block runs through all steps while its states stay in cache.
// Threads take contiguous ranges of blocks and accumulate parameter gradients in their own
// buffer; buffers are added in thread order and block losses in block order, so results are
// bitwise reproducible for a fixed thread count and differ across counts only by round-off.
//
// Memory of the discrete gradient, per thread (B = block rows, D = width, S = steps):
//   all states stored:     (S + 1) * B * D
//   checkpoints = K:       (K + ceil(S/K) + 1) * B * D   (one extra forward sweep)
// The continuous (backsolve) adjoint stores no trajectory: O(B * D), independent of S.
#pragma once
#include <algorithm>
#include <cmath>
#include <memory>
#include <sstream>
#include <vector>

#include "losses.hpp"
#include "stepper.hpp"
#include "threads.hpp"

namespace resode {

template <class T>
struct Problem {
  Dynamics<T> dyn;
  Readout<T> readout;   // needed by logits and loss_and_grad only
  index_t N = 0;        // samples
  index_t augment = 0;  // zero columns appended to X: D = dim + augment
  const T* X = nullptr; // (N, dim) row-major
  index_t dim() const { return dyn.field.D - augment; }
};

enum class Gradient { discrete, adjoint };

struct GradientOptions {
  Gradient gradient = Gradient::discrete;
  bool turnpike = false;    // loss = trapezoid rule of the data loss over the step grid
  index_t checkpoints = 0;  // discrete only: 0 stores every step state
  double weight_decay = 0.0;
};

// Rows per block: about 64 KiB of doubles per (block x width) buffer, so a step's stage
// buffers stay in L2; a multiple of 4 (the GEMM tile height), between 16 and 256.
inline index_t block_size(index_t width) {
  index_t b = 8192 / std::max<index_t>(width, 1);
  b = std::clamp<index_t>(b, 16, 256);
  return b - b % 4;
}

namespace detail {

template <class T>
bool all_finite(index_t n, const T* x) {
  T acc = T(0);
  for (index_t i = 0; i < n; ++i) acc += x[i] - x[i];  // NaN as soon as one x[i] is NaN or Inf
  return acc == T(0);
}

// One thread's workspace, allocated once per call.
template <class T>
struct SweepState {
  SweepState(const Problem<T>& pb, index_t capacity, index_t stored_states, bool want_grads)
      : stages(pb.dyn.field, pb.dyn.tab.stages, capacity) {
    const index_t len = capacity * pb.dyn.field.D;
    const index_t zlen = capacity * std::max<index_t>(pb.readout.classes, 1);
    memory.assign(std::size_t((5 + stored_states) * len + 2 * zlen), T(0));
    T* p = memory.data();
    cur = p, p += len;
    next = p, p += len;
    xbar = p, p += len;
    adj = p, p += len;
    tmp = p, p += len;
    z = p, p += zlen;
    zbar = p, p += zlen;
    stored = p;
    if (want_grads) {
      const index_t C = pb.readout.classes, D = pb.dyn.field.D;
      grads.assign(std::size_t(pb.dyn.field.size() + C * D + C), T(0));
    }
  }
  T* dfield() { return grads.data(); }
  T* dP(const Problem<T>& pb) { return grads.data() + pb.dyn.field.size(); }
  T* dc(const Problem<T>& pb) { return dP(pb) + pb.readout.classes * pb.dyn.field.D; }

  StageBuffers<T> stages;
  std::vector<T> memory, grads;
  T *cur, *next, *xbar, *adj, *tmp, *z, *zbar, *stored;
};

// Blocks of the data set and the first non-finite step seen in each (steps + 1 = none).
template <class T>
struct BlockPlan {
  explicit BlockPlan(const Problem<T>& pb)
      : rows(block_size(std::max(pb.dyn.field.D, pb.dyn.field.H))),
        count((pb.N + rows - 1) / rows),
        threads(int(std::clamp<index_t>(get_num_threads(), 1, std::max<index_t>(count, 1)))),
        first_bad(std::size_t(count), pb.dyn.steps() + 1) {}
  index_t first(index_t b) const { return b * rows; }
  index_t size(const Problem<T>& pb, index_t b) const { return std::min(rows, pb.N - b * rows); }

  index_t rows, count;
  int threads;
  std::vector<index_t> first_bad;
};

// x0 = [X rows, zeros] for rows [first, first + n).
template <class T>
void load_initial_state(const Problem<T>& pb, index_t first, index_t n, T* x) {
  const index_t D = pb.dyn.field.D, dim = pb.dim();
  for (index_t i = 0; i < n; ++i) {
    const T* src = pb.X + (first + i) * dim;
    std::copy(src, src + dim, x + i * D);
    std::fill(x + i * D + dim, x + (i + 1) * D, T(0));
  }
}

// Throws non_finite_error naming the first step (over all blocks) whose state was not finite.
template <class T>
void raise_if_non_finite(const Problem<T>& pb, const BlockPlan<T>& plan) {
  const index_t steps = pb.dyn.steps();
  const index_t bad = *std::min_element(plan.first_bad.begin(), plan.first_bad.end());
  if (bad > steps) return;
  const double t = double(bad + 1) * double(pb.dyn.dt);
  std::ostringstream msg;
  msg << "the state became non-finite (NaN or Inf) in step " << bad << " of " << steps
      << ", at t = " << t << " (layer " << bad << " of a ResNet); reduce the step size, the "
      << "weights or the inputs";
  throw non_finite_error(msg.str(), long(bad), t);
}

// data loss of the states x (rows [first, first + n)) times `weight`; with `grad`,
// xbar (+)= weight * dl/dx and the thread's dP, dc += weight * dl/d(P, c).
template <class T>
double state_loss(const Problem<T>& pb, const Targets<T>& targets, SweepState<T>& st,
                  index_t first, index_t n, const T* x, double weight, bool grad,
                  bool accumulate) {
  const index_t D = pb.dyn.field.D, C = pb.readout.classes;
  readout(pb.readout, n, D, x, st.z);
  const double l = block_loss(targets, C, first, n, st.z, grad ? st.zbar : nullptr, weight);
  if (grad) readout_vjp(pb.readout, n, D, x, st.zbar, st.xbar, accumulate, st.dP(pb), st.dc(pb));
  return weight * l;
}

// Trapezoid weight of state j in the turnpike loss dt * (l_0/2 + l_1 + ... + l_S/2).
template <class T>
double trapezoid_weight(const Problem<T>& pb, index_t j) {
  const double half = (j == 0 || j == pb.dyn.steps()) ? 0.5 : 1.0;
  return double(pb.dyn.dt) * half;
}

// Discrete forward and reverse sweep of one block. With targets: returns the block's loss and
// leaves d loss/d x0 in st.xbar; with a cotangent (N, D) on x_S instead: returns 0.
// `segment` = steps between checkpoints (steps when every state is stored).
template <class Act, class T>
double discrete_block(const Problem<T>& pb, const Targets<T>* targets, const T* cotangent,
                      bool turnpike, index_t segment, SweepState<T>& st, index_t first,
                      index_t n, index_t& bad) {
  const index_t D = pb.dyn.field.D, len = n * D, steps = pb.dyn.steps();
  const bool checkpointed = segment < steps;
  // Full storage: state j at stored + j*len. Checkpointed: checkpoint c at stored + c*len,
  // then a segment buffer of segment + 1 states after the checkpoints.
  const index_t n_checkpoints = checkpointed ? (steps + segment - 1) / segment : 0;
  T* seg = st.stored + n_checkpoints * len;
  auto state = [&](index_t j) { return checkpointed ? st.cur : seg + j * len; };
  double loss = 0.0;
  T* x = state(0);
  load_initial_state(pb, first, n, x);
  for (index_t j = 0; j < steps; ++j) {
    if (checkpointed && j % segment == 0) std::copy(x, x + len, st.stored + (j / segment) * len);
    if (turnpike) loss += state_loss(pb, *targets, st, first, n, x, trapezoid_weight(pb, j), false, false);
    T* x_next = checkpointed ? st.next : seg + (j + 1) * len;
    rk_step<Act>(pb.dyn, j, n, x, x_next, st.stages);
    if (!all_finite(len, x_next)) {
      bad = j;
      return 0.0;
    }
    if (checkpointed) std::swap(st.cur, st.next);
    x = checkpointed ? st.cur : x_next;
  }
  // Cotangent of the final state.
  if (targets) {
    const double w = turnpike ? trapezoid_weight(pb, steps) : 1.0;
    loss += state_loss(pb, *targets, st, first, n, x, w, true, false);
  } else {
    std::copy(cotangent + first * D, cotangent + first * D + len, st.xbar);
  }
  // Reverse sweep, segment by segment from the end.
  T* dfield = st.dfield();
  for (index_t s = (steps - 1) / segment; s >= 0; --s) {
    const index_t j0 = s * segment, j1 = std::min(steps, j0 + segment);
    if (checkpointed) {  // recompute the segment's states from its checkpoint
      std::copy(st.stored + s * len, st.stored + (s + 1) * len, seg);
      for (index_t j = j0; j + 1 < j1; ++j)
        rk_step<Act>(pb.dyn, j, n, seg + (j - j0) * len, seg + (j - j0 + 1) * len, st.stages);
    }
    for (index_t j = j1 - 1; j >= j0; --j) {
      const T* xj = seg + (checkpointed ? j - j0 : j) * len;
      rk_step_vjp<Act>(pb.dyn, j, n, xj, st.xbar, dfield, st.stages);
      if (turnpike) state_loss(pb, *targets, st, first, n, xj, trapezoid_weight(pb, j), true, true);
    }
  }
  return loss;
}

// The running cost of the turnpike loss as a source of the adjoint equation:
// Ka -= dl/dx(X), dP += weight dl/dP(X), dc += weight dl/dc(X).
template <class T>
struct RunningCost {
  const Problem<T>& pb;
  const Targets<T>& targets;
  SweepState<T>& st;
  index_t first;
  void operator()(index_t n, const T* X, T* Ka, double weight) const {
    const index_t D = pb.dyn.field.D, C = pb.readout.classes;
    readout(pb.readout, n, D, X, st.z);
    block_loss(targets, C, first, n, st.z, st.zbar, 1.0);
    gemm_nn(n, C, D, st.zbar, pb.readout.P, st.tmp, false);
    for (index_t e = 0; e < n * D; ++e) Ka[e] -= st.tmp[e];
    gemm_tn_acc(n, C, D, T(weight), st.zbar, X, D, st.dP(pb));
    column_sums_acc(n, C, T(weight), st.zbar, st.dc(pb));
  }
};

// Continuous (backsolve) adjoint of one block: forward to x_S without storing, then integrate
// (x, a, g) back to t = 0. Leaves a(0) = d loss/d x0 in st.xbar.
template <class Act, class T>
double backsolve_block(const Problem<T>& pb, const Targets<T>* targets, const T* cotangent,
                       bool turnpike, SweepState<T>& st, index_t first, index_t n,
                       index_t& bad) {
  const index_t D = pb.dyn.field.D, len = n * D, steps = pb.dyn.steps();
  double loss = 0.0;
  load_initial_state(pb, first, n, st.cur);
  for (index_t j = 0; j < steps; ++j) {
    if (turnpike) loss += state_loss(pb, *targets, st, first, n, st.cur, trapezoid_weight(pb, j), false, false);
    rk_step<Act>(pb.dyn, j, n, st.cur, st.next, st.stages);
    if (!all_finite(len, st.next)) {
      bad = j;
      return 0.0;
    }
    std::swap(st.cur, st.next);
  }
  // a(T): the terminal loss gradient, the given cotangent, or 0 for the pure running cost.
  if (targets && turnpike) {
    loss += state_loss(pb, *targets, st, first, n, st.cur, trapezoid_weight(pb, steps), false, false);
    std::fill(st.xbar, st.xbar + len, T(0));
  } else if (targets) {
    loss += state_loss(pb, *targets, st, first, n, st.cur, 1.0, true, false);
  } else {
    std::copy(cotangent + first * D, cotangent + first * D + len, st.xbar);
  }
  for (index_t j = steps - 1; j >= 0; --j) {
    if (targets && turnpike)
      backsolve_step<Act>(pb.dyn, j, n, st.cur, st.xbar, st.dfield(), st.stages,
                          RunningCost<T>{pb, *targets, st, first});
    else
      backsolve_step<Act>(pb.dyn, j, n, st.cur, st.xbar, st.dfield(), st.stages, NoSource{});
  }
  return loss;
}

// Field-parameter tensors as (pointer, size) pairs in the order of the flat gradient buffer.
template <class T>
std::vector<std::pair<const T*, index_t>> field_tensors(const FieldParams<T>& f) {
  std::vector<std::pair<const T*, index_t>> t{{f.W1, f.pieces * f.w1_size()},
                                              {f.b1, f.pieces * f.b1_size()}};
  if (f.bottleneck())
    t.insert(t.end(), {{f.W2, f.pieces * f.w2_size()}, {f.b2, f.pieces * f.b2_size()}});
  return t;
}

}  // namespace detail

// Every state on the step grid: out (steps + 1, N, D).
template <class T>
void trajectory(const Problem<T>& pb, T* out) {
  detail::BlockPlan<T> plan(pb);
  const index_t D = pb.dyn.field.D, steps = pb.dyn.steps(), slice = pb.N * D;
  std::vector<std::unique_ptr<StageBuffers<T>>> stages(std::size_t(plan.threads));
  with_activation(pb.dyn.activation, [&](auto act) {
    using Act = decltype(act);
    parallel_blocks(plan.count, plan.threads, [&](int t, index_t b) {
      if (!stages[t]) stages[t] = std::make_unique<StageBuffers<T>>(pb.dyn.field, pb.dyn.tab.stages, plan.rows);
      const index_t first = plan.first(b), n = plan.size(pb, b);
      detail::load_initial_state(pb, first, n, out + first * D);
      for (index_t j = 0; j < steps; ++j) {
        T* x_next = out + (j + 1) * slice + first * D;
        rk_step<Act>(pb.dyn, j, n, out + j * slice + first * D, x_next, *stages[t]);
        if (!detail::all_finite(n * D, x_next)) {
          plan.first_bad[b] = j;
          return;
        }
      }
    });
  });
  detail::raise_if_non_finite(pb, plan);
}

// Logits of the final states: out (N, classes).
template <class T>
void logits(const Problem<T>& pb, T* out) {
  detail::BlockPlan<T> plan(pb);
  const index_t D = pb.dyn.field.D, steps = pb.dyn.steps();
  std::vector<std::unique_ptr<detail::SweepState<T>>> states(std::size_t(plan.threads));
  with_activation(pb.dyn.activation, [&](auto act) {
    using Act = decltype(act);
    parallel_blocks(plan.count, plan.threads, [&](int t, index_t b) {
      if (!states[t]) states[t] = std::make_unique<detail::SweepState<T>>(pb, plan.rows, 0, false);
      auto& st = *states[t];
      const index_t first = plan.first(b), n = plan.size(pb, b);
      detail::load_initial_state(pb, first, n, st.cur);
      for (index_t j = 0; j < steps; ++j) {
        rk_step<Act>(pb.dyn, j, n, st.cur, st.next, st.stages);
        if (!detail::all_finite(n * D, st.next)) {
          plan.first_bad[b] = j;
          return;
        }
        std::swap(st.cur, st.next);
      }
      readout(pb.readout, n, D, st.cur, out + first * pb.readout.classes);
    });
  });
  detail::raise_if_non_finite(pb, plan);
}

namespace detail {

// Shared driver of loss_and_grad and vjp: runs the chosen block sweep on every block, reduces
// the thread gradients in order into `dfield` (and dP, dc), writes dX (N, dim) if asked, and
// returns the summed block losses.
template <class T>
double gradient_sweep(const Problem<T>& pb, const Targets<T>* targets, const T* cotangent,
                      const GradientOptions& opt, T* dfield, T* dP, T* dc, T* dX) {
  BlockPlan<T> plan(pb);
  const index_t steps = pb.dyn.steps(), D = pb.dyn.field.D, dim = pb.dim();
  const bool discrete = opt.gradient == Gradient::discrete;
  const index_t segment =
      (discrete && opt.checkpoints > 0 && opt.checkpoints < steps)
          ? (steps + opt.checkpoints - 1) / opt.checkpoints
          : steps;
  const index_t stored = !discrete ? 0
                         : segment < steps ? (steps + segment - 1) / segment + segment + 1
                                           : steps + 1;
  std::vector<std::unique_ptr<SweepState<T>>> states(std::size_t(plan.threads));
  std::vector<double> block_losses(std::size_t(plan.count), 0.0);
  with_activation(pb.dyn.activation, [&](auto act) {
    using Act = decltype(act);
    parallel_blocks(plan.count, plan.threads, [&](int t, index_t b) {
      if (!states[t]) states[t] = std::make_unique<SweepState<T>>(pb, plan.rows, stored, true);
      auto& st = *states[t];
      const index_t first = plan.first(b), n = plan.size(pb, b);
      block_losses[b] =
          discrete ? discrete_block<Act>(pb, targets, cotangent, opt.turnpike, segment, st, first, n, plan.first_bad[b])
                   : backsolve_block<Act>(pb, targets, cotangent, opt.turnpike, st, first, n, plan.first_bad[b]);
      if (dX)
        for (index_t i = 0; i < n; ++i)
          std::copy(st.xbar + i * D, st.xbar + i * D + dim, dX + (first + i) * dim);
    });
  });
  raise_if_non_finite(pb, plan);
  // Reduce in thread order (deterministic for a fixed thread count).
  const index_t nf = pb.dyn.field.size(), C = pb.readout.classes;
  std::fill(dfield, dfield + nf, T(0));
  if (dP) std::fill(dP, dP + C * D, T(0)), std::fill(dc, dc + C, T(0));
  for (auto& st : states) {
    if (!st) continue;
    for (index_t i = 0; i < nf; ++i) dfield[i] += st->grads[i];
    if (dP) {
      for (index_t i = 0; i < C * D; ++i) dP[i] += st->dP(pb)[i];
      for (index_t i = 0; i < C; ++i) dc[i] += st->dc(pb)[i];
    }
  }
  double loss = 0.0;
  for (double l : block_losses) loss += l;
  return loss;
}

template <class T>
void raise_if_gradient_non_finite(index_t n, const T* g, const char* what) {
  if (!all_finite(n, g))
    throw non_finite_error(std::string("the gradient (") + what +
                               ") is not finite: the backward sweep overflowed",
                           -1, 0.0);
}

}  // namespace detail

// Loss and gradient. dfield: flat [W1 | b1 | W2 | b2] (FieldParams::size()), dP (C, D), dc (C).
// loss = data loss (terminal, or the trapezoid rule over the step grid when turnpike)
//        + weight_decay * sum(theta^2) over the field parameters.
template <class T>
double loss_and_grad(const Problem<T>& pb, const Targets<T>& targets, const GradientOptions& opt,
                     T* dfield, T* dP, T* dc) {
  double loss = detail::gradient_sweep(pb, &targets, static_cast<const T*>(nullptr), opt, dfield,
                                       dP, dc, static_cast<T*>(nullptr));
  if (opt.weight_decay != 0.0) {  // + wd * |theta|^2, gradient 2 wd theta
    T* g = dfield;
    for (auto [w, size] : detail::field_tensors(pb.dyn.field)) {
      for (index_t i = 0; i < size; ++i) {
        loss += opt.weight_decay * double(w[i]) * double(w[i]);
        g[i] += T(2.0 * opt.weight_decay) * w[i];
      }
      g += size;
    }
  }
  if (!std::isfinite(loss)) throw non_finite_error("the loss is not finite", -1, 0.0);
  const index_t C = pb.readout.classes, D = pb.dyn.field.D;
  detail::raise_if_gradient_non_finite(pb.dyn.field.size(), dfield, "field parameters");
  detail::raise_if_gradient_non_finite(C * D, dP, "P");
  detail::raise_if_gradient_non_finite(C, dc, "c");
  return loss;
}

// Vector-Jacobian product of the flow map X -> x_S for a cotangent (N, D) on x_S:
// dfield = (d x_S / d theta)^T cotangent (flat buffer), dX (N, dim) = (d x_S / d X)^T cotangent.
template <class T>
void vjp(const Problem<T>& pb, const T* cotangent, const GradientOptions& opt, T* dfield, T* dX) {
  Targets<T>* none = nullptr;
  detail::gradient_sweep(pb, none, cotangent, opt, dfield, static_cast<T*>(nullptr),
                         static_cast<T*>(nullptr), dX);
  detail::raise_if_gradient_non_finite(pb.dyn.field.size(), dfield, "field parameters");
  detail::raise_if_gradient_non_finite(pb.N * pb.dim(), dX, "X");
}

}  // namespace resode
