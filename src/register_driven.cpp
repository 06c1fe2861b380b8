// Bindings of the input-driven neural ODE (resode/driven.hpp, driven_adaptive.hpp,
// driven_adjoint.hpp): driven_solve, driven_vjp, driven_logits, driven_loss_and_grad and
// driven_grids. x0's dtype (float32 or float64) selects the
// instance; U and every parameter must have that dtype; times and t are converted to float64.
#include <cmath>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "bindings.hpp"
#include "resode/driven.hpp"
#include "resode/driven_adaptive.hpp"
#include "resode/driven_adjoint.hpp"
#include "series_args.hpp"

namespace {

using namespace resode::bind;
using resode::index_t;

struct DrivenOptions {
  double T;
  std::string field, activation, interpolation, method;
  index_t substeps;
  py::object t;  // None or a 1-D array of output times
  double rtol = 1e-7, atol = 1e-9;  // adaptive methods (driven_adaptive.hpp) only
  std::optional<double> first_step;
  index_t max_steps = 100000;
};

template <class T>
struct BoundDriven {
  carray<T> x0, U, P, c;
  darray times, t;
  std::vector<std::string> names;
  std::vector<Shape> shapes;
  std::vector<carray<T>> arrays;
  resode::DrivenProblem<T> pb;
  bool adaptive = false;  // an adaptive method: run() replaces pb by the replay of its steps
  resode::EmbeddedTableau etab;
  resode::AdaptiveOptions aopt;
  std::vector<resode::DrivenAdaptiveRecord> records;
  // Runs the adaptive method (without the GIL) and points pb at its accepted grids.
  void run() {
    if (!adaptive) return;
    records = resode::driven_adaptive_grids(pb, etab, aopt);
    pb = resode::driven_replay_problem(pb, etab, records);
  }
};

// params[key]: dtype T like x0, finite, the expected shape (-1 = any extent >= 1).
template <class T>
carray<T> param(const py::dict& params, const std::string& key, const Shape& expected,
                const std::string& meaning) {
  return checked_param<T>(params, key, expected, meaning, "x0");
}

template <class T>
void bind_field(const py::dict& params, const DrivenOptions& o, BoundDriven<T>& b) {
  auto& f = b.pb.field;
  f.kind = resode::parse_driven_field(o.field);
  f.activation = resode::parse_activation(o.activation);
  const index_t D = f.D, in = f.D + f.C;
  if (f.bottleneck()) {
    b.names = {"W1", "b1", "W2", "b2"};
    auto W1 = param<T>(params, "W1", {-1, -1, in}, "(pieces, hidden, dim + inputs)");
    f.pieces = W1.shape(0), f.H = W1.shape(1);
    const index_t K = f.pieces, H = f.H;
    b.shapes = {{K, H, in}, {K, H}, {K, D, H}, {K, D}};
    b.arrays.push_back(W1);
    b.arrays.push_back(param<T>(params, "b1", {K, H}, "(pieces, hidden)"));
    b.arrays.push_back(param<T>(params, "W2", {K, D, H}, "(pieces, dim, hidden)"));
    b.arrays.push_back(param<T>(params, "b2", {K, D}, "(pieces, dim)"));
    f.W2 = b.arrays[2].data(), f.b2 = b.arrays[3].data();
  } else {
    b.names = {"W", "b"};
    auto W = param<T>(params, "W", {-1, D, in}, "(pieces, dim, dim + inputs)");
    f.pieces = W.shape(0);
    const index_t K = f.pieces;
    b.shapes = {{K, D, in}, {K, D}};
    b.arrays.push_back(W);
    b.arrays.push_back(param<T>(params, "b", {K, D}, "(pieces, dim)"));
  }
  f.W1 = b.arrays[0].data(), f.b1 = b.arrays[1].data();
}

template <class T>
std::unique_ptr<BoundDriven<T>> bind_driven(const py::dict& params, const py::array& x0,
                                            const py::object& U, const py::object& times,
                                            const DrivenOptions& o, bool readout) {
  auto b = std::make_unique<BoundDriven<T>>();
  auto& pb = b->pb;
  b->x0 = typed<T>(x0, "x0", "x0");
  resode::require(b->x0.ndim() == 2 && b->x0.shape(0) >= 1 && b->x0.shape(1) >= 1, [&] {
    return "x0 must have shape (N, D) (samples, state), got " + shape_string(shape_of(b->x0));
  });
  resode::require(resode::all_finite(b->x0.size(), b->x0.data()), "x0 contains NaN or Inf");
  b->U = typed<T>(U, "U", "x0");
  resode::require(b->U.ndim() == 3 && b->U.shape(0) == b->x0.shape(0) && b->U.shape(1) >= 1 &&
                      b->U.shape(2) >= 1,
                  [&] {
                    return "U must have shape (N, L, C) with N = " +
                           std::to_string(b->x0.shape(0)) + " like x0, got " +
                           shape_string(shape_of(b->U));
                  });
  pb.N = b->U.shape(0), pb.L = b->U.shape(1), pb.C = b->U.shape(2);
  require_no_inf(b->U);
  pb.U = b->U.data(), pb.x0 = b->x0.data();
  bind_times(times, b->times, pb);
  pb.field.D = b->x0.shape(1), pb.field.C = pb.C;
  bind_field(params, o, *b);
  if (readout) {
    b->P = param<T>(params, "P", {-1, pb.field.D}, "(outputs, dim)");
    b->c = param<T>(params, "c", {b->P.shape(0)}, "(outputs,)");
    pb.classes = b->P.shape(0), pb.P = b->P.data(), pb.c = b->c.data();
  }
  resode::require(std::isfinite(o.T) && o.T > 0, "T must be finite and > 0");
  pb.T_end = o.T;
  pb.interpolation = resode::parse_interpolation(o.interpolation);
  bind_method(o.method, o.rtol, o.atol, o.first_step, o.max_steps, *b);
  resode::require(o.substeps >= 1, "substeps must be >= 1");
  pb.substeps = o.substeps;
  bind_out_times(o.t, b->t, pb);
  return b;
}

template <class T>
Shape output_shape(const resode::DrivenProblem<T>& pb) {
  if (pb.out_count > 0) return {pb.out_count, pb.N, pb.field.D};
  return {pb.N, pb.field.D};
}

template <class T>
py::array solve(const py::dict& params, const py::array& x0, const py::object& U,
                const py::object& times, const DrivenOptions& o) {
  auto b = bind_driven<T>(params, x0, U, times, o, false);
  py::array_t<T> out(output_shape(b->pb));
  T* dst = out.mutable_data();
  py::gil_scoped_release release;  // the core touches only buffers held by b and out
  b->run();
  resode::driven_solve(b->pb, dst);
  return out;
}

template <class T>
py::array logits(const py::dict& params, const py::array& x0, const py::object& U,
                 const py::object& times, const DrivenOptions& o) {
  auto b = bind_driven<T>(params, x0, U, times, o, true);
  py::array_t<T> out({b->pb.N, b->pb.classes});
  T* dst = out.mutable_data();
  py::gil_scoped_release release;
  b->run();
  resode::driven_logits(b->pb, dst);
  return out;
}

// The field's gradients as views of `flat`, keyed as params.
template <class T>
py::dict gradient_dict(BoundDriven<T>& b, py::array_t<T>& flat) {
  py::dict grads;
  add_field_views(grads, b.names, b.shapes, flat);
  return grads;
}

template <class T>
py::tuple vjp(const py::dict& params, const py::array& x0, const py::object& U,
              const py::object& times, const py::object& cotangent, const DrivenOptions& o,
              bool adjoint) {
  auto b = bind_driven<T>(params, x0, U, times, o, false);
  auto& pb = b->pb;
  const Shape shape = output_shape(pb);
  const auto cot = typed<T>(cotangent, "cotangent", "x0");
  resode::require(shape_of(cot) == shape, [&] {
    return "cotangent must have the shape of driven_solve's output " + shape_string(shape) +
           ", got " + shape_string(shape_of(cot));
  });
  resode::require(resode::all_finite(cot.size(), cot.data()), "cotangent contains NaN or Inf");
  py::array_t<T> dfield(pb.field.size()), dx0({pb.N, pb.field.D}), dU({pb.N, pb.L, pb.C});
  {
    T *gf = dfield.mutable_data(), *gx = dx0.mutable_data(), *gU = dU.mutable_data();
    py::gil_scoped_release release;
    b->run();
    if (adjoint)
      resode::driven_adjoint_vjp(pb, cot.data(), gf, gx, gU);
    else
      resode::driven_vjp(pb, cot.data(), gf, gx, gU);
  }
  return py::make_tuple(gradient_dict(*b, dfield), dx0, dU);
}

template <class T>
py::tuple loss_and_grad(const py::dict& params, const py::array& x0, const py::object& U,
                        const py::array& y, const py::object& times, const DrivenOptions& o,
                        const std::string& loss, double weight_decay, bool adjoint,
                        bool return_dU) {
  auto b = bind_driven<T>(params, x0, U, times, o, true);
  auto& pb = b->pb;
  const index_t N = pb.N, O = pb.classes, D = pb.field.D;
  resode::require(std::isfinite(weight_decay) && weight_decay >= 0,
                  "weight_decay must be finite and >= 0");
  py::array_t<std::int64_t, py::array::c_style> labels;
  carray<T> values;
  const bool cross_entropy = loss == "cross_entropy";
  if (cross_entropy) {
    if (y.dtype().kind() != 'i' && y.dtype().kind() != 'u')
      throw py::type_error("y must hold integer class labels for loss 'cross_entropy', got "
                           "dtype " + std::string(py::str(y.dtype())));
    labels = py::array_t<std::int64_t, py::array::c_style | py::array::forcecast>::ensure(y);
    if (!labels) throw py::error_already_set();
    resode::require(labels.ndim() == 1 && labels.shape(0) == N, [&] {
      return "y must have shape (" + std::to_string(N) + ",), got " + shape_string(shape_of(y));
    });
    for (index_t i = 0; i < N; ++i)
      resode::require(labels.data()[i] >= 0 && labels.data()[i] < O, [&] {
        return "y must hold labels in [0, " + std::to_string(O) + "), got " +
               std::to_string(labels.data()[i]) + " at index " + std::to_string(i);
      });
  } else if (loss == "mse") {
    values = typed<T>(y, "y", "x0");
    resode::require(shape_of(values) == Shape{N, O}, [&] {
      return "y must have shape (" + std::to_string(N) + ", " + std::to_string(O) +
             ") for loss 'mse', got " + shape_string(shape_of(values));
    });
    resode::require(resode::all_finite(values.size(), values.data()), "y contains NaN or Inf");
  } else {
    throw std::invalid_argument("loss must be 'cross_entropy' or 'mse'; got '" + loss + "'");
  }
  py::array_t<T> dfield(pb.field.size()), dP({O, D}), dc(O), dx0({N, D});
  // without return_dU the reverse skips the observations' cotangent (training needs only the
  // parameters' gradient)
  py::array_t<T> dU(return_dU ? Shape{N, pb.L, pb.C} : Shape{0, pb.L, pb.C});
  double value;
  {
    const std::int64_t* lab = cross_entropy ? labels.data() : nullptr;
    const T* val = cross_entropy ? nullptr : values.data();
    T *gf = dfield.mutable_data(), *gP = dP.mutable_data(), *gc = dc.mutable_data();
    T* gx = dx0.mutable_data();
    T* gU = return_dU ? dU.mutable_data() : nullptr;
    py::gil_scoped_release release;
    b->run();
    value = adjoint ? resode::driven_adjoint_loss_and_grad(pb, lab, val, weight_decay, gf, gP, gc,
                                                           gx, gU)
                    : resode::driven_loss_and_grad(pb, lab, val, weight_decay, gf, gP, gc, gx, gU);
  }
  py::dict grads = gradient_dict(*b, dfield);
  grads["P"] = dP, grads["c"] = dc;
  return py::make_tuple(value, grads, dx0, return_dU ? py::object(dU) : py::object(py::none()));
}

template <class T>
py::tuple grids(const py::dict& params, const py::array& x0, const py::object& U,
                const py::object& times, const DrivenOptions& o) {
  auto b = bind_driven<T>(params, x0, U, times, o, false);
  {
    py::gil_scoped_release release;
    b->run();
  }
  return grids_and_counts(b->records);
}

bool x0_is_float64(const py::object& x0) {
  if (!py::isinstance<py::array>(x0))
    throw py::type_error("x0 must be a NumPy array of shape (N, D), got " +
                         std::string(py::str(py::type::of(x0).attr("__name__"))));
  return is_float64(x0.cast<py::array>(), "x0");
}

#define RESODE_DRIVEN_KWARGS                                                                 \
  py::kw_only(), py::arg("T"), py::arg("field"), py::arg("activation") = "tanh",             \
      py::arg("interpolation") = "cubic", py::arg("method") = "rk4", py::arg("substeps") = 1,   \
      py::arg("rtol") = 1e-7, py::arg("atol") = 1e-9, py::arg("first_step") = py::none(),      \
      py::arg("max_steps") = 100000

}  // namespace

