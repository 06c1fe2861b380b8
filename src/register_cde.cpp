// Bindings of the neural CDE (resode/cde.hpp): cde_solve, cde_vjp, cde_logits and
// cde_loss_and_grad. U's dtype (float32 or float64) selects the instance; every parameter must
// have that dtype; times (any real dtype) and t are converted to float64 once.
#include <cmath>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "bindings.hpp"
#include "cde_instances.hpp"
#include "series_args.hpp"

namespace {

using namespace resode::bind;
using resode::index_t;

// The keyword arguments every CDE function shares.
struct CdeOptions {
  std::string field, activation;
  py::object output_activation;  // None or an activation name
  std::string interpolation, method;
  index_t substeps;
  py::object t;  // None or a 1-D array of output times
  double rtol = 1e-7, atol = 1e-9;  // adaptive methods (cde_adaptive.hpp) only
  std::optional<double> first_step;
  index_t max_steps = 100000;
  py::object grid = py::none();  // adaptive methods: a replay of these accepted step times
  py::object window = py::none();  // None or (t_start, t_end): the pieces' window
};

// Validated arrays (kept alive here) and the problem pointing into them.
template <class T>
struct BoundCde {
  carray<T> U, A, a, P, c;
  darray times, t;
  std::vector<std::string> field_names;
  std::vector<Shape> field_shapes;
  std::vector<carray<T>> field_arrays;
  resode::CdeProblem<T> pb;
  bool adaptive = false;  // an adaptive method: run() replaces pb by the replay of its steps
  resode::EmbeddedTableau etab;
  resode::AdaptiveOptions aopt;
  std::vector<resode::CdeAdaptiveRecord> records;
  std::shared_ptr<const std::vector<std::vector<double>>> given;  // grid=: no adaptive run
  // Runs the adaptive method (without the GIL) and points pb at its accepted grids.
  void run() {
    if (!adaptive) return;
    if (given) {
      pb.accepted = given, pb.tab = resode::solution_tableau(etab), pb.substeps = 1;
      return;
    }
    records = resode::cde_adaptive_grids(pb, etab, aopt);
    pb = resode::cde_replay_problem(pb, etab, records);
  }
};

// params[key] as a C-contiguous, finite array of dtype T like U and the expected shape
// (-1 = any).
template <class T>
carray<T> param(const py::dict& params, const std::string& key, const Shape& expected,
                const std::string& meaning) {
  return checked_param<T>(params, key, expected, meaning, "U");
}

template <class T>
void bind_field(const py::dict& params, const CdeOptions& o, BoundCde<T>& b) {
  auto& f = b.pb.field;
  f.kind = resode::parse_field(o.field);
  const index_t S = f.S, O = f.S * f.C;
  if (f.bottleneck()) {
    b.field_names = {"W1", "b1", "W2", "b2"};
    auto W1 = param<T>(params, "W1", {-1, -1, S}, "(pieces, hidden, state)");
    f.pieces = W1.shape(0), f.H = W1.shape(1);
    const index_t K = f.pieces, H = f.H;
    b.field_shapes = {{K, H, S}, {K, H}, {K, O, H}, {K, O}};
    b.field_arrays.push_back(W1);
    b.field_arrays.push_back(param<T>(params, "b1", {K, H}, "(pieces, hidden)"));
    b.field_arrays.push_back(param<T>(params, "W2", {K, O, H}, "(pieces, state*channels, hidden)"));
    b.field_arrays.push_back(param<T>(params, "b2", {K, O}, "(pieces, state*channels)"));
    f.W2 = b.field_arrays[2].data(), f.b2 = b.field_arrays[3].data();
  } else {
    b.field_names = {"W", "b"};
    auto W = param<T>(params, "W", {-1, O, S}, "(pieces, state*channels, state)");
    f.pieces = W.shape(0);
    const index_t K = f.pieces;
    b.field_shapes = {{K, O, S}, {K, O}};
    b.field_arrays.push_back(W);
    b.field_arrays.push_back(param<T>(params, "b", {K, O}, "(pieces, state*channels)"));
  }
  f.W1 = b.field_arrays[0].data(), f.b1 = b.field_arrays[1].data();
  f.activation = resode::parse_activation(o.activation);
  f.has_output_activation = !o.output_activation.is_none();
  if (f.has_output_activation) {
    if (!py::isinstance<py::str>(o.output_activation))
      throw py::type_error("output_activation must be None or an activation name");
    f.output_activation = resode::parse_activation(o.output_activation.cast<std::string>());
  }
}

// window=None (the call's observation window) or (t_start, t_end), finite, t_start < t_end.
template <class T>
void bind_window(const py::object& window, resode::CdeProblem<T>& pb) {
  if (window.is_none()) return;
  const darray w = real_array(window, "window");
  resode::require(w.ndim() == 1 && w.shape(0) == 2, [&] {
    return "window must be None or (t_start, t_end), got shape " + shape_string(shape_of(w));
  });
  pb.has_window = true, pb.window_lo = w.data()[0], pb.window_hi = w.data()[1];
  resode::require(std::isfinite(pb.window_lo) && std::isfinite(pb.window_hi) &&
                      pb.window_lo < pb.window_hi,
                  "window must be (t_start, t_end), finite with t_start < t_end");
}

template <class T>
std::unique_ptr<BoundCde<T>> bind_cde(const py::dict& params, const py::array& U,
                                      const py::object& times, const CdeOptions& o,
                                      bool readout) {
  auto b = std::make_unique<BoundCde<T>>();
  auto& pb = b->pb;
  if (U.ndim() != 3)
    throw std::invalid_argument("U must have shape (N, L, C) (samples, observations, channels), "
                                "got " + shape_string(shape_of(U)));
  b->U = carray<T>::ensure(U);
  if (!b->U) throw py::error_already_set();
  pb.N = b->U.shape(0), pb.L = b->U.shape(1), pb.C = b->U.shape(2);
  resode::require(pb.N >= 1 && pb.L >= 1 && pb.C >= 1, [&] {
    return "U must have non-zero extents (N, L, C), got " + shape_string(shape_of(U));
  });
  require_no_inf(b->U);
  pb.U = b->U.data();
  bind_times(times, b->times, pb);

  b->A = param<T>(params, "A", {-1, pb.C}, "(state, channels)");
  pb.field.S = b->A.shape(0), pb.field.C = pb.C;
  b->a = param<T>(params, "a", {pb.field.S}, "(state,)");
  pb.A = b->A.data(), pb.a = b->a.data();
  bind_field(params, o, *b);
  if (readout) {
    b->P = param<T>(params, "P", {-1, pb.field.S}, "(outputs, state)");
    b->c = param<T>(params, "c", {b->P.shape(0)}, "(outputs,)");
    pb.readout = {b->P.shape(0), b->P.data(), b->c.data()};
  }

  pb.interpolation = resode::parse_interpolation(o.interpolation);
  resode::require(o.grid.is_none() || resode::is_adaptive_method(o.method),
                  "grid is for the adaptive methods (dopri5, tsit5, bosh3)");
  bind_method(o.method, o.rtol, o.atol, o.first_step, o.max_steps, *b);
  if (b->adaptive && !o.grid.is_none()) {
    auto grids = std::make_shared<std::vector<std::vector<double>>>();
    for (auto item : o.grid) {
      const darray g = real_array(py::reinterpret_borrow<py::object>(item), "grid");
      resode::require(g.ndim() == 1, "grid must be a sequence of 1-D arrays of step times");
      grids->emplace_back(g.data(), g.data() + g.size());
    }
    b->given = std::move(grids);
  }
  resode::require(o.substeps >= 1, "substeps must be >= 1");
  pb.substeps = o.substeps;
  bind_window(o.window, pb);
  bind_out_times(o.t, b->t, pb);
  return b;
}

// The shape of cde_solve's output: (N, S), or (len(t), N, S).
template <class T>
Shape output_shape(const resode::CdeProblem<T>& pb) {
  if (pb.out_count > 0) return {pb.out_count, pb.N, pb.field.S};
  return {pb.N, pb.field.S};
}

template <class T>
py::array solve(const py::dict& params, const py::array& U, const py::object& times,
                const CdeOptions& o) {
  auto b = bind_cde<T>(params, U, times, o, false);
  const Shape shape = output_shape(b->pb);
  if (shape.size() == 3)
    check_output_size(double(shape[0]) * double(shape[1]) * double(shape[2]), sizeof(T),
                      "the states at the times t");
  py::array_t<T> out(shape);
  T* dst = out.mutable_data();
  py::gil_scoped_release release;  // the core touches only the buffers held by b and out
  b->run();
  resode::cde_solve(b->pb, dst);
  return out;
}

template <class T>
py::array logits(const py::dict& params, const py::array& U, const py::object& times,
                 const CdeOptions& o) {
  auto b = bind_cde<T>(params, U, times, o, true);
  py::array_t<T> out({b->pb.N, b->pb.readout.classes});
  T* dst = out.mutable_data();
  py::gil_scoped_release release;  // the core touches only the buffers held by b and out
  b->run();
  resode::cde_logits(b->pb, dst);
  return out;
}

// The gradient dict keyed exactly as params: A, a, the field's arrays (views of `flat`), P and
// c when computed, and zeros shaped like any other entry (which the model does not use).
template <class T>
py::dict gradient_dict(const py::dict& params, BoundCde<T>& b, py::array_t<T>& flat,
                       py::array_t<T>& dA, py::array_t<T>& da, py::object dP, py::object dc) {
  py::dict grads;
  grads["A"] = dA;
  grads["a"] = da;
  add_field_views(grads, b.field_names, b.field_shapes, flat);
  if (!dP.is_none()) grads["P"] = dP, grads["c"] = dc;
  const py::object zeros_like = py::module_::import("numpy").attr("zeros_like");
  for (auto item : params)
    if (!grads.contains(item.first)) grads[item.first] = zeros_like(item.second);
  return grads;
}

template <class T>
py::tuple vjp(const py::dict& params, const py::array& U, const py::object& times,
              const py::array& cotangent, const CdeOptions& o, bool adjoint) {
  auto b = bind_cde<T>(params, U, times, o, false);
  auto& pb = b->pb;
  const Shape shape = output_shape(pb);
  if (cotangent.dtype().kind() != 'f' || cotangent.itemsize() != sizeof(T))
    throw py::type_error(std::string("cotangent must have dtype ") + dtype_name(sizeof(T)) +
                         " like U, got " + std::string(py::str(cotangent.dtype())));
  resode::require(shape_of(cotangent) == shape, [&] {
    return "cotangent must have the shape of cde_solve's output " + shape_string(shape) +
           ", got " + shape_string(shape_of(cotangent));
  });
  const auto cot = carray<T>::ensure(cotangent);
  if (!cot) throw py::error_already_set();
  resode::require(resode::all_finite(cot.size(), cot.data()), "cotangent contains NaN or Inf");
  py::array_t<T> dfield(pb.field.size()), dA({pb.field.S, pb.C}), da(pb.field.S);
  py::array_t<T> dU({pb.N, pb.L, pb.C});
  {
    T *gf = dfield.mutable_data(), *gA = dA.mutable_data(), *ga = da.mutable_data();
    T* gU = dU.mutable_data();
    py::gil_scoped_release release;  // the core touches only buffers held by b, cot, outputs
    b->run();
    if (adjoint)
      resode::cde_adjoint_vjp(pb, cot.data(), gf, gA, ga, gU);
    else
      resode::cde_vjp(pb, cot.data(), gf, gA, ga, gU);
  }
  return py::make_tuple(gradient_dict(params, *b, dfield, dA, da, py::none(), py::none()), dU);
}

// Labels (N,) in [0, classes) for cross_entropy, values (N, classes) of U's dtype for mse.
template <class T>
struct CdeTargets {
  resode::Targets<T> targets;
  py::array_t<std::int64_t, py::array::c_style> labels;
  carray<T> values;
};

template <class T>
std::unique_ptr<CdeTargets<T>> checked_cde_targets(const py::array& y, const std::string& loss,
                                                   index_t N, index_t classes) {
  auto t = std::make_unique<CdeTargets<T>>();
  t->targets.kind = resode::parse_loss(loss);
  t->targets.count = N;
  if (t->targets.kind == resode::LossKind::cross_entropy) {
    const char kind = y.dtype().kind();
    if (kind != 'i' && kind != 'u')
      throw py::type_error("y must hold integer class labels for loss 'cross_entropy', got "
                           "dtype " + std::string(py::str(y.dtype())));
    t->labels = py::array_t<std::int64_t, py::array::c_style | py::array::forcecast>::ensure(y);
    if (!t->labels) throw py::error_already_set();
    resode::require(t->labels.ndim() == 1 && t->labels.shape(0) == N, [&] {
      return "y must have shape (" + std::to_string(N) + ",) like U's first axis, got " +
             shape_string(shape_of(y));
    });
    const std::int64_t* label = t->labels.data();
    for (index_t i = 0; i < N; ++i)
      resode::require(label[i] >= 0 && label[i] < classes, [&] {
        return "y must hold labels in [0, " + std::to_string(classes) + ") (the rows of P), got " +
               std::to_string(label[i]) + " at index " + std::to_string(i);
      });
    t->targets.labels = label;
    return t;
  }
  if (y.dtype().kind() != 'f' || y.itemsize() != sizeof(T))
    throw py::type_error(std::string("y must have dtype ") + dtype_name(sizeof(T)) +
                         " like U for loss 'mse', got " + std::string(py::str(y.dtype())));
  resode::require(shape_of(y) == Shape{N, classes}, [&] {
    return "y must have shape (" + std::to_string(N) + ", " + std::to_string(classes) +
           ") (samples, outputs) for loss 'mse', got " + shape_string(shape_of(y));
  });
  t->values = carray<T>::ensure(y);
  if (!t->values) throw py::error_already_set();
  resode::require(resode::all_finite(t->values.size(), t->values.data()), "y contains NaN or Inf");
  t->targets.values = t->values.data();
  return t;
}

template <class T>
py::tuple loss_and_grad(const py::dict& params, const py::array& U, const py::array& y,
                        const py::object& times, const CdeOptions& o, const std::string& loss,
                        double weight_decay, bool adjoint, bool return_logits,
                        bool return_dU) {
  auto b = bind_cde<T>(params, U, times, o, true);
  auto& pb = b->pb;
  const index_t S = pb.field.S, classes = pb.readout.classes;
  const auto targets = checked_cde_targets<T>(y, loss, pb.N, classes);
  resode::require(std::isfinite(weight_decay) && weight_decay >= 0,
                  "weight_decay must be finite and >= 0");
  py::array_t<T> dfield(pb.field.size()), dA({S, pb.C}), da(S), dP({classes, S}), dc(classes);
  // without return_dU the discrete sweep skips the observations' cotangent (the adjoint's
  // quadratures compute it anyway, into an array that is dropped)
  py::array_t<T> dU(return_dU || adjoint ? Shape{pb.N, pb.L, pb.C} : Shape{0, pb.L, pb.C});
  py::array_t<T> logits_out(return_logits ? Shape{pb.N, classes} : Shape{0, classes});
  double value;
  {
    T *gf = dfield.mutable_data(), *gA = dA.mutable_data(), *ga = da.mutable_data();
    T *gP = dP.mutable_data(), *gc = dc.mutable_data();
    T* gU = return_dU || adjoint ? dU.mutable_data() : nullptr;
    T* gz = return_logits ? logits_out.mutable_data() : nullptr;
    py::gil_scoped_release release;  // the core touches only buffers held here and outputs
    b->run();
    value = adjoint ? resode::cde_adjoint_loss_and_grad(pb, targets->targets, weight_decay, gf,
                                                        gA, ga, gP, gc, gU, gz)
                    : resode::cde_loss_and_grad(pb, targets->targets, weight_decay, gf, gA, ga,
                                                gP, gc, gU, gz);
  }
  py::dict grads = gradient_dict(params, *b, dfield, dA, da, dP, dc);
  const py::object dU_out = return_dU ? py::object(dU) : py::object(py::none());
  if (return_logits) return py::make_tuple(value, grads, dU_out, logits_out);
  return py::make_tuple(value, grads, dU_out);
}

template <class T>
py::tuple grids(const py::dict& params, const py::array& U, const py::object& times,
                const CdeOptions& o) {
  resode::require(o.grid.is_none(), "cde_grids runs the adaptive method: grid must be None");
  auto b = bind_cde<T>(params, U, times, o, false);
  {
    py::gil_scoped_release release;
    b->run();
  }
  return grids_and_counts(b->records);
}

bool u_is_float64(const py::object& U) {
  if (!py::isinstance<py::array>(U))
    throw py::type_error("U must be a NumPy array of shape (N, L, C), got " +
                         std::string(py::str(py::type::of(U).attr("__name__"))));
  return is_float64(U.cast<py::array>(), "U");
}

// The keyword arguments shared by the four functions, in their order (cde_solve and cde_vjp
// also take t).
#define RESODE_CDE_KWARGS                                                                 \
  py::kw_only(), py::arg("field"), py::arg("activation") = "tanh",                        \
      py::arg("output_activation") = py::none(), py::arg("interpolation") = "cubic",      \
      py::arg("method") = "rk4", py::arg("substeps") = 1, py::arg("rtol") = 1e-7,           \
      py::arg("atol") = 1e-9, py::arg("first_step") = py::none(),                         \
      py::arg("max_steps") = 100000, py::arg("grid") = py::none(),                        \
      py::arg("window") = py::none()

}  // namespace

