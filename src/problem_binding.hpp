// The problem binding shared by the sweeps (register_sweeps.cpp) and training
// (register_training.cpp): validate every array against the shapes the field implies and build a
// resode::Problem over the NumPy buffers. X's dtype (float32 or float64) selects the template
// instance; every other float array must have the same dtype (no silent casts, no hidden copies).
#pragma once
#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "bindings.hpp"

namespace resode::bind {

template <class T>
using carray = py::array_t<T, py::array::c_style>;

// The keyword arguments every sweep shares.
struct Config {
  std::string field, activation, method;
  double dt;
  index_t substeps, augment;
};

// Validated arrays (kept alive here) and the Problem pointing into them.
template <class T>
struct Bound {
  std::vector<carray<T>> theta;
  std::vector<std::pair<std::string, Shape>> theta_shapes;  // names and shapes, flat order
  carray<T> X, P, c;
  resode::Problem<T> pb;
};

template <class T>
Bound<T> bind_problem(const py::array& X, const std::vector<py::array>& theta, const Config& cfg,
                      const py::array* P, const py::array* c) {
  Bound<T> b;
  auto& f = b.pb.dyn.field;
  f.kind = resode::parse_field(cfg.field);
  const bool bottleneck = f.kind == resode::FieldKind::bottleneck;
  const std::vector<std::string> names =
      bottleneck ? std::vector<std::string>{"W1", "b1", "W2", "b2"}
                 : std::vector<std::string>{"W", "b"};
  resode::require(theta.size() == names.size(), [&] {
    return "theta must hold " + std::to_string(names.size()) + " arrays for field '" + cfg.field +
           "', got " + std::to_string(theta.size());
  });
  // W1 fixes K (pieces or layers), H and D; everything else must agree with it.
  b.theta.push_back(checked<T>(theta[0], names[0].c_str(), {-1, -1, -1}));
  f.pieces = b.theta[0].shape(0), f.H = b.theta[0].shape(1), f.D = b.theta[0].shape(2);
  auto first_shape = [&] { return shape_string(shape_of(theta[0])); };
  resode::require(f.pieces >= 1 && f.H >= 1 && f.D >= 1,
                  [&] { return names[0] + " must have non-zero extents, got " + first_shape(); });
  if (!bottleneck)
    resode::require(f.H == f.D,
                    [&] { return "W must have shape (K, D, D), got " + first_shape(); });
  std::vector<Shape> shapes{{f.pieces, f.H, f.D}, {f.pieces, f.H}};
  if (bottleneck) shapes.insert(shapes.end(), {{f.pieces, f.D, f.H}, {f.pieces, f.D}});
  for (std::size_t i = 1; i < names.size(); ++i)
    b.theta.push_back(checked<T>(theta[i], names[i].c_str(), shapes[i]));
  for (std::size_t i = 0; i < names.size(); ++i) b.theta_shapes.emplace_back(names[i], shapes[i]);
  f.W1 = b.theta[0].data(), f.b1 = b.theta[1].data();
  if (bottleneck) f.W2 = b.theta[2].data(), f.b2 = b.theta[3].data();

  resode::require(std::isfinite(cfg.dt) && cfg.dt > 0, "dt must be finite and > 0");
  resode::require(cfg.substeps >= 1, "substeps must be >= 1");
  resode::require(cfg.augment >= 0 && cfg.augment < f.D,
                  [&] { return "augment must be in [0, D) with D = " + std::to_string(f.D); });
  b.pb.dyn.activation = resode::parse_activation(cfg.activation);
  b.pb.dyn.tab = resode::tableau(resode::parse_method(cfg.method));
  b.pb.dyn.substeps = cfg.substeps;
  b.pb.dyn.dt = T(cfg.dt);
  b.pb.augment = cfg.augment;

  b.X = checked<T>(X, "X", {-1, f.D - cfg.augment});
  b.pb.N = b.X.shape(0);
  resode::require(b.pb.N >= 1, "X must hold at least one sample");
  b.pb.X = b.X.data();
  if (P) {
    b.P = checked<T>(*P, "P", {-1, f.D});
    const index_t C = b.P.shape(0);
    resode::require(C >= 1, "P must have at least one row (class)");
    b.c = checked<T>(*c, "c", {C});
    b.pb.readout = {C, b.P.data(), b.c.data()};
  }
  return b;
}

// Splits the flat gradient buffer into arrays shaped like theta.
template <class T>
py::list split(py::array_t<T>& flat, const Bound<T>& b) {
  py::list out;
  index_t offset = 0;
  for (const auto& [name, shape] : b.theta_shapes) {
    out.append(view(flat, offset, shape));
    index_t size = 1;
    for (index_t e : shape) size *= e;
    offset += size;
  }
  return out;
}

inline resode::GradientOptions gradient_options(const std::string& gradient, index_t checkpoints) {
  resode::GradientOptions opt;
  if (gradient == "discrete")
    opt.gradient = resode::Gradient::discrete;
  else if (gradient == "adjoint")
    opt.gradient = resode::Gradient::adjoint;
  else
    throw std::invalid_argument("gradient must be 'discrete' or 'adjoint'; got '" + gradient + "'");
  resode::require(checkpoints >= 0, "checkpoints must be >= 0 (0: store every step)");
  opt.checkpoints = checkpoints;
  return opt;
}

// The loss terms loss_and_grad and train_epoch share, validated: the readout's clamp, the
// penalties beside the data loss and the turnpike weight.
struct LossTerms {
  std::string readout = "linear";
  double weight_decay = 0.0, l1 = 0.0, turnpike_weight = 1.0;
  bool turnpike = false, decay_readout = false;
};

template <class T>
void apply_loss_terms(const LossTerms& t, Bound<T>& b, resode::GradientOptions& opt) {
  b.pb.readout.kind = resode::parse_readout(t.readout);
  resode::require(std::isfinite(t.weight_decay) && t.weight_decay >= 0,
                  "weight_decay must be finite and >= 0");
  resode::require(std::isfinite(t.l1) && t.l1 >= 0, "l1 must be finite and >= 0");
  resode::require(std::isfinite(t.turnpike_weight) && t.turnpike_weight > 0,
                  "turnpike_weight must be finite and > 0");
  resode::require(t.turnpike || t.turnpike_weight == 1.0,
                  "turnpike_weight applies to turnpike=True only");
  opt.weight_decay = t.weight_decay, opt.l1 = t.l1, opt.turnpike_weight = t.turnpike_weight;
  opt.turnpike = t.turnpike, opt.decay_readout = t.decay_readout;
}

// Integer class labels (N,) in [0, C) as int64 (converted once when of another integer type);
// TypeError for non-integer dtypes, ValueError naming the first label out of range.
inline py::array_t<std::int64_t, py::array::c_style> checked_labels(const py::array& y, index_t N,
                                                                   index_t C) {
  const char kind = y.dtype().kind();
  if (kind != 'i' && kind != 'u')
    throw py::type_error("y must hold integer class labels for loss 'cross_entropy', got dtype " +
                         std::string(py::str(y.dtype())));
  auto labels = py::array_t<std::int64_t, py::array::c_style | py::array::forcecast>::ensure(y);
  if (!labels) throw py::error_already_set();
  resode::require(labels.ndim() == 1 && labels.shape(0) == N, [&] {
    return "y must have shape (" + std::to_string(N) + ",) like X's first axis, got " +
           shape_string(shape_of(y));
  });
  const std::int64_t* label = labels.data();
  index_t bad = 0;  // the first label out of range (N: none); one compare per label
  while (bad < N && label[bad] >= 0 && label[bad] < C) ++bad;
  resode::require(bad == N, [&] {
    return "y must hold labels in [0, " + std::to_string(C) + "), got " +
           std::to_string(label[bad]) + " at index " + std::to_string(bad);
  });
  return labels;
}

// The targets of a loss (labels for cross-entropy, values (N, C) for MSE), checked, with the
// arrays they point into kept alive.
template <class T>
struct BoundTargets {
  resode::Targets<T> targets;
  py::array_t<std::int64_t, py::array::c_style> labels;
  carray<T> values;
};

template <class T>
std::unique_ptr<BoundTargets<T>> checked_targets(const py::array& y, const std::string& loss,
                                                 index_t N, index_t C) {
  auto b = std::make_unique<BoundTargets<T>>();
  b->targets.kind = resode::parse_loss(loss);
  b->targets.count = N;
  if (b->targets.kind == resode::LossKind::cross_entropy) {
    b->labels = checked_labels(y, N, C);
    b->targets.labels = b->labels.data();
  } else {
    b->values = checked<T>(y, "y", {N, C});
    b->targets.values = b->values.data();
  }
  return b;
}

inline Config config(std::string field, std::string activation, std::string method, double dt,
                     index_t substeps, index_t augment) {
  return Config{std::move(field), std::move(activation), std::move(method), dt, substeps, augment};
}

}  // namespace resode::bind
