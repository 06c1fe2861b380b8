// Bindings of the sweeps (trajectory, logits, loss_and_grad, vjp): validate every array against
// the shapes the field implies, build a resode::Problem over the NumPy buffers, release the GIL
// and run the core. X's dtype (float32 or float64) selects the template instance; every other
// float array must have the same dtype (no silent casts, no hidden copies).
#include <cmath>
#include <cstdint>

#include "bindings.hpp"
#include "sweep_instances.hpp"

namespace {

using resode::index_t;
using resode::bind::checked;
using resode::bind::Shape;
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
  auto first_shape = [&] { return resode::bind::shape_string(resode::bind::shape_of(theta[0])); };
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
    out.append(resode::bind::view(flat, offset, shape));
    index_t size = 1;
    for (index_t e : shape) size *= e;
    offset += size;
  }
  return out;
}

resode::GradientOptions gradient_options(const std::string& gradient, index_t checkpoints) {
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

template <class T>
py::array trajectory(const py::array& X, const std::vector<py::array>& theta, const Config& cfg) {
  auto b = bind_problem<T>(X, theta, cfg, nullptr, nullptr);
  const index_t steps = b.pb.dyn.steps();
  resode::bind::check_output_size(
      double(steps + 1) * double(b.pb.N) * double(b.pb.dyn.field.D), sizeof(T),
      "the trajectory (steps + 1 = " + std::to_string(steps + 1) + ", N = " +
          std::to_string(b.pb.N) + ", D = " + std::to_string(b.pb.dyn.field.D) + ")");
  py::array_t<T> out({steps + 1, b.pb.N, b.pb.dyn.field.D});
  T* dst = out.mutable_data();
  py::gil_scoped_release release;  // the core touches only the buffers held by b and out
  resode::trajectory(b.pb, dst);
  return out;
}

template <class T>
py::array logits(const py::array& X, const std::vector<py::array>& theta, const py::array& P,
                 const py::array& c, const Config& cfg) {
  auto b = bind_problem<T>(X, theta, cfg, &P, &c);
  py::array_t<T> out({b.pb.N, b.pb.readout.classes});
  T* dst = out.mutable_data();
  py::gil_scoped_release release;  // the core touches only the buffers held by b and out
  resode::logits(b.pb, dst);
  return out;
}

template <class T>
py::tuple loss_and_grad(const py::array& X, const py::array& y,
                        const std::vector<py::array>& theta, const py::array& P,
                        const py::array& c, const Config& cfg, const std::string& loss,
                        double weight_decay, bool turnpike, const std::string& gradient,
                        index_t checkpoints) {
  auto b = bind_problem<T>(X, theta, cfg, &P, &c);
  const index_t N = b.pb.N, C = b.pb.readout.classes, D = b.pb.dyn.field.D;
  resode::Targets<T> targets;
  targets.kind = resode::parse_loss(loss);
  targets.count = N;
  py::array_t<std::int64_t, py::array::c_style> labels;
  carray<T> values;
  if (targets.kind == resode::LossKind::cross_entropy) {
    const char kind = y.dtype().kind();
    if (kind != 'i' && kind != 'u')
      throw py::type_error("y must hold integer class labels for loss 'cross_entropy', got dtype " +
                           std::string(py::str(y.dtype())));
    labels = py::array_t<std::int64_t, py::array::c_style | py::array::forcecast>::ensure(y);
    if (!labels) throw py::error_already_set();
    resode::require(labels.ndim() == 1 && labels.shape(0) == N, [&] {
      return "y must have shape (" + std::to_string(N) + ",) like X's first axis, got " +
             resode::bind::shape_string(resode::bind::shape_of(y));
    });
    const std::int64_t* label = labels.data();
    index_t bad = 0;  // the first label out of range (N: none); one compare per label
    while (bad < N && label[bad] >= 0 && label[bad] < C) ++bad;
    resode::require(bad == N, [&] {
      return "y must hold labels in [0, " + std::to_string(C) + "), got " +
             std::to_string(label[bad]) + " at index " + std::to_string(bad);
    });
    targets.labels = labels.data();
  } else {
    values = checked<T>(y, "y", {N, C});
    targets.values = values.data();
  }
  auto opt = gradient_options(gradient, checkpoints);
  resode::require(std::isfinite(weight_decay) && weight_decay >= 0,
                  "weight_decay must be finite and >= 0");
  opt.weight_decay = weight_decay;
  opt.turnpike = turnpike;

  py::array_t<T> dfield(b.pb.dyn.field.size()), dP({C, D}), dc(C);
  T *gf = dfield.mutable_data(), *gP = dP.mutable_data(), *gc = dc.mutable_data();
  double value;
  {
    py::gil_scoped_release release;  // the core touches only buffers held by b and the outputs
    value = resode::loss_and_grad(b.pb, targets, opt, gf, gP, gc);
  }
  return py::make_tuple(value, split(dfield, b), dP, dc);
}

template <class T>
py::tuple vjp(const py::array& X, const py::array& cotangent, const std::vector<py::array>& theta,
              const Config& cfg, const std::string& gradient, index_t checkpoints) {
  auto b = bind_problem<T>(X, theta, cfg, nullptr, nullptr);
  const auto cot = checked<T>(cotangent, "cotangent", {b.pb.N, b.pb.dyn.field.D});
  const auto opt = gradient_options(gradient, checkpoints);
  py::array_t<T> dfield(b.pb.dyn.field.size()), dX({b.pb.N, b.pb.dim()});
  T *gf = dfield.mutable_data(), *gX = dX.mutable_data();
  {
    py::gil_scoped_release release;  // the core touches only buffers held by b, cot and outputs
    resode::vjp(b.pb, cot.data(), opt, gf, gX);
  }
  return py::make_tuple(split(dfield, b), dX);
}

Config config(std::string field, std::string activation, std::string method, double dt,
              index_t substeps, index_t augment) {
  return Config{std::move(field), std::move(activation), std::move(method), dt, substeps, augment};
}

}  // namespace

