// Bindings of the adaptive integrators and of dense output (resode/adaptive.hpp): one function
// per concept (solve, replay, vjp, loss_and_grad), each binding the problem, translating the
// options and the grids, and releasing the GIL around the core.
#include <cmath>
#include <cstdint>
#include <optional>

#include "problem_binding.hpp"
#include "sweep_instances.hpp"

namespace {

using namespace resode::bind;
using resode::index_t;

// The options of every adaptive binding.
struct AdaptiveArgs {
  std::string method;
  double T;
  index_t substeps;  // fixed-step methods (dense output) only
  double rtol, atol, first_step;
  index_t max_steps;
  std::string step_control;
};

resode::AdaptiveOptions adaptive_options(const AdaptiveArgs& a) {
  resode::require(std::isfinite(a.rtol) && a.rtol >= 0, "rtol must be finite and >= 0");
  resode::require(std::isfinite(a.atol) && a.atol >= 0, "atol must be finite and >= 0");
  resode::require(a.rtol > 0 || a.atol > 0, "rtol and atol must not both be 0");
  resode::require(std::isfinite(a.first_step) && a.first_step >= 0,
                  "first_step must be finite and > 0 (or None: Hairer's heuristic)");
  resode::require(a.max_steps >= 1, "max_steps must be >= 1");
  resode::AdaptiveOptions o;
  o.rtol = a.rtol, o.atol = a.atol, o.first_step = a.first_step, o.max_steps = a.max_steps;
  if (a.step_control == "sample")
    o.control = resode::StepControl::sample;
  else if (a.step_control == "batch")
    o.control = resode::StepControl::batch;
  else
    throw std::invalid_argument("step_control must be 'sample' or 'batch'; got '" +
                                a.step_control + "'");
  return o;
}

// The bound problem plus its adaptive description (times: sorted output times or empty).
template <class T>
struct AdaptiveBound {
  Bound<T> b;
  resode::AdaptiveProblem<T> ap;
  std::vector<double> times;
};

template <class T>
std::unique_ptr<AdaptiveBound<T>> bind_adaptive(const py::array& X,
                                                const std::vector<py::array>& theta,
                                                const std::string& field,
                                                const std::string& activation, index_t augment,
                                                const AdaptiveArgs& a,
                                                const std::optional<py::array>& times,
                                                const py::array* P, const py::array* c) {
  resode::require(std::isfinite(a.T) && a.T > 0, "T must be finite and > 0");
  const bool adaptive = resode::is_adaptive_method(a.method);
  // The fixed-step machinery of bind_problem checks the arrays; its dt is T / steps.
  const Config cfg{field, activation, adaptive ? std::string("euler") : a.method, a.T,
                   adaptive ? 1 : a.substeps, augment};
  auto out = std::make_unique<AdaptiveBound<T>>();
  out->b = bind_problem<T>(X, theta, cfg, P, c);
  auto& pb = out->b.pb;
  pb.dyn.dt = T(a.T / double(pb.dyn.steps()));
  out->ap.pb = &pb;
  out->ap.tab = resode::embedded_tableau(a.method);
  out->ap.T_end = a.T;
  out->ap.opt = adaptive_options(a);
  if (times) {
    auto t = py::array_t<double, py::array::c_style | py::array::forcecast>::ensure(*times);
    if (!t || t.ndim() != 1) throw std::invalid_argument("t must be a 1-d array of times");
    out->times.assign(t.data(), t.data() + t.shape(0));
    resode::require(!out->times.empty(), "t must hold at least one time");
    for (std::size_t i = 0; i < out->times.size(); ++i) {
      const double v = out->times[i];
      resode::require(std::isfinite(v) && v >= 0 && v <= a.T, [&] {
        return "t must hold times in [0, T] with T = " + std::to_string(a.T) + ", got " +
               std::to_string(v) + " at index " + std::to_string(i);
      });
      resode::require(i == 0 || v >= out->times[i - 1], "t must be sorted (non-decreasing)");
    }
    out->ap.times = out->times.data();
    out->ap.n_times = index_t(out->times.size());
  }
  return out;
}

py::dict stats_dict(const std::vector<resode::SampleRecord>& records) {
  const auto N = py::ssize_t(records.size());
  py::array_t<std::int64_t> nfev(N), accepted(N), rejected(N);
  py::list grids;
  for (py::ssize_t s = 0; s < N; ++s) {
    nfev.mutable_at(s) = records[s].nfev;
    accepted.mutable_at(s) = records[s].accepted;
    rejected.mutable_at(s) = records[s].rejected;
    grids.append(py::array_t<double>(py::ssize_t(records[s].grid.size()), records[s].grid.data()));
  }
  py::dict d;
  d["nfev"] = nfev, d["accepted"] = accepted, d["rejected"] = rejected, d["grid"] = grids;
  if (N > 0 && records[0].backward) {  // gradient='adjoint': the backward run's counts too
    py::array_t<std::int64_t> b_nfev(N), b_accepted(N), b_rejected(N);
    for (py::ssize_t s = 0; s < N; ++s) {
      b_nfev.mutable_at(s) = records[s].backward_nfev;
      b_accepted.mutable_at(s) = records[s].backward_accepted;
      b_rejected.mutable_at(s) = records[s].backward_rejected;
    }
    d["backward_nfev"] = b_nfev, d["backward_accepted"] = b_accepted;
    d["backward_rejected"] = b_rejected;
  }
  return d;
}

// Grids given back: a list of N arrays, or one array for every sample.
template <class T>
std::vector<std::vector<double>> checked_grids(const resode::AdaptiveProblem<T>& ap,
                                               const py::object& grids) {
  const index_t N = ap.pb->N;
  std::vector<std::vector<double>> out;
  auto one = [](const py::handle& g) {
    auto a = py::array_t<double, py::array::c_style | py::array::forcecast>::ensure(g);
    if (!a || a.ndim() != 1) throw std::invalid_argument("each grid must be a 1-d array of times");
    return std::vector<double>(a.data(), a.data() + a.shape(0));
  };
  if (py::isinstance<py::array>(grids)) {
    out.assign(std::size_t(N), one(grids));
  } else {
    const auto list = grids.cast<py::sequence>();
    resode::require(index_t(list.size()) == N, [&] {
      return "grid must be one array or a list of N = " + std::to_string(N) +
             " arrays, got a list of " + std::to_string(list.size());
    });
    for (const auto& g : list) out.push_back(one(g));
  }
  for (index_t s = 0; s < N; ++s) resode::check_grid(ap, out[std::size_t(s)], s);
  return out;
}

// The gradient options of a vjp or loss: "adjoint" needs an adaptive method and no replayed grid
// or checkpoints.
template <class T>
resode::GradientOptions checked_gradient(const std::string& gradient, index_t checkpoints,
                                         const py::object& grids,
                                         const resode::AdaptiveProblem<T>& ap) {
  auto opt = gradient_options(gradient, checkpoints);
  if (opt.gradient == resode::Gradient::adjoint) {
    resode::require(ap.tab.adaptive, "gradient='adjoint' of dense output needs an adaptive method");
    resode::require(grids.is_none() && checkpoints == 0,
                    "gradient='adjoint' takes no grid and no checkpoints (it stores no trajectory)");
  }
  return opt;
}

// The grids to replay: given, the fixed-step grid (empty) or those of an adaptive run now.
template <class T>
std::vector<std::vector<double>> replay_grids(const resode::AdaptiveProblem<T>& ap,
                                              const py::object& grids,
                                              std::vector<resode::SampleRecord>& records) {
  if (!grids.is_none()) return checked_grids(ap, grids);
  if (!ap.tab.adaptive) return {};
  resode::AdaptiveProblem<T> plain = ap;  // the run itself needs no dense output
  plain.n_times = 0;
  {
    py::gil_scoped_release release;
    resode::adaptive_solve(plain, static_cast<T*>(nullptr), static_cast<T*>(nullptr), records);
  }
  return resode::grids_of(records);
}

// (logits (N, classes), stats) of an adaptive run.
template <class T>
py::tuple logits(const py::array& X, const std::vector<py::array>& theta, const py::array& P,
                 const py::array& c, const std::string& field, const std::string& activation,
                 index_t augment, const AdaptiveArgs& a) {
  auto ab = bind_adaptive<T>(X, theta, field, activation, augment, a, std::nullopt, &P, &c);
  resode::require(ab->ap.tab.adaptive, "adaptive_logits takes an adaptive method");
  py::array_t<T> out({ab->b.pb.N, ab->b.pb.readout.classes});
  T* dst = out.mutable_data();
  std::vector<resode::SampleRecord> records;
  {
    py::gil_scoped_release release;
    resode::adaptive_solve(ab->ap, static_cast<T*>(nullptr), static_cast<T*>(nullptr), records,
                           dst);
  }
  return py::make_tuple(out, stats_dict(records));
}

template <class T>
py::tuple solve(const py::array& X, const std::vector<py::array>& theta, const std::string& field,
                const std::string& activation, index_t augment, const AdaptiveArgs& a,
                const std::optional<py::array>& times, const py::object& grids) {
  auto ab = bind_adaptive<T>(X, theta, field, activation, augment, a, times, nullptr, nullptr);
  const auto& pb = ab->b.pb;
  const index_t N = pb.N, D = pb.dyn.field.D, Q = ab->ap.n_times;
  if (Q) check_output_size(double(Q) * double(N) * double(D), sizeof(T), "the dense output");
  py::array_t<T> out = Q ? py::array_t<T>({Q, N, D}) : py::array_t<T>({N, D});
  T* dst = out.mutable_data();
  std::vector<resode::SampleRecord> records;
  if (ab->ap.tab.adaptive && grids.is_none()) {
    py::gil_scoped_release release;
    resode::adaptive_solve(ab->ap, Q ? static_cast<T*>(nullptr) : dst, Q ? dst : nullptr,
                           records);
  } else {
    const auto g = grids.is_none() ? std::vector<std::vector<double>>{}
                                   : checked_grids(ab->ap, grids);
    py::gil_scoped_release release;
    resode::replay_sweep(ab->ap, g, static_cast<const resode::Targets<T>*>(nullptr),
                         static_cast<const T*>(nullptr), 0, nullptr, nullptr, nullptr, nullptr,
                         Q ? static_cast<T*>(nullptr) : dst, Q ? dst : nullptr);
  }
  return py::make_tuple(out, records.empty() ? py::object(py::none()) : stats_dict(records));
}

template <class T>
py::tuple vjp(const py::array& X, const py::array& cotangent, const std::vector<py::array>& theta,
              const std::string& field, const std::string& activation, index_t augment,
              const AdaptiveArgs& a, const std::optional<py::array>& times,
              const py::object& grids, const std::string& gradient, index_t checkpoints) {
  auto ab = bind_adaptive<T>(X, theta, field, activation, augment, a, times, nullptr, nullptr);
  const auto& pb = ab->b.pb;
  const index_t N = pb.N, D = pb.dyn.field.D, Q = ab->ap.n_times;
  const auto cot = Q ? checked<T>(cotangent, "cotangent", {Q, N, D})
                     : checked<T>(cotangent, "cotangent", {N, D});
  const auto opt = checked_gradient(gradient, checkpoints, grids, ab->ap);
  resode::require(opt.gradient == resode::Gradient::discrete || Q == 0,
                  "gradient='adjoint' takes a cotangent on the final state only (no t)");
  std::vector<resode::SampleRecord> records;
  py::array_t<T> dfield(pb.dyn.field.size()), dX({N, pb.dim()});
  T *gf = dfield.mutable_data(), *gX = dX.mutable_data();
  if (opt.gradient == resode::Gradient::adjoint) {
    py::gil_scoped_release release;
    resode::adaptive_adjoint_sweep(ab->ap, static_cast<const resode::Targets<T>*>(nullptr),
                                   cot.data(), gf, nullptr, nullptr, gX, records);
  } else {
    const auto g = replay_grids(ab->ap, grids, records);
    py::gil_scoped_release release;
    resode::replay_sweep(ab->ap, g, static_cast<const resode::Targets<T>*>(nullptr), cot.data(),
                         checkpoints, gf, nullptr, nullptr, gX, nullptr, nullptr);
  }
  resode::detail::raise_if_gradient_non_finite(pb.dyn.field.size(), gf, "field parameters");
  resode::detail::raise_if_gradient_non_finite(N * pb.dim(), gX, "X");
  return py::make_tuple(split(dfield, ab->b), dX,
                        records.empty() ? py::object(py::none()) : stats_dict(records));
}

template <class T>
py::tuple loss_and_grad(const py::array& X, const py::array& y,
                        const std::vector<py::array>& theta, const py::array& P,
                        const py::array& c, const std::string& field,
                        const std::string& activation, index_t augment, const AdaptiveArgs& a,
                        const std::string& loss, double weight_decay, const py::object& grids,
                        const std::string& gradient, index_t checkpoints) {
  auto ab = bind_adaptive<T>(X, theta, field, activation, augment, a, std::nullopt, &P, &c);
  const auto& pb = ab->b.pb;
  const index_t N = pb.N, C = pb.readout.classes, D = pb.dyn.field.D;
  const auto bound_targets = checked_targets<T>(y, loss, N, C);
  const resode::Targets<T>& targets = bound_targets->targets;
  resode::require(std::isfinite(weight_decay) && weight_decay >= 0,
                  "weight_decay must be finite and >= 0");
  auto opt = checked_gradient(gradient, checkpoints, grids, ab->ap);
  opt.weight_decay = weight_decay;
  std::vector<resode::SampleRecord> records;
  const auto g = opt.gradient == resode::Gradient::adjoint
                     ? std::vector<std::vector<double>>{}
                     : replay_grids(ab->ap, grids, records);
  py::array_t<T> dfield(pb.dyn.field.size()), dP({C, D}), dc(C);
  T *gf = dfield.mutable_data(), *gP = dP.mutable_data(), *gc = dc.mutable_data();
  double value;
  {
    py::gil_scoped_release release;
    value = resode::adaptive_loss_and_grad(ab->ap, g, records, targets, opt, gf, gP, gc);
  }
  return py::make_tuple(value, split(dfield, ab->b), dP, dc,
                        records.empty() ? py::object(py::none()) : stats_dict(records));
}

}  // namespace

