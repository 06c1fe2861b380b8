// A whole epoch of mini-batch training in one call (resode.fit's inner loop): per batch of the
// given sample order, gather the batch, loss_and_grad, one optimiser update of the trained
// arrays (optimizers.hpp), the optional L1 bound (constraints.hpp), and the divergence check.
// It does exactly what a loop of loss_and_grad + Optimizer.step + constrain from Python does,
// in the same order with the same kernels, so both give bitwise the same parameters; it only
// removes the per-batch Python work (argument checks, dicts, copies, NumPy's small-array calls).
#pragma once
#include <cstdint>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "constraints.hpp"
#include "optimizers.hpp"
#include "sweep.hpp"

namespace resode {

// Euclidean norm of several arrays together, sqrt(sum_i x_i^2), scaled by max |x_i| so that
// huge finite entries do not overflow in the squares (0 for all-zero input). The history's
// grad_norm.
template <class T>
double scaled_norm(const std::vector<std::pair<const T*, index_t>>& arrays) {
  double scale = 0.0;
  for (auto [a, size] : arrays)
    for (index_t i = 0; i < size; ++i) scale = std::max(scale, std::abs(double(a[i])));
  if (scale == 0.0 || !std::isfinite(scale)) return scale;
  double total = 0.0;
  for (auto [a, size] : arrays)
    for (index_t i = 0; i < size; ++i) {
      const double x = double(a[i]) / scale;
      total += x * x;
    }
  return scale * std::sqrt(total);
}

// One trained array: the parameters (updated in place), where its gradient lands in
// loss_and_grad's output buffers, and the optimiser's state slots (OptimizerConfig::slots()).
template <class T>
struct TrainedArray {
  T* param = nullptr;
  index_t size = 0;
  enum class Grad { field, P, c } grad = Grad::field;
  index_t grad_offset = 0;  // into the flat field gradient (Grad::field)
  T* state[2] = {nullptr, nullptr};
};

// The data and the schedule of one epoch.
template <class T>
struct EpochPlan {
  const T* X = nullptr;  // (N, dim) row-major, the whole training set
  index_t N = 0;
  LossKind loss = LossKind::cross_entropy;
  const std::int64_t* labels = nullptr;  // (N,) for cross_entropy
  const T* values = nullptr;             // (N, classes) for mse
  const std::int64_t* order = nullptr;   // (N,) the samples in visiting order
  index_t batch = 0;                     // samples per batch (the last may be smaller)
  OptimizerConfig optimizer;
  double lr = 0.0;             // this epoch's learning rate
  std::int64_t steps_before = 0;  // optimiser steps taken before this epoch
  bool first = false;          // sgd with momentum: no step taken yet (buffers start as g)
  double bound = 0.0;          // > 0: L1 bound per piece after each update (constraints.hpp)
};

struct EpochResult {
  enum class Failure { none, sweep, update };
  index_t batches = 0;      // batches whose update was kept
  index_t steps = 0;        // optimiser steps taken (a rolled-back update counts)
  double loss_sum = 0.0;    // sum over kept batches of loss * batch size
  double norm_sum = 0.0;    // sum over kept batches of the trained gradient's norm
  // Over kept batches, each batch's predictions with the parameters it ran with (losses.hpp):
  // correct predictions (cross_entropy: argmax; one-output mse: sign agreement) and, for mse,
  // the squared errors per output. The history's training accuracy = correct / N and
  // R^2_j = 1 - sse_j / sum_i (y_ij - mean_j)^2, averaged over the outputs j.
  PredictionStats predictions;
  Failure failure = Failure::none;  // why batch `batches + 1` stopped the epoch
  std::string message;      // sweep: the NonFiniteError's message
  long step = -1;           // sweep: the error's step and time
  double time = 0.0;
};

namespace detail {

// Copies rows order[lo, lo + n) of a (N, width) array into dst (n, width).
template <class V>
void gather_rows(const V* src, index_t width, const std::int64_t* order, index_t n, V* dst) {
  for (index_t s = 0; s < n; ++s)
    std::memcpy(dst + s * width, src + index_t(order[s]) * width, sizeof(V) * std::size_t(width));
}

}  // namespace detail

// pb: the problem over the field parameters and readout that `trained` updates in place (its X
// and N are set per batch here). The L1 bound applies to the field tensors of pb.
template <class T>
EpochResult train_epoch(Problem<T> pb, const GradientOptions& opt, const EpochPlan<T>& plan,
                        const std::vector<TrainedArray<T>>& trained) {
  auto& field = pb.dyn.field;
  const index_t dim = pb.dim(), C = pb.readout.classes, D = field.D;
  std::vector<T> Xb(std::size_t(plan.batch * dim)), values(plan.values ? plan.batch * C : 0);
  std::vector<std::int64_t> labels(plan.labels ? plan.batch : 0);
  std::vector<T> dfield(field.size()), dP(C * D), dc(C);
  std::vector<std::vector<T>> backup(trained.size());
  std::vector<std::pair<const T*, index_t>> grads;
  for (const auto& a : trained) {
    const T* base = a.grad == TrainedArray<T>::Grad::field ? dfield.data() + a.grad_offset
                    : a.grad == TrainedArray<T>::Grad::P   ? dP.data()
                                                           : dc.data();
    grads.emplace_back(base, a.size);
  }
  std::vector<std::pair<T*, index_t>> bounded;
  for (auto [w, size] : detail::field_tensors(field)) bounded.emplace_back(const_cast<T*>(w), size);

  EpochResult r;
  if (plan.values) r.predictions.sse.assign(std::size_t(C), 0.0);
  PredictionStats batch_predictions;
  for (index_t lo = 0; lo < plan.N; lo += plan.batch) {
    const index_t n = std::min(plan.batch, plan.N - lo);
    const std::int64_t* rows = plan.order + lo;
    Targets<T> targets;
    targets.kind = plan.loss;
    targets.count = n;
    detail::gather_rows(plan.X, dim, rows, n, Xb.data());
    if (plan.labels) {
      detail::gather_rows(plan.labels, 1, rows, n, labels.data());
      targets.labels = labels.data();
    } else {
      detail::gather_rows(plan.values, C, rows, n, values.data());
      targets.values = values.data();
    }
    pb.X = Xb.data();
    pb.N = n;
    double loss;
    batch_predictions = PredictionStats{};
    try {
      loss = loss_and_grad(pb, targets, opt, dfield.data(), dP.data(), dc.data(),
                           &batch_predictions);
    } catch (const non_finite_error& e) {
      r.failure = EpochResult::Failure::sweep;
      r.message = e.what();
      r.step = e.step();
      r.time = e.time();
      return r;
    }
    for (std::size_t i = 0; i < trained.size(); ++i)
      backup[i].assign(trained[i].param, trained[i].param + trained[i].size);
    ++r.steps;
    const std::int64_t t = plan.steps_before + r.steps;
    const bool first = plan.first && r.steps == 1;
    for (std::size_t i = 0; i < trained.size(); ++i)
      optimizer_update(plan.optimizer, plan.lr, t, first, trained[i].size, trained[i].param,
                       grads[i].first, trained[i].state);
    if (plan.bound > 0) bound_l1_per_piece(bounded, field.pieces, plan.bound);
    bool finite = true;
    for (const auto& a : trained) finite = finite && all_finite(a.size, a.param);
    if (!finite) {  // restore the batch's starting parameters (the optimiser state stays)
      for (std::size_t i = 0; i < trained.size(); ++i)
        std::copy(backup[i].begin(), backup[i].end(), trained[i].param);
      r.failure = EpochResult::Failure::update;
      return r;
    }
    r.loss_sum += loss * double(n);
    r.predictions.add(batch_predictions);
    r.norm_sum += scaled_norm(grads);
    ++r.batches;
  }
  return r;
}

}  // namespace resode