void register_cde(py::module_& m) {
  m.def(
      "cde_solve",
      [](const py::dict& params, const py::object& U, const py::object& times, std::string field,
         std::string activation, py::object output_activation, std::string interpolation,
         std::string method, index_t substeps,
         double rtol, double atol, std::optional<double> first_step,
         index_t max_steps, py::object grid, py::object window, py::object t) {
        const CdeOptions o{field,  activation, output_activation, interpolation, method,
                           substeps, t, rtol, atol, first_step, max_steps, grid, window};
        const bool f64 = u_is_float64(U);
        const py::array u = U.cast<py::array>();
        return f64 ? solve<double>(params, u, times, o) : solve<float>(params, u, times, o);
      },
      py::arg("params"), py::arg("U"), py::arg("times"), RESODE_CDE_KWARGS,
      py::arg("t") = py::none(),
      "The neural CDE's states z_i(T_i), shape (N, state); with t, the states at those times, "
      "(len(t), N, state).");
  m.def(
      "cde_vjp",
      [](const py::dict& params, const py::object& U, const py::object& times,
         const py::array& cotangent, std::string field, std::string activation,
         py::object output_activation, std::string interpolation, std::string method,
         index_t substeps, double rtol, double atol, std::optional<double> first_step,
         index_t max_steps, py::object grid, py::object window, py::object t,
         std::string gradient) {
        const CdeOptions o{field,  activation, output_activation, interpolation, method,
                           substeps, t, rtol, atol, first_step, max_steps, grid, window};
        const bool adjoint = is_adjoint(gradient);
        const bool f64 = u_is_float64(U);
        const py::array u = U.cast<py::array>();
        return f64 ? vjp<double>(params, u, times, cotangent, o, adjoint)
                   : vjp<float>(params, u, times, cotangent, o, adjoint);
      },
      py::arg("params"), py::arg("U"), py::arg("times"), py::arg("cotangent"), RESODE_CDE_KWARGS,
      py::arg("t") = py::none(), py::arg("gradient") = "discrete",
      "(grads keyed as params, dU): the exact discrete vector-Jacobian product of cde_solve "
      "for a cotangent of its output's shape (through an adaptive method's accepted steps), "
      "or with gradient='adjoint' the continuous adjoint (backsolve over the same grid).");
  m.def(
      "cde_logits",
      [](const py::dict& params, const py::object& U, const py::object& times, std::string field,
         std::string activation, py::object output_activation, std::string interpolation,
         std::string method, index_t substeps,
         double rtol, double atol, std::optional<double> first_step,
         index_t max_steps, py::object grid, py::object window) {
        const CdeOptions o{field,  activation, output_activation, interpolation, method,
                           substeps, py::none(), rtol, atol, first_step, max_steps, grid,
                           window};
        const bool f64 = u_is_float64(U);
        const py::array u = U.cast<py::array>();
        return f64 ? logits<double>(params, u, times, o)
                               : logits<float>(params, u, times, o);
      },
      py::arg("params"), py::arg("U"), py::arg("times"), RESODE_CDE_KWARGS,
      "Logits z_i(T_i) P^T + c, shape (N, outputs).");
  m.def(
      "cde_loss_and_grad",
      [](const py::dict& params, const py::object& U, const py::array& y, const py::object& times,
         std::string field, std::string activation, py::object output_activation,
         std::string interpolation, std::string method, index_t substeps,
         double rtol, double atol, std::optional<double> first_step,
         index_t max_steps, py::object grid, py::object window,
         std::string loss, double weight_decay, std::string gradient, bool return_logits,
         bool return_dU) {
        const CdeOptions o{field,  activation, output_activation, interpolation, method,
                           substeps, py::none(), rtol, atol, first_step, max_steps, grid,
                           window};
        const bool adjoint = is_adjoint(gradient);
        const bool f64 = u_is_float64(U);
        const py::array u = U.cast<py::array>();
        return f64
                   ? loss_and_grad<double>(params, u, y, times, o, loss, weight_decay, adjoint,
                                           return_logits, return_dU)
                   : loss_and_grad<float>(params, u, y, times, o, loss, weight_decay, adjoint,
                                          return_logits, return_dU);
      },
      py::arg("params"), py::arg("U"), py::arg("y"), py::arg("times"), RESODE_CDE_KWARGS,
      py::arg("loss") = "cross_entropy", py::arg("weight_decay") = 0.0,
      py::arg("gradient") = "discrete", py::arg("return_logits") = false,
      py::arg("return_dU") = true,
      "(loss, grads keyed as params incl. P and c, dU): the data loss of the logits plus "
      "weight_decay * the squared field parameters, and its exact discrete gradient; with "
      "return_logits, also the logits (N, outputs) the loss read; without return_dU, dU is "
      "None and its computation skipped.");
  m.def(
      "cde_grids",
      [](const py::dict& params, const py::object& U, const py::object& times, std::string field,
         std::string activation, py::object output_activation, std::string interpolation,
         std::string method, index_t substeps,
         double rtol, double atol, std::optional<double> first_step,
         index_t max_steps, py::object grid, py::object window, py::object t) {
        const CdeOptions o{field,  activation, output_activation, interpolation, method,
                           substeps, t, rtol, atol, first_step, max_steps, grid, window};
        require_adaptive_method(method);
        const bool f64 = u_is_float64(U);
        const py::array u = U.cast<py::array>();
        return f64 ? grids<double>(params, u, times, o) : grids<float>(params, u, times, o);
      },
      py::arg("params"), py::arg("U"), py::arg("times"), RESODE_CDE_KWARGS,
      py::arg("t") = py::none(),
      "(grids, counts) of an adaptive method: each sample's accepted step times (float64) and "
      "counts (N, 3) int64: function evaluations, accepted and rejected steps.");
}