void register_sweeps(py::module_& m) {
  using resode::bind::is_float64;
  m.def(
      "trajectory",
      [](const py::array& X, const std::vector<py::array>& theta, std::string field,
         std::string activation, std::string method, double dt, index_t substeps,
         index_t augment) {
        const Config cfg = config(field, activation, method, dt, substeps, augment);
        return is_float64(X, "X") ? trajectory<double>(X, theta, cfg)
                                  : trajectory<float>(X, theta, cfg);
      },
      py::arg("X"), py::arg("theta"), py::kw_only(), py::arg("field"), py::arg("activation"),
      py::arg("method"), py::arg("dt"), py::arg("substeps") = 1, py::arg("augment") = 0,
      "All states on the step grid, shape (steps + 1, N, D).");
  m.def(
      "logits",
      [](const py::array& X, const std::vector<py::array>& theta, const py::array& P,
         const py::array& c, std::string field, std::string activation, std::string method,
         double dt, index_t substeps, index_t augment) {
        const Config cfg = config(field, activation, method, dt, substeps, augment);
        return is_float64(X, "X") ? logits<double>(X, theta, P, c, cfg)
                                  : logits<float>(X, theta, P, c, cfg);
      },
      py::arg("X"), py::arg("theta"), py::arg("P"), py::arg("c"), py::kw_only(),
      py::arg("field"), py::arg("activation"), py::arg("method"), py::arg("dt"),
      py::arg("substeps") = 1, py::arg("augment") = 0,
      "Logits x_S P^T + c of the final states, shape (N, classes).");
  m.def(
      "loss_and_grad",
      [](const py::array& X, const py::array& y, const std::vector<py::array>& theta,
         const py::array& P, const py::array& c, std::string field, std::string activation,
         std::string method, double dt, index_t substeps, index_t augment, std::string loss,
         double weight_decay, bool turnpike, std::string gradient, index_t checkpoints) {
        const Config cfg = config(field, activation, method, dt, substeps, augment);
        return is_float64(X, "X")
                   ? loss_and_grad<double>(X, y, theta, P, c, cfg, loss, weight_decay, turnpike,
                                           gradient, checkpoints)
                   : loss_and_grad<float>(X, y, theta, P, c, cfg, loss, weight_decay, turnpike,
                                          gradient, checkpoints);
      },
      py::arg("X"), py::arg("y"), py::arg("theta"), py::arg("P"), py::arg("c"), py::kw_only(),
      py::arg("field"), py::arg("activation"), py::arg("method"), py::arg("dt"),
      py::arg("substeps") = 1, py::arg("augment") = 0, py::arg("loss") = "cross_entropy",
      py::arg("weight_decay") = 0.0, py::arg("turnpike") = false,
      py::arg("gradient") = "discrete", py::arg("checkpoints") = 0,
      "(loss, [field grads], dP, dc): forward sweep, loss and backward sweep in one call.");
  m.def(
      "vjp",
      [](const py::array& X, const py::array& cotangent, const std::vector<py::array>& theta,
         std::string field, std::string activation, std::string method, double dt,
         index_t substeps, index_t augment, std::string gradient, index_t checkpoints) {
        const Config cfg = config(field, activation, method, dt, substeps, augment);
        return is_float64(X, "X") ? vjp<double>(X, cotangent, theta, cfg, gradient, checkpoints)
                                  : vjp<float>(X, cotangent, theta, cfg, gradient, checkpoints);
      },
      py::arg("X"), py::arg("cotangent"), py::arg("theta"), py::kw_only(), py::arg("field"),
      py::arg("activation"), py::arg("method"), py::arg("dt"), py::arg("substeps") = 1,
      py::arg("augment") = 0, py::arg("gradient") = "discrete", py::arg("checkpoints") = 0,
      "([field grads], dX): vector-Jacobian product of X -> x_S for a cotangent (N, D) on x_S.");
}
