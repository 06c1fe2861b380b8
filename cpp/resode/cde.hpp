// Neural controlled differential equations with fixed-step Runge-Kutta methods, forward and
// with the exact discrete gradient (the VJP of the discrete forward map) with respect to the
// initial map (A, a), the field's parameters and the observations U.
//
// The model of sample i (paths.hpp builds X_i from its observations):
//   z(t_{i,0}) = A x_{i,0} + a                         A (S, C), a (S,)
//   dz/dt      = G_k(z) dX_i/dt,  G_k(z) = reshape(F_k(z), (S, C)), row index d*C + c,
//   F_k the field of piece k (cde_field.hpp: outside, inside, bottleneck).
// The step grid of sample i: its breakpoints are its knots, the piece boundaries
// w_lo + j (w_hi - w_lo) / K strictly inside (t_{i,0}, T_i) and the requested output times
// strictly inside; each interval between breakpoints is cut into `substeps` equal steps. A step
// [tau, tau + h] uses the piece and the path interval containing tau + h/2; its stage j is
// evaluated at tau + c_j h on that path interval.
//
// Work decomposition: blocks of up to cde_block_size(width) samples in the feature-major layout
// of linalg.hpp (state S x n, field output S*C x n) run in lockstep, one field evaluation (a
// GEMM) per stage for the whole block, each sample (column) on its own grid: the step size h
// is folded into the control increment h dX/dt, which is per column anyway, so
//   K_i = G(Z_i) (h dX/dt)(tau + c_i h),  Z_i = z + sum_l a_il K_l,  z' = z + sum_i b_i K_i,
// and a sample with fewer steps than its block idles through the last ones with a zero
// increment (K_i = 0 exactly: its state and its cotangent pass unchanged). The samples of a
// block only need the same piece in each step (make_plan). OpenMP runs blocks; the gradient
// sweeps give each group of consecutive blocks its own accumulator, reduced in group order, so
// results do not depend on the thread count (as sweep.hpp does). The reverse sweep keeps every
// step's state (S x n per step) and, where the stage tape fits its budget, what each stage's VJP
// reads (Z_i, F_i and the field's cache: CdeStageTape), written by the forward sweep, so the
// reverse evaluates no field (but the bottleneck's hidden layer, computed again from Z_i); a
// block whose stage tape would not fit recomputes its stages from the kept states instead (the
// same arithmetic: the gradient is bitwise the same either way).
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <memory>
#include <sstream>
#include <vector>

#include "activations.hpp"
#include "buffer.hpp"
#include "cde_field.hpp"
#include "elementwise.hpp"
#include "errors.hpp"
#include "fields.hpp"
#include "linalg.hpp"
#include "losses.hpp"
#include "paths.hpp"
#include "tableau.hpp"
#include "threads.hpp"

namespace resode {

template <class T>
struct CdeProblem {
  CdeField<T> field;
  Tableau tab = tableau(Method::rk4);
  index_t substeps = 1;
  Interpolation interpolation = Interpolation::cubic;
  index_t N = 0, L = 0, C = 0;
  const T* U = nullptr;            // (N, L, C) row-major, NaN = missing or padding
  const double* times = nullptr;   // (L,) shared, or (N, L) with per_sample_times
  bool per_sample_times = false;
  const T* A = nullptr;            // (S, C)
  const T* a = nullptr;            // (S,)
  const double* out_times = nullptr;  // t= (out_count,), increasing; none when out_count == 0
  index_t out_count = 0;
  Readout<T> readout;              // logits and loss only: P (classes, S), c (classes,)
  // Adaptive methods (cde_adaptive.hpp): each sample's accepted step times t_{i,0} .. T_i,
  // replayed with `tab` (the solution stages of the embedded tableau) instead of the fixed
  // grid; null for the fixed-step methods.
  std::shared_ptr<const std::vector<std::vector<double>>> accepted;
  // The pieces' window [w_lo, w_hi]: the K pieces split it equally. Without one (has_window
  // false) it is the call's observation window [min_i t_{i,0}, max_i T_i], so a sample's result
  // depends on its batch when K > 1; a fixed window makes it the sample's own. Knots before
  // w_lo use piece 0, knots after w_hi piece K - 1.
  bool has_window = false;
  double window_lo = 0.0, window_hi = 0.0;

  const double* sample_times(index_t i) const { return per_sample_times ? times + i * L : times; }
  const T* sample_values(index_t i) const { return U + i * L * C; }
};

namespace detail {

// One step of a grid: [tau, tau + h] on path interval `interval`, with the field of `piece`.
struct CdeStep {
  double tau, h;
  index_t interval, piece;
};

// The step grid of one sample (shared by its block) and the state each output time reads.
struct CdeGrid {
  std::vector<double> breaks;
  std::vector<CdeStep> steps;
  std::vector<index_t> out_state;  // per output time: the index of its state on the grid
};

// Samples order[begin, begin + n), run together for `steps` steps (see make_plan).
struct CdeBlock {
  index_t begin, n, steps;
};

// The first non-finite state of a block: step (-1: none), its end time and the sample.
struct CdeBadStep {
  index_t step = -1, sample = 0;
  double t = 0.0;
};

// Samples per block: about 128 KiB per (width x block) buffer of doubles, between 32 and 240
// (sweep.hpp's block_size rule).
inline index_t cde_block_size(index_t width) {
  const index_t b = std::clamp<index_t>(16384 / std::max<index_t>(width, 1), 32, 240);
  return b - b % 16;
}

// Per-thread cap of the reverse sweep's tape of states: longer series get smaller blocks.
constexpr double cde_tape_budget_bytes = 256.0 * 1024 * 1024;

// Per-thread budget of the reverse sweep's stage tape (CdeStageTape); a block whose stage tape
// exceeds it recomputes its stages. The environment variable RESODE_CDE_STAGE_TAPE_BYTES
// overrides it (0: always recompute; the tests compare the two).
inline double cde_stage_tape_budget_bytes() {
  const char* env = std::getenv("RESODE_CDE_STAGE_TAPE_BYTES");
  if (env && *env) return std::max(0.0, std::strtod(env, nullptr));
  return 256.0 * 1024 * 1024;
}

// The layout of the stage tape of one step, per column: stage i keeps Z_i (i >= 1; Z_0 is the
// step's state, on the tape of states), F_i and the field's cache (none for outside without
// an output activation, whose VJP reads F only). The bottleneck's cache, its H hidden units, is
// not kept: the reverse computes it again from Z_i (recomputes_hidden). Read back from beyond
// L2 it cost more than its H x S multiply-adds (torchcde's spirals, H = 128, S = 8: the
// hidden units were 81% of the tape, and the first product that read them ran at a sixth of
// its in-cache rate).
struct CdeStageTape {
  index_t S = 0, O = 0, cache = 0, stages = 0;
  bool recomputes_hidden = false;
  template <class T>
  CdeStageTape(const CdeField<T>& f, int stage_count)
      : S(f.S), O(f.out()), stages(stage_count), recomputes_hidden(f.bottleneck()) {
    const bool reads_cache = !(f.kind == FieldKind::outside && !f.has_output_activation);
    cache = reads_cache && !recomputes_hidden ? f.cache_rows() : 0;
  }
  index_t rows_per_step() const { return (stages - 1) * S + stages * (O + cache); }
  // Rows before stage i's arrays within a step: Z_i, then F_i, then its cache.
  index_t stage_offset(index_t i) const {
    return i * (O + cache) + std::max<index_t>(i - 1, 0) * S;
  }
};

// Piece boundary j (1..K-1) of the pieces' window [t_lo, t_hi].
inline double piece_boundary(double t_lo, double t_hi, index_t K, index_t j) {
  return t_lo + double(j) * (t_hi - t_lo) / double(K);
}

// Samples, lengths, windows and blocks of a call; validates U, times and t.
template <class T>
struct CdePlan {
  std::vector<index_t> length, steps, order;  // per sample: observed rows, steps of its grid
  std::vector<CdeBlock> blocks;
  double t_lo = 0.0, t_hi = 0.0;  // the observation window [min_i t_{i,0}, max_i T_i]
  double w_lo = 0.0, w_hi = 0.0;  // the pieces' window (CdeProblem::has_window)
  index_t capacity = 0, max_length = 0, max_steps = 0, groups = 1;
  index_t stage_tape = 0;  // elements of the per-thread stage tape (0: every block recomputes)
  int threads = 1;

