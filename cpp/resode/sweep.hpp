// The sweeps over a whole data set: forward trajectory, logits, loss with its gradient, and the
// vector-Jacobian product of the flow map. These are the core's public entry points; ResNets
// and neural ODEs both run through them (a ResNet is the Euler tableau with dt = h).
//
// Work decomposition: samples are cut into blocks of block_rows(N, width) samples; each
// block runs through all steps while its states stay in cache, in the feature-major layout of
// linalg.hpp (inputs and outputs are row-major (N, D) and transposed per block on the way in
// and out). Consecutive blocks form at most max_groups groups; each group accumulates its
// parameter gradients in its own buffer, in block order, whichever thread runs it (threads take
// groups dynamically), and the group buffers are added in group order at the end. Blocks and
// groups depend only on the problem (N, the widths, the parameter count), never on the thread
// count or the timing, so results are bitwise identical for any number of threads. Small problems run on one thread (see
// min_work_per_thread).
//
// Memory of the discrete gradient, per thread, for blocks of B samples of width D:
//   a tape of (S + 1) slots, one per step of a segment of S steps: the state (D x B) and the
//   step's stages (StepStages::size), plus ceil(steps / S) checkpoint states when S < steps.
//   S = steps by default (one forward sweep, no recomputation); checkpoints = K gives
//   S = ceil(steps / K): memory (K + S + 1) states and S stage sets, one extra forward sweep.
//   S is also capped so the tape stays under tape_budget_bytes; recomputed stages are bitwise
//   equal to the first ones, so the cap never changes a result.
// The continuous (backsolve) adjoint stores no trajectory: O(B * D), independent of steps.
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
  index_t checkpoints = 0;  // discrete only: 0 stores every step
  double weight_decay = 0.0;
  bool decay_readout = false;    // weight_decay on P too (leia's Adam(weight_decay) convention)
  double l1 = 0.0;               // + l1 * sum |theta| over the field parameters
  double turnpike_weight = 1.0;  // turnpike: the trapezoid integral times this weight
  // vjp: the cotangent is (steps + 1, N, D), one row per state of the step grid, instead of
  // (N, D) on the final state only.
  bool cotangent_every_state = false;
};

// Per-thread cap of the discrete sweep's tape (see the top of this file).
constexpr double tape_budget_bytes = 256.0 * 1024 * 1024;
// At most this many gradient accumulators (groups of blocks) per call, and beyond two of them
// at most this many bytes: a D = 512 ResNet of 20 layers has 42 MB of parameters, and eight
// accumulators to fill and add on every call took a quarter of its time.
constexpr index_t max_groups = 8;
constexpr double group_budget_bytes = 32.0 * 1024 * 1024;
// Multiply-adds a thread must get before a second one starts (about 0.1 ms of work): below
// that, starting and joining threads costs more than it saves.
constexpr double min_work_per_thread = 2.0e6;

// Target block size: about 128 KiB per (width x block) buffer of doubles, so a step's buffers
// stay in L2; a multiple of 16 (a 64-byte vector of floats), between 32 and 240. (block_rows
// may round it up by one vector; every buffer is sized from the plan's rows.)
inline index_t block_size(index_t width) {
  index_t b = 16384 / std::max<index_t>(width, 1);
  b = std::clamp<index_t>(b, 32, 240);
  return b - b % 16;
}

// Samples per block for N samples: one block when N fits (rounded up to `pad`, one 64-byte
// vector); otherwise blocks of nearly equal size, aiming at an even number of them (two
// threads get equal shares; the plan must not depend on the thread count, see above; the
// rounding below can still leave an odd count, which matters little beyond a few blocks),
// each a multiple of pad but not of 4 pad. That keeps a block's rows (n samples apart) off strides of a multiple
// of 4 cache lines: rows 2 KiB apart all fall into 2 of the 64 L1 sets, and a 50-row product
// then runs from L2 (measured: 256-sample blocks 10% slower than 240). The fine rounding keeps
// the two threads' shares even: N = 1000 in float64 is 5 x 168 + 160 (504 and 496 samples),
// where the former 16 x odd rule gave 5 x 176 + 120 (528 and 472; 1.79x on two threads).
inline index_t block_rows(index_t N, index_t width, index_t pad) {
  const index_t cap = block_size(width);
  if (N <= cap) return (N + pad - 1) / pad * pad;
  index_t count = (N + cap - 1) / cap;
  count += count % 2;
  index_t b = ((N + count - 1) / count + pad - 1) / pad * pad;
  if ((b / pad) % 4 == 0) b += pad;
  return b;
}

namespace detail {

// How the discrete sweep stores a block's steps: segments of `segment` steps on a tape.
struct TapePlan {
  index_t segment = 0, checkpoints = 0, slot = 0;  // slot: elements per step on the tape
};

// One block: samples [first, first + real), computed as n >= real columns. The padding columns
// repeat the last real sample (so they stay exactly as finite as it is) and get a zero
// cotangent; the parameter sums skip them (they would add exact zeros). Padding to a whole
// SIMD vector keeps the kernels free of scalar edge loops, which matters for tiny N.
struct Block {
  index_t first, real, n;
};

// Blocks of the data set and the first non-finite step seen in each (steps + 1 = none).
template <class T>
struct BlockPlan {
  static constexpr index_t pad = 64 / sizeof(T);  // one AVX-512 vector (gemm: one AVX2 tile)
  static index_t round_up(index_t n) { return (n + pad - 1) / pad * pad; }

