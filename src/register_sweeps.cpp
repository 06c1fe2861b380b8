// Bindings of the sweeps (trajectory, logits, loss_and_grad, vjp): bind the problem
// (problem_binding.hpp), release the GIL and run the core.
#include <cmath>
#include <cstdint>

#include "problem_binding.hpp"
#include "sweep_instances.hpp"

namespace {

using namespace resode::bind;
using resode::index_t;

template <class T>
py::array trajectory(const py::array& X, const std::vector<py::array>& theta, const Config& cfg,
                     bool final_only) {
  auto b = bind_problem<T>(X, theta, cfg, nullptr, nullptr);
  if (final_only) {
    py::array_t<T> out({b.pb.N, b.pb.dyn.field.D});
    T* dst = out.mutable_data();
    py::gil_scoped_release release;  // the core touches only the buffers held by b and out
    resode::final_state(b.pb, dst);
    return out;
  }
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
                 const py::array& c, const Config& cfg, const std::string& readout) {
  auto b = bind_problem<T>(X, theta, cfg, &P, &c);
  b.pb.readout.kind = resode::parse_readout(readout);
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
                        const LossTerms& terms, const std::string& gradient,
                        index_t checkpoints) {
  auto b = bind_problem<T>(X, theta, cfg, &P, &c);
  const index_t N = b.pb.N, C = b.pb.readout.classes, D = b.pb.dyn.field.D;
  const auto bound_targets = checked_targets<T>(y, loss, N, C);
  const resode::Targets<T>& targets = bound_targets->targets;
  auto opt = gradient_options(gradient, checkpoints);
  apply_loss_terms(terms, b, opt);

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
  const index_t N = b.pb.N, D = b.pb.dyn.field.D, states = b.pb.dyn.steps() + 1;
  // (N, D) on the final state, or (steps + 1, N, D) on every state of the step grid
  const bool every_state = cotangent.ndim() == 3;
  const auto cot = every_state ? checked<T>(cotangent, "cotangent", {states, N, D})
                               : checked<T>(cotangent, "cotangent", {N, D});
  auto opt = gradient_options(gradient, checkpoints);
  opt.cotangent_every_state = every_state;
  py::array_t<T> dfield(b.pb.dyn.field.size()), dX({b.pb.N, b.pb.dim()});
  T *gf = dfield.mutable_data(), *gX = dX.mutable_data();
  {
    py::gil_scoped_release release;  // the core touches only buffers held by b, cot and outputs
    resode::vjp(b.pb, cot.data(), opt, gf, gX);
  }
  return py::make_tuple(split(dfield, b), dX);
}

// Rows of the states forward_states keeps: ceil(steps / stride).
index_t kept_rows(index_t steps, index_t stride) { return (steps + stride - 1) / stride; }

// The shape of what forward_states keeps: the stage tape (steps, width, N), or the states.
template <class T>
Shape kept_shape(const resode::Problem<T>& pb, index_t stride, bool stages) {
  const index_t steps = pb.dyn.steps();
  if (stages) return {steps, resode::stage_tape_width(pb.dyn), pb.N};
  return {kept_rows(steps, stride), pb.N, pb.dyn.field.D};
}

template <class T>
py::tuple forward_stage_tape(Bound<T>& b, bool trajectory) {
  const index_t N = b.pb.N, D = b.pb.dyn.field.D, steps = b.pb.dyn.steps();
  const Shape shape = kept_shape(b.pb, 1, true);
  resode::bind::check_output_size(
      double(shape[0]) * double(shape[1]) * double(N) + double(trajectory ? steps + 1 : 1) *
      double(N) * double(D), sizeof(T), "the stage tape kept for the backward and the output");
  py::array_t<T> out = trajectory ? py::array_t<T>({steps + 1, N, D}) : py::array_t<T>({N, D});
  py::array_t<T> tape(shape);
  T *dst = out.mutable_data(), *kept = tape.mutable_data();
  {
    py::gil_scoped_release release;  // the core touches only the buffers held by b and outputs
    resode::forward_stage_tape(b.pb, trajectory, kept, dst);
  }
  return py::make_tuple(out, tape);
}

template <class T>
py::tuple forward_states(const py::array& X, const std::vector<py::array>& theta,
                         const Config& cfg, index_t stride, bool trajectory, bool stages) {
  auto b = bind_problem<T>(X, theta, cfg, nullptr, nullptr);
  if (stages) return forward_stage_tape(b, trajectory);
  resode::require(stride >= 1, "stride must be >= 1");
  const index_t N = b.pb.N, D = b.pb.dyn.field.D, steps = b.pb.dyn.steps();
  const index_t rows = kept_rows(steps, stride);
  // With every state kept and returned, the trajectory is the states too (no second copy).
  const bool shared = trajectory && stride == 1;
  resode::bind::check_output_size(
      double(rows + (trajectory ? steps + 1 : 1)) * double(N) * double(D), sizeof(T),
      "the states kept for the backward (" + std::to_string(rows) + " of N = " +
          std::to_string(N) + ", D = " + std::to_string(D) + ") and the output");
  py::array_t<T> out = trajectory ? py::array_t<T>({steps + 1, N, D}) : py::array_t<T>({N, D});
  py::array_t<T> states = shared ? out : py::array_t<T>({rows, N, D});
  T *dst = out.mutable_data(), *kept = states.mutable_data();
  {
    py::gil_scoped_release release;  // the core touches only the buffers held by b and outputs
    if (shared)
      resode::trajectory(b.pb, dst);
    else
      resode::forward_states(b.pb, stride, trajectory, kept, dst);
  }
  return py::make_tuple(out, states);
}

template <class T>
py::tuple vjp_from_states(const py::array& X, const py::array& states, const py::array& cotangent,
                          const std::vector<py::array>& theta, const Config& cfg,
                          index_t stride, bool stages) {
  auto b = bind_problem<T>(X, theta, cfg, nullptr, nullptr);
  resode::require(stride >= 1, "stride must be >= 1");
  const index_t N = b.pb.N, D = b.pb.dyn.field.D, steps = b.pb.dyn.steps();
  // the stage tape, kept_rows(steps, stride) states, or a whole trajectory (stride 1)
  Shape shape = kept_shape(b.pb, stride, stages);
  if (!stages && stride == 1 && states.ndim() == 3 && states.shape(0) == steps + 1)
    shape[0] = steps + 1;
  const auto kept = checked<T>(states, "states", shape);
  const bool every_state = cotangent.ndim() == 3;
  const auto cot = every_state ? checked<T>(cotangent, "cotangent", {steps + 1, N, D})
                               : checked<T>(cotangent, "cotangent", {N, D});
  py::array_t<T> dfield(b.pb.dyn.field.size()), dX({N, b.pb.dim()});
  T *gf = dfield.mutable_data(), *gX = dX.mutable_data();
  {
    py::gil_scoped_release release;  // the core touches only buffers held here and outputs
    resode::vjp_from_states(b.pb, kept.data(), stride, stages, cot.data(), every_state, gf,
                            gX);
  }
  return py::make_tuple(split(dfield, b), dX);
}

}  // namespace