  index_t group_begin(index_t g) const { return index_t(blocks.size()) * g / groups; }
};

template <class T>
void check_paths(const CdeProblem<T>& pb, CdePlan<T>& plan) {
  const index_t N = pb.N, L = pb.L, C = pb.C;
  plan.length.assign(std::size_t(N), 0);
  for (index_t i = 0; i < N; ++i) {
    const T* U = pb.sample_values(i);
    const index_t len = observed_length(U, L, C);
    require(len > 0, [&] { return "U: sample " + std::to_string(i) + " has no observed value"; });
    require(len >= 2, [&] {
      return "U: sample " + std::to_string(i) +
             " has 1 observed row; a path needs at least 2 (rows after the last observed one "
             "are padding)";
    });
    for (index_t c = 0; c < C; ++c) {
      bool seen = false;
      for (index_t r = 0; r < len && !seen; ++r) seen = !std::isnan(U[r * C + c]);
      require(seen, [&] {
        return "U: channel " + std::to_string(c) + " of sample " + std::to_string(i) +
               " has no observed value";
      });
    }
    const double* t = pb.sample_times(i);
    for (index_t r = 0; r < len; ++r) {
      require(std::isfinite(t[r]), [&] {
        return "times must be finite over each sample's observed rows; got " +
               std::to_string(t[r]) + " at row " + std::to_string(r) + " of sample " +
               std::to_string(i);
      });
      require(r == 0 || t[r] > t[r - 1], [&] {
        return "times must be strictly increasing over each sample's observed rows; row " +
               std::to_string(r) + " of sample " + std::to_string(i) + " is not";
      });
    }
    plan.length[std::size_t(i)] = len;
  }
}

template <class T>
void set_window(const CdeProblem<T>& pb, CdePlan<T>& plan) {
  plan.t_lo = pb.sample_times(0)[0];
  plan.t_hi = pb.sample_times(0)[plan.length[0] - 1];
  for (index_t i = 1; i < pb.N; ++i) {
    const double* t = pb.sample_times(i);
    plan.t_lo = std::min(plan.t_lo, t[0]);
    plan.t_hi = std::max(plan.t_hi, t[plan.length[std::size_t(i)] - 1]);
  }
  plan.w_lo = plan.t_lo, plan.w_hi = plan.t_hi;
  if (pb.has_window) {
    require(std::isfinite(pb.window_lo) && std::isfinite(pb.window_hi) &&
                pb.window_lo < pb.window_hi,
            [&] {
              std::ostringstream msg;
              msg << "window must be (t_start, t_end), finite with t_start < t_end; got ("
                  << pb.window_lo << ", " << pb.window_hi << ")";
              return msg.str();
            });
    plan.w_lo = pb.window_lo, plan.w_hi = pb.window_hi;
  }
  for (index_t r = 0; r < pb.out_count; ++r) {
    const double tr = pb.out_times[r];
    require(std::isfinite(tr) && tr >= plan.t_lo && tr <= plan.t_hi, [&] {
      std::ostringstream msg;
      msg << "t must lie within the observation window [" << plan.t_lo << ", " << plan.t_hi
          << "]; got " << tr << " at index " << r;
      return msg.str();
    });
    require(r == 0 || tr > pb.out_times[r - 1], "t must be strictly increasing");
  }
}

template <class T>
void build_breaks_grid(const CdeProblem<T>& pb, const CdePlan<T>& plan,
                       const std::vector<double>& breaks, const double* t, index_t len,
                       index_t m, CdeGrid& g);

// The grid of sample i with times t (len knots).
template <class T>
void build_grid(const CdeProblem<T>& pb, const CdePlan<T>& plan, index_t i, const double* t,
                index_t len, CdeGrid& g) {
  const index_t K = pb.field.pieces;
  const double t0 = t[0], T_end = t[len - 1];
  if (pb.accepted) {  // an adaptive run's accepted steps: one step between grid points
    build_breaks_grid(pb, plan, (*pb.accepted)[std::size_t(i)], t, len, 1, g);
    return;
  }
  g.breaks.assign(t, t + len);
  for (index_t j = 1; j < K; ++j) {
    const double b = piece_boundary(plan.w_lo, plan.w_hi, K, j);
    if (b > t0 && b < T_end) g.breaks.push_back(b);
  }
  for (index_t r = 0; r < pb.out_count; ++r)
    if (pb.out_times[r] > t0 && pb.out_times[r] < T_end) g.breaks.push_back(pb.out_times[r]);
  std::sort(g.breaks.begin(), g.breaks.end());
  g.breaks.erase(std::unique(g.breaks.begin(), g.breaks.end()), g.breaks.end());
  build_breaks_grid(pb, plan, g.breaks, t, len, pb.substeps, g);
}

// The steps of `m` equal steps between consecutive breaks (sorted, t_0 .. T_end, every knot
// among them) and the state each output time reads.
template <class T>
void build_breaks_grid(const CdeProblem<T>& pb, const CdePlan<T>& plan,
                       const std::vector<double>& breaks, const double* t, index_t len,
                       index_t m, CdeGrid& g) {
  const index_t K = pb.field.pieces;
  const double t0 = t[0], T_end = t[len - 1];
  if (&g.breaks != &breaks) g.breaks = breaks;
  g.steps.clear();
  index_t k = 0, piece = 0;
  for (std::size_t b = 0; b + 1 < g.breaks.size(); ++b) {
    const double p = g.breaks[b], q = g.breaks[b + 1], h = (q - p) / double(m);
    while (k + 2 < len && t[k + 1] <= p) ++k;  // [p, q] lies within [t_k, t_{k+1}]
    for (index_t j = 0; j < m; ++j) {
      const double tau = p + double(j) * h, mid = tau + 0.5 * h;
      while (piece + 1 < K && piece_boundary(plan.w_lo, plan.w_hi, K, piece + 1) <= mid) ++piece;
      g.steps.push_back({tau, h, k, piece});
    }
  }
  g.out_state.resize(std::size_t(pb.out_count));
  for (index_t r = 0; r < pb.out_count; ++r) {
    const double tr = pb.out_times[r];
    index_t state = 0;
    if (tr >= T_end) {
      state = index_t(g.steps.size());
    } else if (tr > t0) {
      const auto at = std::lower_bound(g.breaks.begin(), g.breaks.end(), tr);
      state = index_t(at - g.breaks.begin()) * m;
    }
    g.out_state[std::size_t(r)] = state;
  }
}

// An adaptive run's (or a given) accepted grid of each sample: from t_{i,0} to T_i, strictly
// increasing, with every breakpoint of the sample's fixed-step grid among its points.
template <class T>
void check_accepted(const CdeProblem<T>& pb, const CdePlan<T>& plan) {
  CdeProblem<T> fixed = pb;
  fixed.accepted = nullptr, fixed.substeps = 1;
  require(index_t(pb.accepted->size()) == pb.N, [&] {
    return "grid must hold one array of step times per sample (" + std::to_string(pb.N) +
           "), got " + std::to_string(pb.accepted->size());
  });
  CdeGrid g;
  for (index_t i = 0; i < pb.N; ++i) {
    const std::vector<double>& a = (*pb.accepted)[std::size_t(i)];
    build_grid(fixed, plan, i, pb.sample_times(i), plan.length[std::size_t(i)], g);
    bool ok = a.size() >= 2 && a.front() == g.breaks.front() && a.back() == g.breaks.back();
    for (std::size_t j = 1; ok && j < a.size(); ++j) ok = a[j] > a[j - 1];
    for (std::size_t j = 0; ok && j < g.breaks.size(); ++j)
      ok = std::binary_search(a.begin(), a.end(), g.breaks[j]);
    require(ok, [&] {
      return "grid[" + std::to_string(i) + "] must be strictly increasing from the sample's "
             "first to its last observed time and contain every knot, piece boundary and "
             "output time between them";
    });
  }
}

// The plan's blocks. Samples run in lockstep in a block, each on its own grid (its own steps,
// times and path): a sample whose grid is shorter than the block's idles through the last steps
// with a zero control increment, which leaves its state and its cotangent exactly unchanged.
// The steps of a block share one piece each, so its samples must agree on the step where each
// piece starts (the key; a piece never reached counts as "never"). Samples are sorted by key,
// then by their number of steps (so a block's samples have similar lengths), and each run of
// equal keys is cut into blocks of at most cde_block_size(width) samples.
template <class T>
CdePlan<T> make_plan(const CdeProblem<T>& pb, bool gradient) {
  CdePlan<T> plan;
  check_paths(pb, plan);
  set_window(pb, plan);
  if (pb.accepted) check_accepted(pb, plan);
  const index_t N = pb.N, K = pb.field.pieces;
  constexpr index_t never = std::numeric_limits<index_t>::max();
  std::vector<index_t> starts(std::size_t(N * (K - 1)), never);  // step where piece j >= 1 starts
  plan.steps.resize(std::size_t(N));
  CdeGrid grid;
  for (index_t i = 0; i < N; ++i) {
    const index_t len = plan.length[std::size_t(i)];
    build_grid(pb, plan, i, pb.sample_times(i), len, grid);
    const index_t steps = index_t(grid.steps.size());
    plan.steps[std::size_t(i)] = steps;
    index_t* start = starts.data() + i * (K - 1);
    index_t next = 1;  // the next piece whose start is not known yet
    for (index_t q = 0; q < steps; ++q)
      for (; next < K && next <= grid.steps[std::size_t(q)].piece; ++next) start[next - 1] = q;
    plan.max_length = std::max(plan.max_length, len);
    plan.max_steps = std::max(plan.max_steps, steps);
  }
  auto same_key = [&](index_t i, index_t j) {
    return std::equal(starts.begin() + i * (K - 1), starts.begin() + (i + 1) * (K - 1),
                      starts.begin() + j * (K - 1));
  };
  auto less = [&](index_t i, index_t j) {
    const auto ki = starts.begin() + i * (K - 1), kj = starts.begin() + j * (K - 1);
    if (!same_key(i, j)) return std::lexicographical_compare(ki, ki + (K - 1), kj, kj + (K - 1));
    return plan.steps[std::size_t(i)] < plan.steps[std::size_t(j)];
  };
  plan.order.resize(std::size_t(N));
  for (index_t i = 0; i < N; ++i) plan.order[std::size_t(i)] = i;
  std::stable_sort(plan.order.begin(), plan.order.end(), less);
  const auto& f = pb.field;
  index_t cap = cde_block_size(std::max({f.out(), f.H, f.S}));
  if (gradient) {  // the tape of states (steps + 1) x S per sample within cde_tape_budget_bytes
    const double per_sample = double(plan.max_steps + 1) * double(f.S) * double(sizeof(T));
    cap = std::clamp<index_t>(index_t(cde_tape_budget_bytes / per_sample), 1, cap);
  }
  double work = 0.0;
  for (index_t begin = 0; begin < N;) {
    index_t end = begin + 1;
    while (end < N && same_key(plan.order[std::size_t(begin)], plan.order[std::size_t(end)])) ++end;
    const index_t run = end - begin, count = (run + cap - 1) / cap;
    for (index_t b = 0; b < count; ++b) {
      const index_t lo = begin + run * b / count, hi = begin + run * (b + 1) / count;
      const index_t steps = plan.steps[std::size_t(plan.order[std::size_t(hi - 1)])];
      plan.blocks.push_back({lo, hi - lo, steps});
      plan.capacity = std::max(plan.capacity, hi - lo);
      work += double(hi - lo) * double(steps) * double(pb.tab.stages) * f.work();
    }
    begin = end;
  }
  if (gradient) {  // the largest stage tape of a block within the budget
    const double rows = double(CdeStageTape(f, pb.tab.stages).rows_per_step());
    const double budget = cde_stage_tape_budget_bytes() / double(sizeof(T));
    for (const CdeBlock& blk : plan.blocks) {
      const double need = rows * double(blk.steps) * double(blk.n);
      if (need <= budget) plan.stage_tape = std::max(plan.stage_tape, index_t(need));
    }
  }
  const index_t count = index_t(plan.blocks.size());
  plan.groups = gradient ? std::min<index_t>(count, 8) : count;
  const double multiply_adds = (gradient ? 4.0 : 1.0) * work;
  const auto by_work = index_t(multiply_adds / 2.0e6) + 1;  // about 0.1 ms per thread at least
  plan.threads = int(std::clamp<index_t>(std::min<index_t>(get_num_threads(), by_work), 1,
                                         std::max<index_t>(plan.groups, 1)));
  return plan;
}

// One thread's workspace, sized for the plan's largest block, grid and path.
template <class T>
struct CdeWork {
  CdeWork(const CdeProblem<T>& pb, const CdePlan<T>& plan, bool gradient) {
    const auto& f = pb.field;
    const index_t cap = plan.capacity, S = f.S, C = pb.C, O = f.out();
    const index_t Lm = plan.max_length, stages = pb.tab.stages;
    const index_t classes = std::max<index_t>(pb.readout.classes, 1);
    const index_t slots = gradient ? plan.max_steps + 1 : 2;
    const index_t hidden = std::max<index_t>(f.H, 1);
    const index_t per_stage = S + S + O + f.cache_rows() + C + (gradient ? S : 0);
    const index_t total = cap * (2 * Lm * C + 2 * (Lm - 1) * C + slots * S + stages * per_stage +
                                 S + O + hidden + C + S + 2 * classes);
    memory = Buffer<T>(total);
    T* p = memory.data();
    auto take = [&](index_t rows) {
      T* q = p;
      p += rows * cap;
      return q;
    };
    x = take(Lm * C), xbar = take(Lm * C);
    d = take((Lm - 1) * C), dbar = take((Lm - 1) * C);
    tape = take(slots * S);
    for (index_t i = 0; i < stages; ++i) {
      Z[i] = take(S), K[i] = take(S), F[i] = take(O), cache[i] = take(f.cache_rows());
      dX[i] = take(C);
      if (gradient) Y[i] = take(S);
    }
    kbar = take(S), Fbar = take(O), hbar = take(hidden), dXbar = take(C), zbar = take(S);
    logits = take(classes), logits_bar = take(classes);
    std::copy(Z, Z + stages, own_Z), std::copy(F, F + stages, own_F);
    std::copy(cache, cache + stages, own_cache);
    if (gradient && accumulates_w2_transposed(f)) w2t.resize(std::size_t(f.pieces * f.w2_size()));
    if (gradient && plan.stage_tape > 0) {
      stage_memory = Buffer<T>(plan.stage_tape);
      stage_size = plan.stage_tape;
    }
    const auto grid_size = std::size_t(plan.max_steps * cap);
    tau.resize(grid_size), h.resize(grid_size), interval.resize(grid_size);
    piece.resize(std::size_t(plan.max_steps)), first_active.resize(std::size_t(plan.max_steps));
    out_state.resize(std::size_t(pb.out_count * cap));
    times.resize(std::size_t(cap)), length.resize(std::size_t(cap));
    weights.resize(std::size_t(stages * cap));
    fill.resize(std::size_t(Lm));
  }
  // The block's grid: step j of column s is [tau, tau + h] (h = 0: idle) on path interval
  // `interval` (entries j * n + s); all columns use the field of piece[j] in step j. Output
  // time r reads state out_state[r * n + s] of column s.
  std::vector<double> tau, h;
  std::vector<index_t> interval, piece, out_state;
  // Per step: the first active column (setup_block); the columns before it have finished (the
  // block's samples are sorted by their number of steps) and are left as they are.
  std::vector<index_t> first_active;
  std::vector<const double*> times;  // per column: its sample's times
  std::vector<index_t> length;       // per column: its sample's observed rows
  std::vector<PathWeights> weights;  // per stage and column of the current step (i * n + s)
  CdeGrid grid;                      // scratch of one sample's grid
  std::vector<FillWeight> fill;
  Buffer<T> memory;
  Buffer<T> stage_memory;  // the stage tape of a block (CdeStageTape layout), gradient only
  std::vector<T> w2t;      // the block's dW2^T where accumulates_w2_transposed (cde_field.hpp)
  index_t stage_size = 0;  // its elements
  T *x, *xbar, *d, *dbar, *tape, *kbar, *Fbar, *hbar, *dXbar, *zbar, *logits, *logits_bar;
  T* Z[Tableau::max_stages] = {};  // Z[0] aliases the step's state during a step
  T* K[Tableau::max_stages] = {};
  T* F[Tableau::max_stages] = {};
  T* cache[Tableau::max_stages] = {};
  T* dX[Tableau::max_stages] = {};  // the control increments h dX/dt of the stages
  T* Y[Tableau::max_stages] = {};
  // The workspace's own stage arrays; Z, F and cache point into the stage tape instead while a
  // block with a stage tape runs its steps (point_stages).
  T* own_Z[Tableau::max_stages] = {};
  T* own_F[Tableau::max_stages] = {};
  T* own_cache[Tableau::max_stages] = {};
};

// Whether the block's stage tape fits the workspace's (else its reverse recomputes the stages).
template <class T>
bool has_stage_tape(const CdeProblem<T>& pb, const CdeBlock& blk, const CdeWork<T>& w) {
  const index_t rows = CdeStageTape(pb.field, pb.tab.stages).rows_per_step();
  return blk.steps > 0 && rows * blk.steps * blk.n <= w.stage_size;
}

// Points the stages' Z_i (i >= 1), F_i and caches at step j's slot of the stage tape (n columns,
// row-major per array), or with j < 0 back at the workspace's own arrays.
template <class T>
void point_stages(const CdeProblem<T>& pb, index_t j, index_t n, CdeWork<T>& w) {
  const int stages = pb.tab.stages;
  if (j < 0) {
    std::copy(w.own_Z + 1, w.own_Z + stages, w.Z + 1), std::copy(w.own_F, w.own_F + stages, w.F);
    std::copy(w.own_cache, w.own_cache + stages, w.cache);
    return;
  }
  const CdeStageTape layout(pb.field, stages);
  T* step = w.stage_memory.data() + j * layout.rows_per_step() * n;
  for (int i = 0; i < stages; ++i) {
    T* p = step + layout.stage_offset(i) * n;
    if (i > 0) w.Z[i] = p, p += layout.S * n;
    w.F[i] = p, p += layout.O * n;
    if (layout.cache > 0) w.cache[i] = p;
  }
}

// The block's grids (w.tau, w.h, ...), one sample per column, and its paths: filled values x
// ((L*C) x n, row r*C + c) and slopes d (((L-1)*C) x n) of each column up to its own length.
template <class T>
void setup_block(const CdeProblem<T>& pb, const CdePlan<T>& plan, const CdeBlock& blk,
                 CdeWork<T>& w) {
  const index_t C = pb.C, n = blk.n;
  for (index_t s = 0; s < n; ++s) {
    const index_t i = plan.order[std::size_t(blk.begin + s)];
    const index_t len = plan.length[std::size_t(i)];
    const double* t = pb.sample_times(i);
    w.times[std::size_t(s)] = t, w.length[std::size_t(s)] = len;
    build_grid(pb, plan, i, t, len, w.grid);
    const index_t steps = index_t(w.grid.steps.size());
    for (index_t j = 0; j < blk.steps; ++j) {
      const auto at = std::size_t(j * n + s);
      if (j < steps) {
        const CdeStep& st = w.grid.steps[std::size_t(j)];
        w.tau[at] = st.tau, w.h[at] = st.h, w.interval[at] = st.interval;
        if (steps == blk.steps) w.piece[std::size_t(j)] = st.piece;
      } else {  // idle after the sample's end
        w.tau[at] = t[len - 1], w.h[at] = 0.0, w.interval[at] = 0;
      }
    }
    for (index_t r = 0; r < pb.out_count; ++r) {
      const index_t state = w.grid.out_state[std::size_t(r)];
      w.out_state[std::size_t(r * n + s)] = state == steps ? blk.steps : state;
    }
    const T* U = pb.sample_values(i);
    for (index_t c = 0; c < C; ++c) {
      fill_weights(U, C, c, len, t, w.fill.data());
      for (index_t r = 0; r < len; ++r)
        w.x[(r * C + c) * n + s] = filled_value(U, C, c, w.fill[std::size_t(r)]);
    }
    for (index_t k = 0; k + 1 < len; ++k) {
      const T dt = T(t[k + 1] - t[k]);
      for (index_t c = 0; c < C; ++c)
        w.d[(k * C + c) * n + s] = (w.x[((k + 1) * C + c) * n + s] - w.x[(k * C + c) * n + s]) / dt;
    }
  }
  // The active columns of step j: from the first with h > 0, widened to whole 64-byte vectors
  // (the idle columns this adds step with a zero increment, as all did before): a count the
  // GEMM tiles cover without their half-width and scalar edges.
  constexpr index_t lanes = index_t(64 / sizeof(T));
  for (index_t j = 0; j < blk.steps; ++j) {
    index_t s = 0;
    while (s + 1 < n && w.h[std::size_t(j * n + s)] == 0.0) ++s;
    const index_t count = (n - s + lanes - 1) / lanes * lanes;
    w.first_active[std::size_t(j)] = std::max<index_t>(n - count, 0);
  }
}

// The control increments dX_i (C x n) = h dX/dt(tau + node h) of stage i of step j on the active
// columns, each on its own path interval (zero in idle steps); their weights stay in w.weights
// for the VJP.
template <class T>
void control_increments(const CdeProblem<T>& pb, index_t j, int i, double node, Columns cols,
                        CdeWork<T>& w) {
  const index_t C = pb.C, n = cols.n;
  T* dX = w.dX[i];
  for (index_t s = cols.begin; s < n; ++s) {
    const auto at = std::size_t(j * n + s);
    PathWeights& pw = w.weights[std::size_t(i * n + s)];
    const double h = w.h[at];
    if (h == 0.0) {
      pw = {0, 0.0, 0.0};
      for (index_t c = 0; c < C; ++c) dX[c * n + s] = T(0);
      continue;
    }
    const index_t k = w.interval[at];
    const double* t = w.times[std::size_t(s)];
    pw = path_weights(pb.interpolation, k, t[k], t[k + 1], w.tau[at] + node * h);
    const T hb = T(h * pw.beta), ha = T(h * pw.alpha);
    for (index_t c = 0; c < C; ++c)
      dX[c * n + s] = hb * w.d[(k * C + c) * n + s] + ha * w.d[(pw.prev * C + c) * n + s];
  }
}

// Terms of up to Tableau::max_stages entries, applied through combine() in chunks of 4 (the
// adaptive tableaux have up to 6 solution stages; with at most 4, as the fixed-step methods,
// this is one combine() call, as before).
template <class T>
struct CdeTerms {
  int count = 0;
  T coef[Tableau::max_stages];
  const T* vec[Tableau::max_stages];
  void add(double c, const T* v) {
    if (c != 0.0) coef[count] = T(c), vec[count] = v, ++count;
  }
};
template <class T>
void combine_terms(index_t n, T base_scale, const T* base, const CdeTerms<T>& t, T* out) {
  const int first = std::min(t.count, 4);
  combine(n, base_scale, base, first, t.coef, t.vec, out);
  for (int m = first; m < t.count; m += 4)
    combine(n, T(1), out, std::min(t.count - m, 4), t.coef + m, t.vec + m, out);
}

// combine_terms on the active columns of `rows` rows (one pass per row unless all are active).
template <class T>
void combine_terms(index_t rows, Columns cols, T base_scale, const T* base, const CdeTerms<T>& t,
                   T* out) {
  if (cols.all()) return combine_terms(rows * cols.n, base_scale, base, t, out);
  for (index_t r = 0; r < rows; ++r) {
    const index_t at = r * cols.n + cols.begin;
    CdeTerms<T> row = t;
    for (int m = 0; m < t.count; ++m) row.vec[m] = t.vec[m] + at;
    combine_terms(cols.count(), base_scale, base + at, row, out + at);
  }
}

// The node c_i = sum_{l<i} a_il of stage i (summed in that order).
inline double stage_node(const Tableau& tab, int i) {
  double node = 0.0;
  for (int l = 0; l < i; ++l) node += tab.a[i][l];
  return node;
}

// The stages of step j from its state z (S x n) on the active columns, with the step size
// folded into the control increments: K_i = G(Z_i) dX_i, Z_i = z + sum_{l<i} a_il K_l.
template <class T>
void cde_stages(const CdeProblem<T>& pb, index_t j, Columns cols, const T* z, CdeWork<T>& w) {
  const index_t S = pb.field.S, C = pb.C;
  const Tableau& tab = pb.tab;
  w.Z[0] = const_cast<T*>(z);  // read only
  for (int i = 0; i < tab.stages; ++i) {
    if (i > 0) {
      CdeTerms<T> terms;
      for (int l = 0; l < i; ++l) terms.add(tab.a[i][l], w.K[l]);
      combine_terms(S, cols, T(1), z, terms, w.Z[i]);
    }
    cde_field_eval(pb.field, w.piece[std::size_t(j)], cols, w.Z[i], w.F[i], w.cache[i]);
    control_increments(pb, j, i, stage_node(tab, i), cols, w);
    contract_channels(S, C, cols, w.F[i], w.dX[i], w.K[i]);
  }
}

// z_next = z + sum_i b_i K_i after cde_stages; the idle columns' states are carried over.
template <class T>
void cde_update(const CdeProblem<T>& pb, Columns cols, const T* z, const CdeWork<T>& w,
                T* z_next) {
  CdeTerms<T> terms;
  for (int i = 0; i < pb.tab.stages; ++i) terms.add(pb.tab.b[i], w.K[i]);
  combine_terms(pb.field.S, cols, T(1), z, terms, z_next);
  for (index_t d = 0; d < pb.field.S; ++d)
    std::copy(z + d * cols.n, z + d * cols.n + cols.begin, z_next + d * cols.n);
}

// dbar += the transpose of control_increments applied to dXbar (stage i of step j).
template <class T>
void control_increments_vjp(const CdeProblem<T>& pb, index_t j, int i, Columns cols,
                            CdeWork<T>& w) {
  const index_t C = pb.C, n = cols.n;
  for (index_t s = cols.begin; s < n; ++s) {
    const double h = w.h[std::size_t(j * n + s)];
    if (h == 0.0) continue;
    const PathWeights& pw = w.weights[std::size_t(i * n + s)];
    const index_t k = w.interval[std::size_t(j * n + s)];
    const T hb = T(h * pw.beta), ha = T(h * pw.alpha);
    for (index_t c = 0; c < C; ++c) {
      const T g = w.dXbar[c * n + s];
      w.dbar[(k * C + c) * n + s] += hb * g;
      if (pw.alpha != 0.0) w.dbar[(pw.prev * C + c) * n + s] += ha * g;
    }
  }
}

// The reverse of step j from its stages (cde_stages): on entry zbar is the cotangent of
// z_{j+1}, on exit of z_j; the field grads and the slopes' cotangents dbar are accumulated.
//   kbar_i = b_i zbar + sum_{m>i} a_mi Y_m,  (Fbar_i, dXbar_i) = contraction^T kbar_i,
//   Y_i = J_i^T Fbar_i,  dbar += control_increments^T dXbar_i,  zbar_j = zbar + sum_i Y_i
// Without with_dU the path's cotangents (dXbar, dbar) are skipped: the parameters' gradient
// does not depend on them.
// With recompute_hidden the stages' caches are the bottleneck's hidden units, computed here
// from Z_i (the stage tape does not keep them: CdeStageTape).
template <class T>
void cde_step_vjp(const CdeProblem<T>& pb, index_t j, Columns cols, CdeWork<T>& w, T* zbar,
                  T* grads, bool with_dU, bool recompute_hidden) {
  const index_t S = pb.field.S, C = pb.C;
  const Tableau& tab = pb.tab;
  const Activation rho = output_activation_or_identity(pb.field);
  const index_t piece = w.piece[std::size_t(j)];
  for (int i = tab.stages - 1; i >= 0; --i) {
    if (recompute_hidden) bottleneck_hidden(pb.field, piece, cols, w.Z[i], w.cache[i]);
    CdeTerms<T> later;
    for (int m = i + 1; m < tab.stages; ++m) later.add(tab.a[m][i], w.Y[m]);
    combine_terms(S, cols, T(tab.b[i]), zbar, later, w.kbar);
    contract_channels_vjp(S, C, rho, cols, w.F[i], w.dX[i], w.kbar, w.Fbar,
                          with_dU ? w.dXbar : nullptr);
    if (with_dU) control_increments_vjp(pb, j, i, cols, w);
    cde_field_vjp_before_rho(pb.field, piece, cols, w.Z[i], w.F[i],
                             w.cache[i], w.Fbar, w.Y[i], grads, w.hbar,
                             w.w2t.empty() ? nullptr : w.w2t.data());
  }
  CdeTerms<T> all;
  for (int i = 0; i < tab.stages; ++i) all.add(1.0, w.Y[i]);
  combine_terms(S, cols, T(1), zbar, all, zbar);
}

// The first column of z (S x n) that is not finite.
template <class T>
index_t first_bad_column(index_t S, index_t n, const T* z) {
  for (index_t s = 0; s < n; ++s)
    for (index_t d = 0; d < S; ++d)
      if (!std::isfinite(z[d * n + s])) return s;
  return 0;
}

// Forward sweep of one block: sets up its grids and paths in w, and calls on_state(j, z_j) for
// every state (z_0 = A x_0 + a first). With `keep` state j stays at tape + j S n (for the
// reverse sweep), and the stages of step j at its slot of the stage tape where the block's fits
// (has_stage_tape). Returns false (with `bad` set) when a state was not finite.
template <class T, class OnState>
bool cde_forward_block(const CdeProblem<T>& pb, const CdePlan<T>& plan, const CdeBlock& blk,
                       CdeWork<T>& w, bool keep, CdeBadStep& bad, OnState&& on_state) {
  const index_t S = pb.field.S, C = pb.C, n = blk.n, len = S * n;
  setup_block(pb, plan, blk, w);
  point_stages(pb, -1, n, w);
  const bool stage_tape = keep && has_stage_tape(pb, blk, w);
  T* z = w.tape;
  affine(S, C, n, pb.A, pb.a, w.x, z);  // z_0 = A x_0 + a
  auto failed = [&](index_t step, const T* state) {
    const index_t s = first_bad_column(S, n, state);
    const auto at = std::size_t(std::max<index_t>(step, 0) * n + s);
    const double t = step < 0 ? w.times[std::size_t(s)][0] : w.tau[at] + w.h[at];
    bad = {std::max<index_t>(step, 0), plan.order[std::size_t(blk.begin + s)], t};
    return false;
  };
  if (!all_finite(len, z)) return failed(-1, z);
  on_state(index_t(0), static_cast<const T*>(z));
  for (index_t j = 0; j < blk.steps; ++j) {
    T* next = w.tape + (keep ? j + 1 : (j + 1) % 2) * len;
    if (stage_tape) point_stages(pb, j, n, w);
    const Columns cols{w.first_active[std::size_t(j)], n};
    cde_stages(pb, j, cols, z, w);
    cde_update(pb, cols, z, w, next);
    if (!all_finite(len, next)) return failed(j, next);
    z = next;
    on_state(j + 1, static_cast<const T*>(z));
  }
  return true;
}

// The reverse sweep of a block after cde_forward_block(keep = true) (the stage tape is used
// exactly where that forward wrote it: has_stage_tape): zbar holds the cotangent
// of the final state; add_cotangent(j, zbar) adds the cotangent of state j < steps. Adds the
// grads of the field, A and a to `grads` ([field | A | a]) and writes the block's rows of dU
// (dU may be null: training needs no cotangent of the observations).
template <class T, class AddCotangent>
void cde_reverse_block(const CdeProblem<T>& pb, const CdePlan<T>& plan, const CdeBlock& blk,
                       CdeWork<T>& w, T* grads, T* dU, AddCotangent&& add_cotangent) {
  const index_t S = pb.field.S, C = pb.C, n = blk.n, len = S * n, Lm = plan.max_length;
  T* zbar = w.zbar;
  const bool with_dU = dU != nullptr;
  if (with_dU) std::fill(w.dbar, w.dbar + (Lm - 1) * C * n, T(0));
  std::fill(w.w2t.begin(), w.w2t.end(), T(0));
  const bool stage_tape = has_stage_tape(pb, blk, w);
  const bool recompute_hidden =
      stage_tape && CdeStageTape(pb.field, pb.tab.stages).recomputes_hidden;
  for (index_t j = blk.steps - 1; j >= 0; --j) {
    const Columns cols{w.first_active[std::size_t(j)], n};
    if (stage_tape) {  // the forward's stages: only the control increments are recomputed
      point_stages(pb, j, n, w);
      w.Z[0] = w.tape + j * len;
      for (int i = 0; i < pb.tab.stages; ++i)
        control_increments(pb, j, i, stage_node(pb.tab, i), cols, w);
    } else {
      cde_stages(pb, j, cols, w.tape + j * len, w);
    }
    cde_step_vjp(pb, j, cols, w, zbar, grads, with_dU, recompute_hidden);
    add_cotangent(j, zbar);
  }
  if (!w.w2t.empty()) fold_transposed_w2(pb.field, w.w2t.data(), grads);
  // z_0 = A x_0 + a: dA += zbar x_0^T, da += zbar 1, xbar_0 = A^T zbar
  T* dA = grads + pb.field.size();
  T* da = dA + S * C;
  gemm_abt(S, C, n, T(1), zbar, n, w.x, n, dA, C);
  row_sums(S, n, T(1), zbar, n, da);
  if (!with_dU) return;
  std::fill(w.xbar, w.xbar + Lm * C * n, T(0));
  gemm(C, n, S, T(1), pb.A, index_t(1), C, zbar, n, w.xbar, n, false);
  for (index_t s = 0; s < n; ++s) {
    const double* t = w.times[std::size_t(s)];
    const index_t L = w.length[std::size_t(s)];
    for (index_t k = 0; k + 1 < L; ++k) {  // d_k = (x_{k+1} - x_k) / dt_k
      const T dt = T(t[k + 1] - t[k]);
      for (index_t c = 0; c < C; ++c) {
        const T v = w.dbar[(k * C + c) * n + s] / dt;
        w.xbar[((k + 1) * C + c) * n + s] += v;
        w.xbar[(k * C + c) * n + s] -= v;
      }
    }
    // x = fill(U): dU = fill^T xbar (rows after L and the missing values stay 0)
    const index_t i = plan.order[std::size_t(blk.begin + s)];
    const T* U = pb.sample_values(i);
    T* dUi = dU + i * pb.L * C;
    std::fill(dUi, dUi + pb.L * C, T(0));
    for (index_t c = 0; c < C; ++c) {
      fill_weights(U, C, c, L, t, w.fill.data());
      for (index_t r = 0; r < L; ++r)
        fill_transpose(C, c, w.fill[std::size_t(r)], w.xbar[(r * C + c) * n + s], dUi);
    }
  }
}

// Throws non_finite_error for the earliest (in time) non-finite state of any block.
inline void raise_if_cde_non_finite(const std::vector<CdeBadStep>& bad) {
  const CdeBadStep* worst = nullptr;
  for (const auto& b : bad)
    if (b.step >= 0 && (!worst || b.t < worst->t)) worst = &b;
  if (!worst) return;
  std::ostringstream msg;
  msg << "the state became non-finite (NaN or Inf) in step " << worst->step << " (counted from "
      << "0) of the step grid of sample " << worst->sample << ", ending at t = " << worst->t
      << "; reduce the weights, the inputs or the step size (substeps)";
  throw non_finite_error(msg.str(), long(worst->step), worst->t);
}

// Rows of a row-major (N, width) array for the block's samples <-> the block (width x n).
template <class T>
void scatter_columns(const CdePlan<T>& plan, const CdeBlock& blk, index_t width, const T* x,
                     T* out) {
  for (index_t s = 0; s < blk.n; ++s) {
    const index_t i = plan.order[std::size_t(blk.begin + s)];
    for (index_t d = 0; d < width; ++d) out[i * width + d] = x[d * blk.n + s];
  }
}
template <class T>
void add_columns(const CdePlan<T>& plan, const CdeBlock& blk, index_t width, const T* in, T* x) {
  for (index_t s = 0; s < blk.n; ++s) {
    const index_t i = plan.order[std::size_t(blk.begin + s)];
    for (index_t d = 0; d < width; ++d) x[d * blk.n + s] += in[i * width + d];
  }
}

// Runs forward sweeps of every block: on_block(work, block, final state).
template <class T, class OnState, class OnFinal>
void cde_forward_sweep(const CdeProblem<T>& pb, const CdePlan<T>& plan, OnState&& on_state,
                       OnFinal&& on_final) {
  std::vector<std::unique_ptr<CdeWork<T>>> works(std::size_t(plan.threads));
  std::vector<CdeBadStep> bad(plan.blocks.size());
  parallel_for(index_t(plan.blocks.size()), plan.threads, [&](int th, index_t b) {
    if (!works[std::size_t(th)]) works[std::size_t(th)] = std::make_unique<CdeWork<T>>(pb, plan, false);
    CdeWork<T>& w = *works[std::size_t(th)];
    const CdeBlock& blk = plan.blocks[std::size_t(b)];
    const T* final_state = nullptr;
    const bool ok = cde_forward_block(pb, plan, blk, w, false, bad[std::size_t(b)],
                                      [&](index_t j, const T* z) {
                                        on_state(blk, w, j, z);
                                        final_state = z;
                                      });
    if (ok) on_final(w, blk, final_state);
  });
  raise_if_cde_non_finite(bad);
}

// The gradient sweep: per block, forward (keeping states), then final_cotangent(w, blk, zT,
// zbar, grads) sets zbar (S x n) and returns the block's loss, then the reverse sweep with
// add_cotangent(blk, grid, j, zbar). Returns the block losses summed in block order; the
// group accumulators ([field | A | a | P | c]) are reduced in group order into `grads`.
template <class T, class FinalCotangent, class AddCotangent>
double cde_gradient_sweep(const CdeProblem<T>& pb, const CdePlan<T>& plan, index_t gsize,
                          T* grads, T* dU, FinalCotangent&& final_cotangent,
                          AddCotangent&& add_cotangent) {
  std::vector<std::unique_ptr<CdeWork<T>>> works(std::size_t(plan.threads));
  std::vector<CdeBadStep> bad(plan.blocks.size());
  std::vector<double> losses(plan.blocks.size(), 0.0);
  Buffer<T> group_grads(plan.groups * gsize);
  parallel_for(plan.groups, plan.threads, [&](int th, index_t g) {
    if (!works[std::size_t(th)]) works[std::size_t(th)] = std::make_unique<CdeWork<T>>(pb, plan, true);
    CdeWork<T>& w = *works[std::size_t(th)];
    T* acc = group_grads.data() + g * gsize;
    std::fill(acc, acc + gsize, T(0));
    for (index_t b = plan.group_begin(g); b < plan.group_begin(g + 1); ++b) {
      const CdeBlock& blk = plan.blocks[std::size_t(b)];
      const T* zT = nullptr;
      if (!cde_forward_block(pb, plan, blk, w, true, bad[std::size_t(b)],
                             [&](index_t, const T* z) { zT = z; }))
        continue;
      losses[std::size_t(b)] = final_cotangent(w, blk, zT, w.zbar, acc);
      cde_reverse_block(pb, plan, blk, w, acc, dU, [&](index_t j, T* zbar) {
        add_cotangent(blk, w, j, zbar);
      });
    }
  });
  raise_if_cde_non_finite(bad);
  for (index_t g = 0; g < plan.groups; ++g) {
    const T* acc = group_grads.data() + g * gsize;
    for (index_t i = 0; i < gsize; ++i) grads[i] = g == 0 ? acc[i] : grads[i] + acc[i];
  }
  double loss = 0.0;
  for (double l : losses) loss += l;
  return loss;
}

template <class T>
void require_finite_gradient(index_t n, const T* g, const char* what) {
  if (!all_finite(n, g))
    throw non_finite_error(std::string("the gradient (") + what +
                               ") is not finite: the backward sweep overflowed",
                           -1, 0.0);
}

// The rows of a (R, N, S) array at the output times that read state j of a block's columns:
// out (=) z's columns (forward), or zbar's columns += those rows of a cotangent (reverse).
template <class T>
void write_output_times(const CdeProblem<T>& pb, const CdePlan<T>& plan, const CdeBlock& blk,
                        const CdeWork<T>& w, index_t j, const T* z, T* out) {
  const index_t S = pb.field.S, N = pb.N, n = blk.n;
  for (index_t r = 0; r < pb.out_count; ++r)
    for (index_t s = 0; s < n; ++s)
      if (w.out_state[std::size_t(r * n + s)] == j) {
        T* row = out + (r * N + plan.order[std::size_t(blk.begin + s)]) * S;
        for (index_t d = 0; d < S; ++d) row[d] = z[d * n + s];
      }
}
template <class T>
void add_output_cotangents(const CdeProblem<T>& pb, const CdePlan<T>& plan, const CdeBlock& blk,
                           const CdeWork<T>& w, index_t j, const T* cotangent, T* zbar) {
  const index_t S = pb.field.S, N = pb.N, n = blk.n;
  for (index_t r = 0; r < pb.out_count; ++r)
    for (index_t s = 0; s < n; ++s)
      if (w.out_state[std::size_t(r * n + s)] == j) {
        const T* row = cotangent + (r * N + plan.order[std::size_t(blk.begin + s)]) * S;
        for (index_t d = 0; d < S; ++d) zbar[d * n + s] += row[d];
      }
}

}  // namespace detail

// The states z_i(T_i) (N, S), or with out_count > 0 the states at the output times
// (out_count, N, S) (before a sample's start its initial state, after its end its final one).
template <class T>
void cde_solve(const CdeProblem<T>& pb, T* out) {
  const auto plan = detail::make_plan(pb, false);
  const index_t S = pb.field.S;
  detail::cde_forward_sweep(
      pb, plan,
      [&](const detail::CdeBlock& blk, const detail::CdeWork<T>& w, index_t j, const T* z) {
        if (pb.out_count > 0) detail::write_output_times(pb, plan, blk, w, j, z, out);
      },
      [&](detail::CdeWork<T>&, const detail::CdeBlock& blk, const T* z) {
        if (pb.out_count == 0) detail::scatter_columns(plan, blk, S, z, out);
      });
}

// Logits z_i(T_i) P^T + c, (N, classes).
template <class T>
void cde_logits(const CdeProblem<T>& pb, T* out) {
  const auto plan = detail::make_plan(pb, false);
  const index_t S = pb.field.S, classes = pb.readout.classes;
  std::vector<char> overflow(plan.blocks.size(), 0);
  detail::cde_forward_sweep(
      pb, plan, [](const detail::CdeBlock&, const detail::CdeWork<T>&, index_t, const T*) {},
      [&](detail::CdeWork<T>& w, const detail::CdeBlock& blk, const T* z) {
        readout(pb.readout, blk.n, S, z, w.logits);
        if (!all_finite(classes * blk.n, w.logits))
          overflow[std::size_t(&blk - plan.blocks.data())] = 1;
        detail::scatter_columns(plan, blk, classes, w.logits, out);
      });
  if (std::find(overflow.begin(), overflow.end(), 1) != overflow.end())
    throw non_finite_error("the logits z(T) P^T + c are not finite: the readout overflowed", -1,
                           0.0);
}

// Vector-Jacobian product for a cotangent of cde_solve's output ((N, S), or (out_count, N, S)):
// dfield (flat [W1 | b1 | W2 | b2]), dA (S, C), da (S,), dU (N, L, C).
template <class T>
void cde_vjp(const CdeProblem<T>& pb, const T* cotangent, T* dfield, T* dA, T* da, T* dU) {
  const auto plan = detail::make_plan(pb, true);
  const index_t S = pb.field.S, C = pb.C, nf = pb.field.size();
  const index_t gsize = nf + S * C + S;
  Buffer<T> grads(gsize);
  auto add_rows = [&](const detail::CdeBlock& blk, const detail::CdeWork<T>& w, index_t j,
                      T* zbar) {
    detail::add_output_cotangents(pb, plan, blk, w, j, cotangent, zbar);
  };
  detail::cde_gradient_sweep(
      pb, plan, gsize, grads.data(), dU,
      [&](detail::CdeWork<T>& w, const detail::CdeBlock& blk, const T*, T* zbar, T*) {
        std::fill(zbar, zbar + S * blk.n, T(0));
        if (pb.out_count == 0)
          detail::add_columns(plan, blk, S, cotangent, zbar);
        else
          add_rows(blk, w, blk.steps, zbar);
        return 0.0;
      },
      add_rows);
  const T* g = grads.data();
  std::copy(g, g + nf, dfield);
  std::copy(g + nf, g + nf + S * C, dA);
  std::copy(g + nf + S * C, g + gsize, da);
  detail::require_finite_gradient(gsize, g, "parameters");
  detail::require_finite_gradient(pb.N * pb.L * C, dU, "U");
}

// Loss (losses.hpp's data loss of the logits z_i(T_i) P^T + c, a mean over samples) plus
// weight_decay * sum of the squared field parameters, and its gradient: dfield, dA, da,
// dP (classes, S), dc (classes,), dU (N, L, C) unless dU is null; with `logits` (N, classes)
// non-null, the logits the loss read (a training history's batch predictions without another forward sweep).
template <class T>
double cde_loss_and_grad(const CdeProblem<T>& pb, const Targets<T>& targets, double weight_decay,
                         T* dfield, T* dA, T* da, T* dP, T* dc, T* dU, T* logits = nullptr) {
  const auto plan = detail::make_plan(pb, true);
  const index_t S = pb.field.S, C = pb.C, nf = pb.field.size(), N = pb.N;
  const index_t classes = pb.readout.classes;
  const index_t gsize = nf + S * C + S + classes * S + classes;
  // The targets in the plan's sample order, so each block's are contiguous (block_loss).
  std::vector<std::int64_t> labels;
  std::vector<T> values;
  Targets<T> ordered = targets;
  if (targets.kind == LossKind::cross_entropy) {
    labels.resize(std::size_t(N));
    for (index_t p = 0; p < N; ++p) labels[std::size_t(p)] = targets.labels[plan.order[std::size_t(p)]];
    ordered.labels = labels.data();
  } else {
    values.resize(std::size_t(N * classes));
    for (index_t p = 0; p < N; ++p)
      std::copy(targets.values + plan.order[std::size_t(p)] * classes,
                targets.values + (plan.order[std::size_t(p)] + 1) * classes,
                values.begin() + p * classes);
    ordered.values = values.data();
  }
  Buffer<T> grads(gsize);
  std::vector<char> overflow(plan.blocks.size(), 0);
  const index_t readout_offset = nf + S * C + S;
  double loss = detail::cde_gradient_sweep(
      pb, plan, gsize, grads.data(), dU,
      [&](detail::CdeWork<T>& w, const detail::CdeBlock& blk, const T* zT, T* zbar, T* acc) {
        const index_t n = blk.n;
        readout(pb.readout, n, S, zT, w.logits);
        if (!all_finite(classes * n, w.logits)) overflow[std::size_t(&blk - plan.blocks.data())] = 1;
        if (logits) detail::scatter_columns(plan, blk, classes, w.logits, logits);
        const double l = block_loss(ordered, classes, blk.begin, n, n, w.logits, w.logits_bar, 1.0);
        T* gP = acc + readout_offset;
        readout_vjp(pb.readout, n, n, S, zT, w.logits_bar, zbar, false, gP, gP + classes * S);
        return l;
      },
      [](const detail::CdeBlock&, const detail::CdeWork<T>&, index_t, T*) {});
  if (std::find(overflow.begin(), overflow.end(), 1) != overflow.end())
    throw non_finite_error("the logits z(T) P^T + c are not finite: the readout overflowed", -1,
                           0.0);
  T* g = grads.data();
  if (weight_decay != 0.0) {  // loss += wd |theta|^2 over the field's arrays, g += 2 wd theta
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
  std::copy(g + nf + S * C, g + readout_offset, da);
  std::copy(g + readout_offset, g + readout_offset + classes * S, dP);
  std::copy(g + readout_offset + classes * S, g + gsize, dc);
  detail::require_finite_gradient(gsize, g, "parameters");
  if (dU) detail::require_finite_gradient(pb.N * pb.L * C, dU, "U");
  return loss;
}

}  // namespace resode