  explicit BlockPlan(const Problem<T>& pb)
      : rows(block_rows(pb.N, std::max(pb.dyn.field.D, pb.dyn.field.H), pad)),
        count((pb.N + rows - 1) / rows),
        groups(group_count(pb, count)),
        first_bad(std::size_t(count), pb.dyn.steps() + 1) {
    // Multiply-adds of one forward sweep (the backward costs about twice as much).
    const auto& f = pb.dyn.field;
    const double per_sample_step = double(pb.dyn.tab.stages) * double(f.D) * double(f.H) *
                                   (f.bottleneck() ? 2.0 : 1.0);
    const double work = 3.0 * double(pb.N) * double(pb.dyn.steps()) * per_sample_step;
    const auto by_work = index_t(work / min_work_per_thread) + 1;
    threads = int(std::clamp<index_t>(std::min<index_t>(get_num_threads(), by_work), 1,
                                      std::max<index_t>(count, 1)));
  }
  // Elements of one group's gradient accumulator: field parameters, then P, then c.
  static index_t gradient_size(const Problem<T>& pb) {
    const index_t C = pb.readout.classes;
    return pb.dyn.field.size() + C * pb.dyn.field.D + C;
  }
  static index_t group_count(const Problem<T>& pb, index_t count) {
    const double bytes = double(gradient_size(pb)) * double(sizeof(T));
    const auto affordable = std::max<index_t>(2, index_t(group_budget_bytes / bytes));
    return std::min({count, max_groups, affordable});
  }
  Block block(const Problem<T>& pb, index_t b) const {
    const index_t real = std::min(rows, pb.N - b * rows);
    return {b * rows, real, round_up(real)};
  }
  // Blocks [group_begin(g), group_begin(g + 1)) form group g.
  index_t group_begin(index_t g) const { return count * g / groups; }

  index_t rows, count, groups;  // rows: samples per block, a multiple of pad
  int threads = 1;
  std::vector<index_t> first_bad;
};

// One thread's workspace, allocated once per call (all buffers sized for full blocks).
template <class T>
struct SweepState {
  SweepState(const Problem<T>& pb, index_t capacity, const TapePlan& tape)
      : reverse(pb.dyn.field, pb.dyn.tab.stages, capacity), tape_plan(tape) {
    const auto& f = pb.dyn.field;
    const index_t len = f.D * capacity;
    const index_t zlen = std::max<index_t>(pb.readout.classes, 1) * capacity;
    const index_t stage_len = StepStages<T>::size(f, pb.dyn.tab.stages, capacity);
    const index_t tape_len = tape.segment > 0 ? (tape.segment + 1) * tape.slot : stage_len;
    memory = Buffer<T>(4 * len + 2 * zlen + tape.checkpoints * len + tape_len);
    T* p = memory.data();
    cur = p, p += len;
    next = p, p += len;
    xbar = p, p += len;
    tmp = p, p += len;
    z = p, p += zlen;
    zbar = p, p += zlen;
    checkpoint_states = p, p += tape.checkpoints * len;
    tape_memory = p;
    scratch_stages = StepStages<T>::carve(f, pb.dyn.tab.stages, capacity, p);
    this->len = len;
  }
  // Slot j of the tape: the state x_j, then the stages of step j.
  T* slot_state(index_t j) { return tape_memory + j * tape_plan.slot; }
  StepStages<T> slot_stages(const Problem<T>& pb, index_t j, index_t capacity) {
    return StepStages<T>::carve(pb.dyn.field, pb.dyn.tab.stages, capacity, slot_state(j) + len);
  }
  T* dfield() { return grads; }
  T* dP(const Problem<T>& pb) { return grads + pb.dyn.field.size(); }
  T* dc(const Problem<T>& pb) { return dP(pb) + pb.readout.classes * pb.dyn.field.D; }