void register_adaptive(py::module_& m) {
  auto adaptive_args = [](std::string method, double T, index_t substeps, double rtol,
                          double atol, std::optional<double> first_step, index_t max_steps,
                          std::string step_control) {
    return AdaptiveArgs{std::move(method), T,          substeps, rtol, atol,
                        first_step.value_or(0.0), max_steps, std::move(step_control)};
  };
  m.def(
      "adaptive_solve",
      [adaptive_args](const py::array& X, const std::vector<py::array>& theta, std::string field,
                      std::string activation, std::string method, double T, index_t substeps,
                      index_t augment, double rtol, double atol, std::optional<double> first_step,
                      index_t max_steps, std::string step_control,
                      std::optional<py::array> t, py::object grid) {
        const auto a = adaptive_args(method, T, substeps, rtol, atol, first_step, max_steps,
                                     step_control);
        return is_float64(X, "X")
                   ? solve<double>(X, theta, field, activation, augment, a, t, grid)
                   : solve<float>(X, theta, field, activation, augment, a, t, grid);
      },
      py::arg("X"), py::arg("theta"), py::kw_only(), py::arg("field"), py::arg("activation"),
      py::arg("method"), py::arg("T"), py::arg("substeps") = 1, py::arg("augment") = 0,
      py::arg("rtol") = 1e-7, py::arg("atol") = 1e-9, py::arg("first_step") = py::none(),
      py::arg("max_steps") = 100000, py::arg("step_control") = "sample",
      py::arg("t") = py::none(), py::arg("grid") = py::none(),
      "(states, stats): the final states (N, D), or the dense output (len(t), N, D) at times t; "
      "stats (adaptive runs): nfev, accepted, rejected (N,) and each sample's accepted grid. "
      "With grid (or a fixed-step method): a replay on that grid, stats None.");
  m.def(
      "adaptive_logits",
      [adaptive_args](const py::array& X, const std::vector<py::array>& theta, const py::array& P,
                      const py::array& c, std::string field, std::string activation,
                      std::string method, double T, index_t augment, double rtol, double atol,
                      std::optional<double> first_step, index_t max_steps,
                      std::string step_control) {
        const auto a =
            adaptive_args(method, T, 1, rtol, atol, first_step, max_steps, step_control);
        return is_float64(X, "X")
                   ? logits<double>(X, theta, P, c, field, activation, augment, a)
                   : logits<float>(X, theta, P, c, field, activation, augment, a);
      },
      py::arg("X"), py::arg("theta"), py::arg("P"), py::arg("c"), py::kw_only(),
      py::arg("field"), py::arg("activation"), py::arg("method"), py::arg("T"),
      py::arg("augment") = 0, py::arg("rtol") = 1e-7, py::arg("atol") = 1e-9,
      py::arg("first_step") = py::none(), py::arg("max_steps") = 100000,
      py::arg("step_control") = "sample",
      "(logits, stats): the logits x(T) P^T + c (N, classes) of an adaptive run, and its stats.");
  m.def(
      "adaptive_vjp",
      [adaptive_args](const py::array& X, const py::array& cotangent,
                      const std::vector<py::array>& theta, std::string field,
                      std::string activation, std::string method, double T, index_t substeps,
                      index_t augment, double rtol, double atol, std::optional<double> first_step,
                      index_t max_steps, std::string step_control, std::optional<py::array> t,
                      py::object grid, std::string gradient, index_t checkpoints) {
        const auto a = adaptive_args(method, T, substeps, rtol, atol, first_step, max_steps,
                                     step_control);
        return is_float64(X, "X") ? vjp<double>(X, cotangent, theta, field, activation, augment,
                                                a, t, grid, gradient, checkpoints)
                                  : vjp<float>(X, cotangent, theta, field, activation, augment,
                                               a, t, grid, gradient, checkpoints);
      },
      py::arg("X"), py::arg("cotangent"), py::arg("theta"), py::kw_only(), py::arg("field"),
      py::arg("activation"), py::arg("method"), py::arg("T"), py::arg("substeps") = 1,
      py::arg("augment") = 0, py::arg("rtol") = 1e-7, py::arg("atol") = 1e-9,
      py::arg("first_step") = py::none(), py::arg("max_steps") = 100000,
      py::arg("step_control") = "sample", py::arg("t") = py::none(),
      py::arg("grid") = py::none(), py::arg("gradient") = "discrete", py::arg("checkpoints") = 0,
      "([field grads], dX, stats): the discrete vjp of the final state (cotangent (N, D)) or of "
      "the dense output at t (cotangent (len(t), N, D)) with the accepted grid held constant; "
      "or the backsolve adjoint of the final state (gradient='adjoint'; its stats add "
      "backward_nfev, backward_accepted, backward_rejected (N,)).");
  m.def(
      "adaptive_loss_and_grad",
      [adaptive_args](const py::array& X, const py::array& y, const std::vector<py::array>& theta,
                      const py::array& P, const py::array& c, std::string field,
                      std::string activation, std::string method, double T, index_t augment,
                      double rtol, double atol, std::optional<double> first_step,
                      index_t max_steps, std::string step_control, std::string loss,
                      double weight_decay, py::object grid, std::string gradient,
                      index_t checkpoints) {
        const auto a =
            adaptive_args(method, T, 1, rtol, atol, first_step, max_steps, step_control);
        return is_float64(X, "X")
                   ? loss_and_grad<double>(X, y, theta, P, c, field, activation, augment, a, loss,
                                           weight_decay, grid, gradient, checkpoints)
                   : loss_and_grad<float>(X, y, theta, P, c, field, activation, augment, a, loss,
                                          weight_decay, grid, gradient, checkpoints);
      },
      py::arg("X"), py::arg("y"), py::arg("theta"), py::arg("P"), py::arg("c"), py::kw_only(),
      py::arg("field"), py::arg("activation"), py::arg("method"), py::arg("T"),
      py::arg("augment") = 0, py::arg("rtol") = 1e-7, py::arg("atol") = 1e-9,
      py::arg("first_step") = py::none(), py::arg("max_steps") = 100000,
      py::arg("step_control") = "sample", py::arg("loss") = "cross_entropy",
      py::arg("weight_decay") = 0.0, py::arg("grid") = py::none(),
      py::arg("gradient") = "discrete", py::arg("checkpoints") = 0,
      "(loss, [field grads], dP, dc, stats): terminal loss and its discrete gradient on the "
      "accepted grid of an adaptive run (or on a given grid), or its backsolve adjoint (whose "
      "stats add backward_nfev, backward_accepted, backward_rejected (N,)).");
}