void register_sweeps(py::module_& m) {
  using resode::bind::is_float64;
  m.def(
      "trajectory",
      [](const py::array& X, const std::vector<py::array>& theta, std::string field,
         std::string activation, std::string method, double dt, index_t substeps,
         index_t augment, bool final_only) {
        const Config cfg = config(field, activation, method, dt, substeps, augment);
        return is_float64(X, "X") ? trajectory<double>(X, theta, cfg, final_only)
                                  : trajectory<float>(X, theta, cfg, final_only);
      },
      py::arg("X"), py::arg("theta"), py::kw_only(), py::arg("field"), py::arg("activation"),
      py::arg("method"), py::arg("dt"), py::arg("substeps") = 1, py::arg("augment") = 0,
      py::arg("final_only") = false,
      "All states on the step grid, shape (steps + 1, N, D); with final_only the last, (N, D).");
  m.def(
      "logits",
      [](const py::array& X, const std::vector<py::array>& theta, const py::array& P,
         const py::array& c, std::string field, std::string activation, std::string method,
         double dt, index_t substeps, index_t augment, std::string readout) {
        const Config cfg = config(field, activation, method, dt, substeps, augment);
        return is_float64(X, "X") ? logits<double>(X, theta, P, c, cfg, readout)
                                  : logits<float>(X, theta, P, c, cfg, readout);
      },
      py::arg("X"), py::arg("theta"), py::arg("P"), py::arg("c"), py::kw_only(),
      py::arg("field"), py::arg("activation"), py::arg("method"), py::arg("dt"),
      py::arg("substeps") = 1, py::arg("augment") = 0, py::arg("readout") = "linear",
      "Logits x_S P^T + c of the final states (clamped to [-1, 1] for readout 'hardtanh'), "
      "shape (N, classes).");
  m.def(
      "loss_and_grad",
      [](const py::array& X, const py::array& y, const std::vector<py::array>& theta,
         const py::array& P, const py::array& c, std::string field, std::string activation,
         std::string method, double dt, index_t substeps, index_t augment, std::string loss,
         double weight_decay, bool turnpike, std::string gradient, index_t checkpoints,
         std::string readout, double l1, bool decay_readout, double turnpike_weight) {
        const Config cfg = config(field, activation, method, dt, substeps, augment);
        const LossTerms terms{readout, weight_decay, l1, turnpike_weight, turnpike, decay_readout};
        return is_float64(X, "X")
                   ? loss_and_grad<double>(X, y, theta, P, c, cfg, loss, terms, gradient,
                                           checkpoints)
                   : loss_and_grad<float>(X, y, theta, P, c, cfg, loss, terms, gradient,
                                          checkpoints);
      },
      py::arg("X"), py::arg("y"), py::arg("theta"), py::arg("P"), py::arg("c"), py::kw_only(),
      py::arg("field"), py::arg("activation"), py::arg("method"), py::arg("dt"),
      py::arg("substeps") = 1, py::arg("augment") = 0, py::arg("loss") = "cross_entropy",
      py::arg("weight_decay") = 0.0, py::arg("turnpike") = false,
      py::arg("gradient") = "discrete", py::arg("checkpoints") = 0, py::arg("readout") = "linear",
      py::arg("l1") = 0.0, py::arg("decay_readout") = false, py::arg("turnpike_weight") = 1.0,
      "(loss, [field grads], dP, dc): forward sweep, loss and backward sweep in one call.");
  m.def(
      "forward_states",
      [](const py::array& X, const std::vector<py::array>& theta, std::string field,
         std::string activation, std::string method, double dt, index_t substeps,
         index_t augment, index_t stride, bool trajectory, bool stages) {
        const Config cfg = config(field, activation, method, dt, substeps, augment);
        return is_float64(X, "X")
                   ? forward_states<double>(X, theta, cfg, stride, trajectory, stages)
                   : forward_states<float>(X, theta, cfg, stride, trajectory, stages);
      },
      py::arg("X"), py::arg("theta"), py::kw_only(), py::arg("field"), py::arg("activation"),
      py::arg("method"), py::arg("dt"), py::arg("substeps") = 1, py::arg("augment") = 0,
      py::arg("stride") = 1, py::arg("trajectory") = false, py::arg("stages") = false,
      "(out, states): the final states (N, D), or every state (steps + 1, N, D) with "
      "trajectory, and the states the backward needs, x_0, x_stride, ...: ceil(steps / stride) "
      "rows of (N, D) (with trajectory and stride 1, out itself); with stages, the stage tape "
      "(steps, width, N): every step's state and stages. Bitwise trajectory's states.");
  m.def(
      "vjp_from_states",
      [](const py::array& X, const py::array& states, const py::array& cotangent,
         const std::vector<py::array>& theta, std::string field, std::string activation,
         std::string method, double dt, index_t substeps, index_t augment, index_t stride,
         bool stages) {
        const Config cfg = config(field, activation, method, dt, substeps, augment);
        return is_float64(X, "X")
                   ? vjp_from_states<double>(X, states, cotangent, theta, cfg, stride, stages)
                   : vjp_from_states<float>(X, states, cotangent, theta, cfg, stride, stages);
      },
      py::arg("X"), py::arg("states"), py::arg("cotangent"), py::arg("theta"), py::kw_only(),
      py::arg("field"), py::arg("activation"), py::arg("method"), py::arg("dt"),
      py::arg("substeps") = 1, py::arg("augment") = 0, py::arg("stride") = 1,
      py::arg("stages") = false,
      "([field grads], dX): vjp's discrete product (bitwise) from the states forward_states "
      "kept with the same stride, without sweeping forward from X again.");
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
      "([field grads], dX): vector-Jacobian product of X -> x_S for a cotangent (N, D) on x_S, "
      "or of X -> (x_0, ..., x_S) for a cotangent (steps + 1, N, D) on every state.");
}