  ReverseWork<T> reverse;
  TapePlan tape_plan;
  StepStages<T> scratch_stages;  // stage buffers of the forward-only sweeps (front of the tape)
  Buffer<T> memory;
  T* grads = nullptr;  // the accumulator of the group being swept (gradient_size elements)
  T *cur, *next, *xbar, *tmp, *z, *zbar, *checkpoint_states, *tape_memory;
  index_t len;
};

// x0 (D x n) = [X rows, zeros]^T for the block's samples; padding columns repeat the last one.
template <class T>
void load_initial_state(const Problem<T>& pb, const Block& blk, T* x) {
  const index_t D = pb.dyn.field.D, dim = pb.dim(), n = blk.n;
  for (index_t d = 0; d < D; ++d)
    for (index_t s = 0; s < n; ++s) {
      const index_t sample = blk.first + std::min(s, blk.real - 1);
      x[d * n + s] = d < dim ? pb.X[sample * dim + d] : T(0);
    }
}

// The block's rows of a row-major (N, width) array = the first `width` features of x (D x n).
template <class T>
void store_rows(const Block& blk, index_t width, const T* x, T* out) {
  for (index_t s = 0; s < blk.real; ++s)
    for (index_t d = 0; d < width; ++d) out[(blk.first + s) * width + d] = x[d * blk.n + s];
}

// The block x (D x n) = its rows of a row-major (N, D) array; zeros in the padding columns.
template <class T>
void load_rows(const Block& blk, index_t D, const T* in, T* x) {
  for (index_t d = 0; d < D; ++d)
    for (index_t s = 0; s < blk.n; ++s)
      x[d * blk.n + s] = s < blk.real ? in[(blk.first + s) * D + d] : T(0);
}

// x (D x n) += the block's rows of a row-major (N, D) array (a cotangent on a state).
template <class T>
void add_rows(const Block& blk, index_t D, const T* in, T* x) {
  for (index_t d = 0; d < D; ++d)
    for (index_t s = 0; s < blk.real; ++s) x[d * blk.n + s] += in[(blk.first + s) * D + d];
}

// The cotangent of a vjp: on the final state x_S only (N, D), or on every state x_0..x_S
// (steps + 1, N, D), whose row j the reverse sweeps add when they reach x_j.
template <class T>
struct StateCotangent {
  const T* data = nullptr;
  bool every_state = false;
  index_t slice = 0;  // N * D
  const T* final(index_t steps) const { return every_state ? data + steps * slice : data; }
  // Adds row j (j < steps) to the block's xbar when there is one.
  void add(const Block& blk, index_t D, index_t j, T* xbar) const {
    if (every_state) add_rows(blk, D, data + j * slice, xbar);
  }
};

// Throws non_finite_error naming the first step (over all blocks) whose state was not finite.
template <class T>
void raise_if_non_finite(const Problem<T>& pb, const BlockPlan<T>& plan) {
  const index_t steps = pb.dyn.steps();
  const index_t bad = *std::min_element(plan.first_bad.begin(), plan.first_bad.end());
  if (bad > steps) return;
  const double t0 = double(bad) * double(pb.dyn.dt), t = double(bad + 1) * double(pb.dyn.dt);
  std::ostringstream msg;
  msg << "the state became non-finite (NaN or Inf) in step " << bad << " (steps are counted "
      << "from 0; " << steps << " in all), from t = " << t0 << " to t = " << t
      << " (for a ResNet: layer " << bad << "); reduce the step size, the weights or the inputs";
  throw non_finite_error(msg.str(), long(bad), t);
}

// Data loss of the block's states x (D x n) times `weight`; with `grad`,
// xbar (+)= weight * dl/dx and the thread's dP, dc += weight * dl/d(P, c).
template <class T>
double state_loss(const Problem<T>& pb, const Targets<T>& targets, SweepState<T>& st,
                  const Block& blk, const T* x, double weight, bool grad, bool accumulate) {
  const index_t D = pb.dyn.field.D, C = pb.readout.classes, n = blk.n;
  readout(pb.readout, n, D, x, st.z);
  const double l =
      block_loss(targets, C, blk.first, blk.real, n, st.z, grad ? st.zbar : nullptr, weight);
  if (grad) readout_clamp_vjp(pb.readout, n, st.z, st.zbar);
  if (grad)
    readout_vjp(pb.readout, n, blk.real, D, x, st.zbar, st.xbar, accumulate, st.dP(pb),
                st.dc(pb));
  return weight * l;
}

// Trapezoid weight of state j in the turnpike loss dt * (l_0/2 + l_1 + ... + l_S/2).
template <class T>
double trapezoid_weight(const Problem<T>& pb, index_t j) {
  const double half = (j == 0 || j == pb.dyn.steps()) ? 0.5 : 1.0;
  return double(pb.dyn.dt) * half;
}

// Discrete forward and reverse sweep of one block. With targets: returns the block's loss and
// leaves d loss/d x0 in st.xbar (and, with stats, adds the final logits' PredictionStats);
// with a cotangent on the states instead: returns 0.
template <class Act, class T>
double discrete_block(const Problem<T>& pb, const Targets<T>* targets,
                      const StateCotangent<T>& cotangent,
                      bool turnpike, SweepState<T>& st, index_t cap, const Block& blk,
                      index_t& bad, PredictionStats* stats) {
  const index_t n = blk.n, len = pb.dyn.field.D * n, steps = pb.dyn.steps();
  const index_t segment = st.tape_plan.segment;
  const bool single = segment == steps;  // the forward sweep fills the tape directly
  double loss = 0.0;
  // Forward: states on the tape (single segment) or checkpoints every `segment` steps.
  T* x = single ? st.slot_state(0) : st.cur;
  load_initial_state(pb, blk, x);
  for (index_t j = 0; j < steps; ++j) {
    if (!single && j % segment == 0)
      std::copy(x, x + len, st.checkpoint_states + (j / segment) * st.len);
    if (turnpike)
      loss += state_loss(pb, *targets, st, blk, x, trapezoid_weight(pb, j), false, false);
    T* x_next = single ? st.slot_state(j + 1) : st.next;
    StepStages<T> stages = single ? st.slot_stages(pb, j, cap) : st.slot_stages(pb, 0, cap);
    rk_step<Act>(pb.dyn, j, n, x, x_next, stages);
    if (!single && !all_finite(len, x_next)) {
      bad = j;
      return 0.0;
    }
    if (!single) std::swap(st.cur, st.next);
    x = single ? x_next : st.cur;
  }
  // With every state on the tape one check of the last suffices: a non-finite component stays
  // non-finite (x + dt sum_i b_i K_i adds to an Inf or NaN), and the first bad step is then
  // looked up on the tape. (The W2 D = 2 ResNet spent 5% of its time checking every step.)
  if (single && !all_finite(len, x)) {
    bad = 0;
    while (all_finite(len, st.slot_state(bad + 1))) ++bad;
    return 0.0;
  }
  // Cotangent of the final state.
  if (targets) {
    const double w = turnpike ? trapezoid_weight(pb, steps) : 1.0;
    loss += state_loss(pb, *targets, st, blk, x, w, true, false);
    if (stats)  // st.z: the final logits, before the turnpike's reverse sweep reuses it
      block_prediction_stats(*targets, pb.readout.classes, blk.first, blk.real, blk.n, st.z,
                             *stats);
  } else {
    load_rows(blk, pb.dyn.field.D, cotangent.final(steps), st.xbar);
  }
  // Reverse sweep, segment by segment from the end.
  for (index_t s = (steps - 1) / segment; s >= 0; --s) {
    const index_t j0 = s * segment, j1 = std::min(steps, j0 + segment);
    if (!single) {  // recompute the segment's states and stages from its checkpoint
      std::copy(st.checkpoint_states + s * st.len, st.checkpoint_states + s * st.len + len,
                st.slot_state(0));
      for (index_t j = j0; j < j1; ++j) {
        StepStages<T> stages = st.slot_stages(pb, j - j0, cap);
        rk_step<Act>(pb.dyn, j, n, st.slot_state(j - j0), st.slot_state(j - j0 + 1), stages);
      }
    }
    for (index_t j = j1 - 1; j >= j0; --j) {
      StepStages<T> stages = st.slot_stages(pb, j - j0, cap);
      stages.X[0] = st.slot_state(j - j0);
      rk_step_vjp<Act>(pb.dyn, j, n, blk.real, stages, st.xbar, st.dfield(), st.reverse);
      if (turnpike)
        state_loss(pb, *targets, st, blk, stages.X[0], trapezoid_weight(pb, j), true, true);
      cotangent.add(blk, pb.dyn.field.D, j, st.xbar);
    }
  }
  return loss;
}

// States of the flow kept by a forward sweep (forward_states): row i, (N, D) row-major, is the
// state x_{i * stride}, for i * stride < steps. stride = 1 keeps every state but the last.
template <class T>
struct StoredStates {
  const T* data = nullptr;
  index_t stride = 1;
  index_t slice = 0;  // N * D
  bool stages = false;  // data is a stage tape (forward_stage_tape), not states
  const T* row(index_t i) const { return data + i * slice; }
};

// Calls fn(r, row) for the rows of one step on the stage tape, each n columns of a block: the
// state x_j (D rows), then per stage X_i (i > 0; D rows), K_i (D rows) and the field's cache.
template <class T, class Fn>
void for_each_tape_row(const Dynamics<T>& dyn, index_t n, T* x, StepStages<T>& s, Fn fn) {
  const index_t D = dyn.field.D, c = dyn.field.cache_size(1);
  index_t r = 0;
  auto rows = [&](T* p, index_t count) {
    for (index_t q = 0; q < count; ++q) fn(r++, p + q * n);
  };
  rows(x, D);
  for (int i = 0; i < dyn.tab.stages; ++i) {
    if (i > 0) rows(s.X[i], D);
    rows(s.K[i], D);
    rows(s.cache[i], c);
  }
}

// The discrete reverse sweep of one block from a stage tape (forward_stage_tape): each step's
// state and stages are read back, not recomputed; the reverse is discrete_block's, so the
// products equal vjp's bitwise. The padding columns repeat the last real one, as the forward
// sweep computed them. Leaves d/dx0 in st.xbar; returns 0.
template <class Act, class T>
double stage_tape_block(const Problem<T>& pb, const T* tape, const StateCotangent<T>& cotangent,
                        SweepState<T>& st, index_t cap, const Block& blk) {
  const index_t n = blk.n, D = pb.dyn.field.D, N = pb.N, steps = pb.dyn.steps();
  const index_t step_len = (D + StepStages<T>::size(pb.dyn.field, pb.dyn.tab.stages, 1)) * N;
  load_rows(blk, D, cotangent.final(steps), st.xbar);
  StepStages<T> stages = st.slot_stages(pb, 0, cap);
  T* x = st.slot_state(0);
  for (index_t j = steps - 1; j >= 0; --j) {
    const T* step = tape + j * step_len + blk.first;
    for_each_tape_row(pb.dyn, n, x, stages, [&](index_t r, T* row) {
      std::copy(step + r * N, step + r * N + blk.real, row);
      std::fill(row + blk.real, row + n, row[blk.real - 1]);
    });
    stages.X[0] = x;
    rk_step_vjp<Act>(pb.dyn, j, n, blk.real, stages, st.xbar, st.dfield(), st.reverse);
    cotangent.add(blk, D, j, st.xbar);
  }
  return 0.0;
}

// The block x (D x n) = its rows of a row-major (N, D) array of states; the padding columns
// repeat the last real sample, as load_initial_state and the forward sweep have them.
template <class T>
void load_state_rows(const Block& blk, index_t D, const T* in, T* x) {
  for (index_t d = 0; d < D; ++d)
    for (index_t s = 0; s < blk.n; ++s)
      x[d * blk.n + s] = in[(blk.first + std::min(s, blk.real - 1)) * D + d];
}

// The discrete reverse sweep of one block from states a forward sweep kept: each stored
// segment [j0, j0 + stride) is recomputed from its first state (its states and stages on the
// tape, in inner segments of tape_plan.segment steps with inner checkpoints when the tape
// budget caps it), then swept in reverse. The states and stages recomputed are bitwise those
// of discrete_block's forward, and the reverse runs the same operations in the same order, so
// the products equal vjp's bitwise. Leaves d/dx0 in st.xbar; returns 0.
template <class Act, class T>
double stored_states_block(const Problem<T>& pb, const StoredStates<T>& stored,
                           const StateCotangent<T>& cotangent, SweepState<T>& st, index_t cap,
                           const Block& blk) {
  const index_t n = blk.n, D = pb.dyn.field.D, len = D * n, steps = pb.dyn.steps();
  const index_t inner = st.tape_plan.segment;
  load_rows(blk, D, cotangent.final(steps), st.xbar);
  for (index_t i = (steps - 1) / stored.stride; i >= 0; --i) {
    const index_t s0 = i * stored.stride, s1 = std::min(steps, s0 + stored.stride);
    // Inner checkpoints of the stored segment when the tape cannot hold all of it.
    if (s1 - s0 > inner) {
      load_state_rows(blk, D, stored.row(i), st.cur);
      for (index_t j = s0; j < s1; ++j) {
        if ((j - s0) % inner == 0)
          std::copy(st.cur, st.cur + len, st.checkpoint_states + ((j - s0) / inner) * st.len);
        StepStages<T> scratch = st.slot_stages(pb, 0, cap);
        rk_step<Act>(pb.dyn, j, n, st.cur, st.next, scratch);
        std::swap(st.cur, st.next);
      }
    }
    for (index_t k = (s1 - s0 - 1) / inner; k >= 0; --k) {
      const index_t j0 = s0 + k * inner, j1 = std::min(s1, j0 + inner);
      if (s1 - s0 > inner)
        std::copy(st.checkpoint_states + k * st.len, st.checkpoint_states + k * st.len + len,
                  st.slot_state(0));
      else
        load_state_rows(blk, D, stored.row(i), st.slot_state(0));
      for (index_t j = j0; j < j1; ++j) {
        StepStages<T> stages = st.slot_stages(pb, j - j0, cap);
        rk_step<Act>(pb.dyn, j, n, st.slot_state(j - j0), st.slot_state(j - j0 + 1), stages);
      }
      for (index_t j = j1 - 1; j >= j0; --j) {
        StepStages<T> stages = st.slot_stages(pb, j - j0, cap);
        stages.X[0] = st.slot_state(j - j0);
        rk_step_vjp<Act>(pb.dyn, j, n, blk.real, stages, st.xbar, st.dfield(), st.reverse);
        cotangent.add(blk, D, j, st.xbar);
      }
    }
  }
  return 0.0;
}

// The running cost of the turnpike loss as a source of the adjoint equation:
// Ka -= dl/dx(X), dP += weight dl/dP(X), dc += weight dl/dc(X).
template <class T>
struct RunningCost {
  const Problem<T>& pb;
  const Targets<T>& targets;
  SweepState<T>& st;
  const Block& blk;
  void operator()(index_t n, const T* X, T* Ka, double weight) const {
    const index_t D = pb.dyn.field.D, C = pb.readout.classes;
    readout(pb.readout, n, D, X, st.z);
    block_loss(targets, C, blk.first, blk.real, n, st.z, st.zbar, 1.0);
    readout_clamp_vjp(pb.readout, n, st.z, st.zbar);
    gemm(D, n, C, T(-1), pb.readout.P, 1, D, st.zbar, n, Ka, n, true);  // Ka -= P^T zbar
    detail::affine_param_grads(C, D, blk.real, n, T(weight), st.zbar, X, st.dP(pb), st.dc(pb));
  }
};

// Continuous (backsolve) adjoint of one block: forward to x_S without storing, then integrate
// (x, a, g) back to t = 0. Leaves a(0) = d loss/d x0 in st.xbar (and, with targets and stats,
// adds the final logits' PredictionStats).
template <class Act, class T>
double backsolve_block(const Problem<T>& pb, const Targets<T>* targets,
                       const StateCotangent<T>& cotangent,
                       bool turnpike, SweepState<T>& st, const Block& blk, index_t& bad,
                       PredictionStats* stats) {
  const index_t n = blk.n, len = pb.dyn.field.D * n, steps = pb.dyn.steps();
  StepStages<T>& stages = st.scratch_stages;
  double loss = 0.0;
  load_initial_state(pb, blk, st.cur);
  for (index_t j = 0; j < steps; ++j) {
    if (turnpike)
      loss += state_loss(pb, *targets, st, blk, st.cur, trapezoid_weight(pb, j), false, false);
    rk_step<Act>(pb.dyn, j, n, st.cur, st.next, stages);
    if (!all_finite(len, st.next)) {
      bad = j;
      return 0.0;
    }
    std::swap(st.cur, st.next);
  }
  // a(T): the terminal loss gradient, the given cotangent, or 0 for the pure running cost.
  if (targets && turnpike) {
    loss += state_loss(pb, *targets, st, blk, st.cur, trapezoid_weight(pb, steps), false,
                       false);
    std::fill(st.xbar, st.xbar + len, T(0));
  } else if (targets) {
    loss += state_loss(pb, *targets, st, blk, st.cur, 1.0, true, false);
  } else {
    load_rows(blk, pb.dyn.field.D, cotangent.final(steps), st.xbar);
  }
  if (targets && stats)  // st.z: the final logits of either branch above
    block_prediction_stats(*targets, pb.readout.classes, blk.first, blk.real, blk.n, st.z,
                           *stats);
  // The cotangent on x_j (every_state) is a jump of the adjoint at t_j: a(t_j) += v_j.
  for (index_t j = steps - 1; j >= 0; --j) {
    if (targets && turnpike)
      backsolve_step<Act>(pb.dyn, j, n, blk.real, st.cur, st.xbar, st.dfield(), stages, st.reverse,
                          RunningCost<T>{pb, *targets, st, blk});
    else
      backsolve_step<Act>(pb.dyn, j, n, blk.real, st.cur, st.xbar, st.dfield(), stages, st.reverse,
                          NoSource{});
    cotangent.add(blk, pb.dyn.field.D, j, st.xbar);
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

// The tape of the discrete sweep for blocks of `cap` samples (see the top of this file).
template <class T>
TapePlan plan_tape(const Problem<T>& pb, index_t cap, index_t checkpoints, bool discrete) {
  TapePlan t;
  if (!discrete) return t;
  const index_t steps = pb.dyn.steps();
  t.slot = pb.dyn.field.D * cap + StepStages<T>::size(pb.dyn.field, pb.dyn.tab.stages, cap);
  t.segment = (checkpoints > 0 && checkpoints < steps) ? (steps + checkpoints - 1) / checkpoints
                                                       : steps;
  const double slot_bytes = double(t.slot) * sizeof(T);
  const auto affordable = index_t(std::max(1.0, tape_budget_bytes / slot_bytes - 1));
  t.segment = std::min(t.segment, affordable);
  t.checkpoints = t.segment < steps ? (steps + t.segment - 1) / t.segment : 0;
  return t;
}

// The tape of the reverse sweep from stored states: segments of at most `stride` steps (capped
// by the budget as plan_tape caps them), with inner checkpoints where the cap splits a stride.
template <class T>
TapePlan plan_stored_tape(const Problem<T>& pb, index_t cap, index_t stride) {
  TapePlan t;
  t.slot = pb.dyn.field.D * cap + StepStages<T>::size(pb.dyn.field, pb.dyn.tab.stages, cap);
  const double slot_bytes = double(t.slot) * sizeof(T);
  const auto affordable = index_t(std::max(1.0, tape_budget_bytes / slot_bytes - 1));
  t.segment = std::min(std::min(stride, pb.dyn.steps()), affordable);
  t.checkpoints = t.segment < stride ? (stride + t.segment - 1) / t.segment : 0;
  return t;
}

// Forward-only sweep of every block: calls on_state(j, x_j, block) for every state and
// on_final(state, block) with x_S (D x n) in state.cur.
template <class T, class OnState, class OnFinal>
void forward_sweep(const Problem<T>& pb, BlockPlan<T>& plan, OnState on_state, OnFinal on_final) {
  const index_t D = pb.dyn.field.D, steps = pb.dyn.steps();
  std::vector<std::unique_ptr<SweepState<T>>> states(std::size_t(plan.threads));
  with_activation(pb.dyn.activation, [&](auto act) {
    using Act = decltype(act);
    parallel_for(plan.count, plan.threads, [&](int t, index_t b) {
      if (!states[t]) states[t] = std::make_unique<SweepState<T>>(pb, plan.rows, TapePlan{});
      auto& st = *states[t];
      const Block blk = plan.block(pb, b);
      const index_t n = blk.n;
      load_initial_state(pb, blk, st.cur);
      on_state(index_t(0), st.cur, blk);
      for (index_t j = 0; j < steps; ++j) {
        rk_step<Act>(pb.dyn, j, n, st.cur, st.next, st.scratch_stages);
        if (!all_finite(D * n, st.next)) {
          plan.first_bad[b] = j;
          return;
        }
        std::swap(st.cur, st.next);
        on_state(j + 1, st.cur, blk);
      }
      on_final(st, blk);
    });
  });
  raise_if_non_finite(pb, plan);
}

}  // namespace detail

// Every state on the step grid: out (steps + 1, N, D), row-major.
template <class T>
void trajectory(const Problem<T>& pb, T* out) {
  detail::BlockPlan<T> plan(pb);
  const index_t D = pb.dyn.field.D, slice = pb.N * D;
  detail::forward_sweep(
      pb, plan,
      [&](index_t j, const T* x, const detail::Block& blk) {
        detail::store_rows(blk, D, x, out + j * slice);
      },
      [](auto&, const detail::Block&) {});
}

// The final states x_S only: out (N, D), row-major (the last slice of trajectory's output).
template <class T>
void final_state(const Problem<T>& pb, T* out) {
  detail::BlockPlan<T> plan(pb);
  const index_t D = pb.dyn.field.D;
  detail::forward_sweep(
      pb, plan, [](index_t, const T*, const detail::Block&) {},
      [&](detail::SweepState<T>& st, const detail::Block& blk) {
        detail::store_rows(blk, D, st.cur, out);
      });
}

// The forward sweep of a training step: the states a reverse sweep needs, kept in `states`
// (row i = x_{i * stride} for i * stride < steps: ceil(steps / stride) rows of (N, D)), and the
// output: the final states (N, D), or with `trajectory` every state (steps + 1, N, D). The
// states are trajectory's bitwise; vjp_from_states takes them instead of sweeping forward again.
template <class T>
void forward_states(const Problem<T>& pb, index_t stride, bool trajectory, T* states, T* out) {
  detail::BlockPlan<T> plan(pb);
  const index_t D = pb.dyn.field.D, slice = pb.N * D, steps = pb.dyn.steps();
  detail::forward_sweep(
      pb, plan,
      [&](index_t j, const T* x, const detail::Block& blk) {
        if (j < steps && j % stride == 0)
          detail::store_rows(blk, D, x, states + (j / stride) * slice);
        if (trajectory) detail::store_rows(blk, D, x, out + j * slice);
      },
      [&](detail::SweepState<T>& st, const detail::Block& blk) {
        if (!trajectory) detail::store_rows(blk, D, st.cur, out);
      });
}

// Elements per sample and step of forward_stage_tape's tape: the state and the step's stages.
template <class T>
index_t stage_tape_width(const Dynamics<T>& dyn) {
  return dyn.field.D + StepStages<T>::size(dyn.field, dyn.tab.stages, 1);
}

// forward_states keeping the stages too: `tape` (steps, stage_tape_width, N), step j's state
// and stages, each row over all N samples (the blocks' feature-major rows side by side, so no
// transposition either way). vjp_from_states with stages reads them back: no stage is
// evaluated twice in a training step. `out` as forward_states'.
template <class T>
void forward_stage_tape(const Problem<T>& pb, bool trajectory, T* tape, T* out) {
  detail::BlockPlan<T> plan(pb);
  const index_t D = pb.dyn.field.D, N = pb.N, steps = pb.dyn.steps(), slice = N * D;
  const index_t step_len = stage_tape_width(pb.dyn) * N;
  std::vector<std::unique_ptr<detail::SweepState<T>>> states(std::size_t(plan.threads));
  with_activation(pb.dyn.activation, [&](auto act) {
    using Act = decltype(act);
    parallel_for(plan.count, plan.threads, [&](int t, index_t b) {
      if (!states[t])
        states[t] = std::make_unique<detail::SweepState<T>>(pb, plan.rows, detail::TapePlan{});
      auto& st = *states[t];
      const detail::Block blk = plan.block(pb, b);
      const index_t n = blk.n;
      detail::load_initial_state(pb, blk, st.cur);
      if (trajectory) detail::store_rows(blk, D, st.cur, out);
      for (index_t j = 0; j < steps; ++j) {
        rk_step<Act>(pb.dyn, j, n, st.cur, st.next, st.scratch_stages);
        if (!all_finite(D * n, st.next)) {
          plan.first_bad[b] = j;
          return;
        }
        T* step = tape + j * step_len + blk.first;
        detail::for_each_tape_row(pb.dyn, n, st.cur, st.scratch_stages, [&](index_t r, T* row) {
          std::copy(row, row + blk.real, step + r * N);
        });
        std::swap(st.cur, st.next);
        if (trajectory) detail::store_rows(blk, D, st.cur, out + (j + 1) * slice);
      }
      if (!trajectory) detail::store_rows(blk, D, st.cur, out);
    });
  });
  detail::raise_if_non_finite(pb, plan);
}

namespace detail {
// Throws non_finite_error when a block's logits (overflow: one flag per block) were not finite.
template <class T>
void raise_if_readout_overflowed(const Problem<T>& pb, const std::vector<char>& overflow) {
  if (std::find(overflow.begin(), overflow.end(), 1) != overflow.end())
    throw non_finite_error(
        "the logits x P^T + c are not finite: the readout overflowed (the final states or P, c "
        "are too large)",
        long(pb.dyn.steps()), double(pb.dyn.steps()) * double(pb.dyn.dt));
}
}  // namespace detail

// Logits of the final states: out (N, classes), row-major.
template <class T>
void logits(const Problem<T>& pb, T* out) {
  detail::BlockPlan<T> plan(pb);
  const index_t D = pb.dyn.field.D, C = pb.readout.classes;
  std::vector<char> overflow(std::size_t(plan.count), 0);  // per block: logits not finite
  detail::forward_sweep(
      pb, plan, [](index_t, const T*, const detail::Block&) {},
      [&](detail::SweepState<T>& st, const detail::Block& blk) {
        readout(pb.readout, blk.n, D, st.cur, st.z);
        overflow[std::size_t(blk.first / plan.rows)] = !all_finite(C * blk.n, st.z);
        detail::store_rows(blk, C, st.z, out);
      });
  detail::raise_if_readout_overflowed(pb, overflow);
}

namespace detail {

// Adds `count` gradient accumulators (gradient_size each: field, P, c) into dfield (and dP, dc
// when dP is not null) in accumulator order: the same sums in the same order for any thread
// count. The first is copied: no pass that fills the outputs with zeros first.
template <class T>
void reduce_gradients(const Problem<T>& pb, index_t count, const T* accumulators, T* dfield,
                      T* dP, T* dc) {
  const index_t nf = pb.dyn.field.size(), C = pb.readout.classes, D = pb.dyn.field.D;
  const index_t gsize = BlockPlan<T>::gradient_size(pb);
  for (index_t g = 0; g < count; ++g) {
    const T* acc = accumulators + g * gsize;
    auto reduce = [&](index_t len, const T* from, T* to) {
      if (g == 0) std::copy(from, from + len, to);
      else for (index_t i = 0; i < len; ++i) to[i] += from[i];
    };
    reduce(nf, acc, dfield);
    if (dP) reduce(C * D, acc + nf, dP), reduce(C, acc + nf + C * D, dc);
  }
}

// Shared driver of loss_and_grad and vjp: runs the chosen block sweep on every block, reduces
// the group gradients in group order into `dfield` (and dP, dc), writes dX (N, dim) if asked,
// and returns the block losses summed in block order; with targets and `stats`, adds the
// blocks' PredictionStats to it in block order.
template <class T>
double gradient_sweep(const Problem<T>& pb, const Targets<T>* targets, const T* cotangent,
                      const GradientOptions& opt, T* dfield, T* dP, T* dc, T* dX,
                      PredictionStats* stats = nullptr,
                      const StoredStates<T>* stored = nullptr) {
  BlockPlan<T> plan(pb);
  const bool discrete = opt.gradient == Gradient::discrete;
  const TapePlan tape = stored ? plan_stored_tape(pb, plan.rows, stored->stages ? 1 : stored->stride)
                               : plan_tape(pb, plan.rows, opt.checkpoints, discrete);
  std::vector<std::unique_ptr<SweepState<T>>> states(std::size_t(plan.threads));
  std::vector<double> block_losses(std::size_t(plan.count), 0.0);
  std::vector<PredictionStats> block_stats(stats && targets ? std::size_t(plan.count) : 0);
  const index_t gsize = BlockPlan<T>::gradient_size(pb);
  Buffer<T> group_grads(plan.groups * gsize);  // each zeroed by the thread that fills it
  const StateCotangent<T> cot{cotangent, opt.cotangent_every_state, pb.N * pb.dyn.field.D};
  with_activation(pb.dyn.activation, [&](auto act) {
    using Act = decltype(act);
    parallel_for(plan.groups, plan.threads, [&](int t, index_t g) {
      if (!states[t]) states[t] = std::make_unique<SweepState<T>>(pb, plan.rows, tape);
      auto& st = *states[t];
      st.grads = group_grads.data() + g * gsize;
      std::fill(st.grads, st.grads + gsize, T(0));
      for (index_t b = plan.group_begin(g); b < plan.group_begin(g + 1); ++b) {
        const Block blk = plan.block(pb, b);
        index_t& bad = plan.first_bad[b];
        PredictionStats* own = block_stats.empty() ? nullptr : &block_stats[std::size_t(b)];
        block_losses[b] =
            stored && stored->stages
                ? stage_tape_block<Act>(pb, stored->data, cot, st, plan.rows, blk)
            : stored ? stored_states_block<Act>(pb, *stored, cot, st, plan.rows, blk)
            : discrete ? discrete_block<Act>(pb, targets, cot, opt.turnpike, st, plan.rows, blk,
                                             bad, own)
                                   : backsolve_block<Act>(pb, targets, cot, opt.turnpike, st,
                                                          blk, bad, own);
        // A block that went non-finite ends its own sweep, not its group's: a later block may
        // go bad at an earlier step, and the error names the first step over all blocks, as
        // the forward sweeps do.
        if (bad <= pb.dyn.steps()) continue;
        if (dX) store_rows(blk, pb.dim(), st.xbar, dX);
      }
    });
  });
  raise_if_non_finite(pb, plan);
  reduce_gradients(pb, plan.groups, group_grads.data(), dfield, dP, dc);
  double loss = 0.0;
  for (double l : block_losses) loss += l;
  for (const auto& s : block_stats) stats->add(s);
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

namespace detail {

// loss += wd |w|^2, g += 2 wd w for one tensor of `size` values.
template <class T>
double add_weight_decay(double wd, const T* w, index_t size, T* g) {
  double loss = 0.0;
  for (index_t i = 0; i < size; ++i) {
    loss += wd * double(w[i]) * double(w[i]);
    g[i] += T(2.0 * wd) * w[i];
  }
  return loss;
}

// loss += l1 |w|_1, g += l1 sign(w): the subgradient 0 at w = 0 (a weight at exactly 0 stays
// there only if the data gradient is 0 too; no proximal step, see the README).
template <class T>
double add_l1(double l1, const T* w, index_t size, T* g) {
  double loss = 0.0;
  for (index_t i = 0; i < size; ++i) {
    loss += l1 * std::abs(double(w[i]));
    g[i] += w[i] > T(0) ? T(l1) : w[i] < T(0) ? T(-l1) : T(0);
  }
  return loss;
}

// The terms of loss_and_grad beyond the data loss of the sweep, and its finiteness checks:
// the turnpike weight, weight decay, L1; shared by the fixed-step and adaptive sweeps.
template <class T>
double finish_loss(const Problem<T>& pb, const GradientOptions& opt, double loss, T* dfield,
                   T* dP, T* dc) {
  const index_t C = pb.readout.classes, D = pb.dyn.field.D;
  if (opt.turnpike && opt.turnpike_weight != 1.0) {  // d(w L)/dtheta = w dL/dtheta
    const T w = T(opt.turnpike_weight);
    loss *= opt.turnpike_weight;
    for (index_t i = 0; i < pb.dyn.field.size(); ++i) dfield[i] *= w;
    for (index_t i = 0; i < C * D; ++i) dP[i] *= w;
    for (index_t i = 0; i < C; ++i) dc[i] *= w;
  }
  T* g = dfield;
  for (auto [w, size] : detail::field_tensors(pb.dyn.field)) {
    if (opt.weight_decay != 0.0) loss += detail::add_weight_decay(opt.weight_decay, w, size, g);
    if (opt.l1 != 0.0) loss += detail::add_l1(opt.l1, w, size, g);
    g += size;
  }
  if (opt.decay_readout && opt.weight_decay != 0.0)
    loss += detail::add_weight_decay(opt.weight_decay, pb.readout.P, C * D, dP);
  if (!std::isfinite(loss)) throw non_finite_error("the loss is not finite", -1, 0.0);
  detail::raise_if_gradient_non_finite(pb.dyn.field.size(), dfield, "field parameters");
  detail::raise_if_gradient_non_finite(C * D, dP, "P");
  detail::raise_if_gradient_non_finite(C, dc, "c");
  return loss;
}
}  // namespace detail

// Loss and gradient. dfield: flat [W1 | b1 | W2 | b2] (FieldParams::size()), dP (C, D), dc (C).
// loss = data loss (terminal, or turnpike_weight * the trapezoid rule over the step grid when
//        turnpike) + weight_decay * sum(theta^2) over the field parameters (and P when
//        decay_readout) + l1 * sum |theta| over the field parameters.
// stats (optional): receives the PredictionStats of the final logits (losses.hpp), which the
// forward sweep computes anyway; its values are added to.
template <class T>
double loss_and_grad(const Problem<T>& pb, const Targets<T>& targets, const GradientOptions& opt,
                     T* dfield, T* dP, T* dc, PredictionStats* stats = nullptr) {
  const double data = detail::gradient_sweep(pb, &targets, static_cast<const T*>(nullptr), opt,
                                             dfield, dP, dc, static_cast<T*>(nullptr), stats);
  return detail::finish_loss(pb, opt, data, dfield, dP, dc);
}

// Vector-Jacobian product of the flow map X -> x_S for a cotangent (N, D) on x_S:
// dfield = (d x_S / d theta)^T cotangent (flat buffer), dX (N, dim) = (d x_S / d X)^T cotangent.
// With opt.cotangent_every_state the cotangent is (steps + 1, N, D), v_j on each state x_j, and
// the products are sum_j (d x_j / d theta)^T v_j and sum_j (d x_j / d X)^T v_j.
template <class T>
void vjp(const Problem<T>& pb, const T* cotangent, const GradientOptions& opt, T* dfield, T* dX) {
  Targets<T>* none = nullptr;
  detail::gradient_sweep(pb, none, cotangent, opt, dfield, static_cast<T*>(nullptr),
                         static_cast<T*>(nullptr), dX);
  detail::raise_if_gradient_non_finite(pb.dyn.field.size(), dfield, "field parameters");
  detail::raise_if_gradient_non_finite(pb.N * pb.dim(), dX, "X");
}

// vjp's discrete product (the same values, bitwise) from the states forward_states kept with
// the same stride (states: ceil(steps / stride) rows of (N, D)), without sweeping forward from
// X again: each kept segment's stages are recomputed from its first state on the way back.
// With `stages`, `states` is forward_stage_tape's tape (stride unused): nothing is recomputed.
template <class T>
void vjp_from_states(const Problem<T>& pb, const T* states, index_t stride, bool stages,
                     const T* cotangent, bool cotangent_every_state, T* dfield, T* dX) {
  GradientOptions opt;
  opt.cotangent_every_state = cotangent_every_state;
  const detail::StoredStates<T> stored{states, stride, pb.N * pb.dyn.field.D, stages};
  Targets<T>* none = nullptr;
  detail::gradient_sweep(pb, none, cotangent, opt, dfield, static_cast<T*>(nullptr),
                         static_cast<T*>(nullptr), dX, nullptr, &stored);
  detail::raise_if_gradient_non_finite(pb.dyn.field.size(), dfield, "field parameters");
  detail::raise_if_gradient_non_finite(pb.N * pb.dim(), dX, "X");
}

}  // namespace resode