#define RESODE_ADAPTIVE_PARAMS                                                         \
  double rtol, double atol, std::optional<double> first_step, index_t max_steps

void register_driven(py::module_& m) {
  m.def(
      "driven_solve",
      [](const py::dict& params, const py::object& x0, const py::object& U,
         const py::object& times, double T, std::string field, std::string activation,
         std::string interpolation, std::string method, index_t substeps,
         RESODE_ADAPTIVE_PARAMS, py::object t) {
        const DrivenOptions o{T,         field, activation, interpolation, method,
                              substeps,  t,     rtol,       atol,          first_step,
                              max_steps};
        const py::array x = x0.cast<py::array>();
        return x0_is_float64(x0) ? solve<double>(params, x, U, times, o)
                                 : solve<float>(params, x, U, times, o);
      },
      py::arg("params"), py::arg("x0"), py::arg("U"), py::arg("times"), RESODE_DRIVEN_KWARGS,
      py::arg("t") = py::none(),
      "The input-driven neural ODE's states x_i(T), shape (N, D); with t, (len(t), N, D). An "
      "adaptive method (dopri5, tsit5, bosh3) steps each sample with rtol/atol, landing on its "
      "knots and the piece boundaries.");
  m.def(
      "driven_vjp",
      [](const py::dict& params, const py::object& x0, const py::object& U,
         const py::object& times, const py::object& cotangent, double T, std::string field,
         std::string activation, std::string interpolation, std::string method,
         index_t substeps, RESODE_ADAPTIVE_PARAMS, py::object t, std::string gradient) {
        const DrivenOptions o{T,         field, activation, interpolation, method,
                              substeps,  t,     rtol,       atol,          first_step,
                              max_steps};
        const bool adjoint = is_adjoint(gradient);
        const py::array x = x0.cast<py::array>();
        return x0_is_float64(x0) ? vjp<double>(params, x, U, times, cotangent, o, adjoint)
                                 : vjp<float>(params, x, U, times, cotangent, o, adjoint);
      },
      py::arg("params"), py::arg("x0"), py::arg("U"), py::arg("times"), py::arg("cotangent"),
      RESODE_DRIVEN_KWARGS, py::arg("t") = py::none(), py::arg("gradient") = "discrete",
      "(grads keyed as the field's arrays, dx0, dU): the exact discrete VJP of driven_solve "
      "(through an adaptive method's accepted steps), or with gradient='adjoint' the "
      "continuous adjoint (backsolve over the same grid).");
  m.def(
      "driven_logits",
      [](const py::dict& params, const py::object& x0, const py::object& U,
         const py::object& times, double T, std::string field, std::string activation,
         std::string interpolation, std::string method, index_t substeps,
         RESODE_ADAPTIVE_PARAMS) {
        const DrivenOptions o{T,         field,      activation, interpolation, method,
                              substeps,  py::none(), rtol,       atol,          first_step,
                              max_steps};
        const py::array x = x0.cast<py::array>();
        return x0_is_float64(x0) ? logits<double>(params, x, U, times, o)
                                 : logits<float>(params, x, U, times, o);
      },
      py::arg("params"), py::arg("x0"), py::arg("U"), py::arg("times"), RESODE_DRIVEN_KWARGS,
      "Logits x_i(T) P^T + c, shape (N, outputs).");
  m.def(
      "driven_loss_and_grad",
      [](const py::dict& params, const py::object& x0, const py::object& U, const py::array& y,
         const py::object& times, double T, std::string field, std::string activation,
         std::string interpolation, std::string method, index_t substeps,
         RESODE_ADAPTIVE_PARAMS, std::string loss, double weight_decay, std::string gradient,
         bool return_dU) {
        const DrivenOptions o{T,         field,      activation, interpolation, method,
                              substeps,  py::none(), rtol,       atol,          first_step,
                              max_steps};
        const bool adjoint = is_adjoint(gradient);
        const py::array x = x0.cast<py::array>();
        return x0_is_float64(x0) ? loss_and_grad<double>(params, x, U, y, times, o, loss,
                                                         weight_decay, adjoint, return_dU)
                                 : loss_and_grad<float>(params, x, U, y, times, o, loss,
                                                        weight_decay, adjoint, return_dU);
      },
      py::arg("params"), py::arg("x0"), py::arg("U"), py::arg("y"), py::arg("times"),
      RESODE_DRIVEN_KWARGS, py::arg("loss") = "cross_entropy", py::arg("weight_decay") = 0.0,
      py::arg("gradient") = "discrete", py::arg("return_dU") = true,
      "(loss, grads keyed as params incl. P and c, dx0, dU): data loss of the logits plus "
      "weight_decay * |field|^2, and its exact discrete gradient (or gradient='adjoint'); "
      "without return_dU, dU is None and its computation is skipped.");
  m.def(
      "driven_grids",
      [](const py::dict& params, const py::object& x0, const py::object& U,
         const py::object& times, double T, std::string field, std::string activation,
         std::string interpolation, std::string method, index_t substeps,
         RESODE_ADAPTIVE_PARAMS, py::object t) {
        const DrivenOptions o{T,         field, activation, interpolation, method,
                              substeps,  t,     rtol,       atol,          first_step,
                              max_steps};
        require_adaptive_method(method);
        const py::array x = x0.cast<py::array>();
        return x0_is_float64(x0) ? grids<double>(params, x, U, times, o)
                                 : grids<float>(params, x, U, times, o);
      },
      py::arg("params"), py::arg("x0"), py::arg("U"), py::arg("times"), RESODE_DRIVEN_KWARGS,
      py::arg("t") = py::none(),
      "(grids, counts) of an adaptive method: each sample's accepted step times (float64) and "
      "counts (N, 3) int64: function evaluations, accepted and rejected steps.");
}
