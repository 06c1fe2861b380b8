// Bindings of training: the optimisers' update (one array), the L1 bound, the gradient norm,
// and a whole epoch (resode/epoch.hpp). Parameters and optimiser state are updated in place,
// so they must be writable C-contiguous arrays of the model's dtype: never a silent copy.
#include <cmath>
#include <cstdint>

#include "problem_binding.hpp"
#include "sweep_instances.hpp"

namespace {

using namespace resode::bind;
using resode::index_t;

// `a` itself as a T array that the core may write (ValueError/TypeError naming `name`
// otherwise); the result shares a's memory.
template <class T>
carray<T> in_place(const py::array& a, const std::string& name) {
  if (a.dtype().kind() != 'f' || a.itemsize() != sizeof(T))
    throw py::type_error(name + " must have dtype " + (sizeof(T) == 8 ? "float64" : "float32") +
                         ", got " + std::string(py::str(a.dtype())));
  resode::require(a.writeable(), [&] { return name + " is read-only; it is updated in place"; });
  resode::require(py::detail::check_flags(a.ptr(), py::array::c_style), [&] {
    return name + " must be C-contiguous; it is updated in place";
  });
  return py::reinterpret_borrow<carray<T>>(a);
}

struct OptimizerArgs {
  resode::OptimizerConfig config;
  double lr;
  std::int64_t step;  // steps taken before (the next update is step + 1)
  bool first;
};

OptimizerArgs optimizer_args(const std::string& name, double lr, std::int64_t step,
                             double momentum, bool nesterov, double beta1, double beta2,
                             double eps, bool first) {
  OptimizerArgs o{{}, lr, step, first};
  o.config.kind = resode::parse_optimizer(name);
  o.config.momentum = momentum, o.config.nesterov = nesterov;
  o.config.beta1 = beta1, o.config.beta2 = beta2, o.config.eps = eps;
  resode::require(std::isfinite(lr) && lr >= 0, "lr must be finite and >= 0");
  resode::require(step >= 0, "step must be >= 0");
  return o;
}

// The state slots of one array: o.slots() arrays shaped like the parameter.
template <class T>
std::vector<carray<T>> state_arrays(const std::vector<py::array>& state, const carray<T>& p,
                                    const resode::OptimizerConfig& o, const std::string& name) {
  resode::require(index_t(state.size()) == o.slots(), [&] {
    return name + ": the optimiser needs " + std::to_string(o.slots()) + " state arrays, got " +
           std::to_string(state.size());
  });
  std::vector<carray<T>> out;
  for (std::size_t i = 0; i < state.size(); ++i) {
    out.push_back(in_place<T>(state[i], name + " state " + std::to_string(i)));
    resode::require(out.back().size() == p.size(), [&] {
      return name + " state " + std::to_string(i) + " must have the parameter's size " +
             std::to_string(p.size());
    });
  }
  return out;
}

template <class T>
void optimizer_step(const py::array& param, const py::array& grad,
                    const std::vector<py::array>& state, const OptimizerArgs& o,
                    const std::string& name) {
  auto p = in_place<T>(param, name);
  const auto g = checked<T>(grad, ("grads" + name.substr(6)).c_str(), shape_of(param), false);
  auto s = state_arrays<T>(state, p, o.config, name);
  T* slots[2] = {nullptr, nullptr};
  for (std::size_t i = 0; i < s.size(); ++i) slots[i] = s[i].mutable_data();
  resode::optimizer_update(o.config, o.lr, o.step + 1, o.first, p.size(), p.mutable_data(),
                           g.data(), slots);
}

template <class T>
void bound_l1(const std::vector<py::array>& arrays, double bound) {
  resode::require(std::isfinite(bound) && bound > 0, "bound must be finite and > 0");
  std::vector<carray<T>> keep;
  std::vector<std::pair<T*, index_t>> tensors;
  for (std::size_t i = 0; i < arrays.size(); ++i) {
    keep.push_back(in_place<T>(arrays[i], "arrays[" + std::to_string(i) + "]"));
    resode::require(keep.back().ndim() >= 1 && keep.back().shape(0) == keep[0].shape(0),
                    "every array must have the same leading extent (the pieces)");
    tensors.emplace_back(keep.back().mutable_data(), keep.back().size());
  }
  if (!keep.empty()) resode::bound_l1_per_piece(tensors, index_t(keep[0].shape(0)), bound);
}

template <class T>
double grad_norm(const std::vector<py::array>& arrays) {
  std::vector<carray<T>> keep;
  std::vector<std::pair<const T*, index_t>> views;
  for (std::size_t i = 0; i < arrays.size(); ++i) {
    keep.push_back(checked<T>(arrays[i], ("arrays[" + std::to_string(i) + "]").c_str(),
                              shape_of(arrays[i]), false));
    views.emplace_back(keep.back().data(), keep.back().size());
  }
  return resode::scaled_norm(views);
}

template <class T>
py::dict train_epoch(const py::array& X, const py::array& y, const std::vector<py::array>& theta,
                     const py::array& P, const py::array& c, const py::array& order, index_t batch,
                     const Config& cfg, const std::string& loss, const LossTerms& terms,
                     const std::string& gradient, index_t checkpoints,
                     const OptimizerArgs& o, const std::vector<std::vector<py::array>>& state,
                     double bound, bool fixed_projection) {
  // Parameters are updated in place: check that before bind_problem could copy them.
  std::vector<carray<T>> params;
  for (std::size_t i = 0; i < theta.size(); ++i)
    params.push_back(in_place<T>(theta[i], "theta[" + std::to_string(i) + "]"));
  params.push_back(in_place<T>(P, "P"));
  params.push_back(in_place<T>(c, "c"));
  auto b = bind_problem<T>(X, theta, cfg, &P, &c);
  const index_t N = b.pb.N, C = b.pb.readout.classes;

  resode::EpochPlan<T> plan;
  plan.X = b.X.data(), plan.N = N;
  plan.loss = resode::parse_loss(loss);
  carray<std::int64_t> labels;
  carray<T> values;
  if (plan.loss == resode::LossKind::cross_entropy)
    labels = checked_labels(y, N, C), plan.labels = labels.data();
  else
    values = checked<T>(y, "y", {N, C}), plan.values = values.data();
  auto visit = py::array_t<std::int64_t, py::array::c_style>::ensure(order);
  resode::require(visit && visit.ndim() == 1 && visit.shape(0) == N, [&] {
    return "order must be an integer array of shape (" + std::to_string(N) + ",)";
  });
  for (index_t i = 0; i < N; ++i)
    resode::require(visit.data()[i] >= 0 && visit.data()[i] < N, "order must index X's rows");
  plan.order = visit.data();
  resode::require(batch >= 1, "batch must be >= 1");
  plan.batch = std::min(batch, N);
  plan.optimizer = o.config, plan.lr = o.lr, plan.steps_before = o.step, plan.first = o.first;
  resode::require(bound == 0 || (std::isfinite(bound) && bound > 0),
                  "bound must be finite and > 0 (0: none)");
  plan.bound = bound;

  auto opt = gradient_options(gradient, checkpoints);
  apply_loss_terms(terms, b, opt);

  // The trained arrays: the field tensors (flat gradient order), then P and c unless fixed.
  using Grad = typename resode::TrainedArray<T>::Grad;
  const index_t trained_count = index_t(theta.size()) + (fixed_projection ? 0 : 2);
  resode::require(index_t(state.size()) == trained_count, [&] {
    return "state must hold one list per trained array (" + std::to_string(trained_count) +
           "), got " + std::to_string(state.size());
  });
  std::vector<resode::TrainedArray<T>> trained(trained_count);
  std::vector<std::vector<carray<T>>> slots;
  index_t offset = 0;
  for (index_t i = 0; i < trained_count; ++i) {
    auto& a = trained[i];
    a.param = params[i].mutable_data(), a.size = params[i].size();
    const bool is_field = i < index_t(theta.size());
    a.grad = is_field ? Grad::field : i == index_t(theta.size()) ? Grad::P : Grad::c;
    a.grad_offset = is_field ? offset : 0;
    if (is_field) offset += a.size;
    slots.push_back(state_arrays<T>(state[i], params[i], o.config,
                                    "state[" + std::to_string(i) + "]"));
    for (std::size_t s = 0; s < slots.back().size(); ++s) a.state[s] = slots.back()[s].mutable_data();
  }

  resode::EpochResult r;
  {
    py::gil_scoped_release release;  // the core touches only the buffers held above
    r = resode::train_epoch(b.pb, opt, plan, trained);
  }
  py::dict out;
  out["batches"] = r.batches;
  out["steps"] = r.steps;
  out["loss_sum"] = r.loss_sum;
  out["norm_sum"] = r.norm_sum;
  out["correct"] = r.predictions.correct;
  out["sse"] = py::array_t<double>(py::ssize_t(r.predictions.sse.size()),
                                   r.predictions.sse.data());
  using Failure = resode::EpochResult::Failure;
  out["failure"] = r.failure == Failure::none    ? py::object(py::none())
                   : r.failure == Failure::sweep ? py::object(py::str("sweep"))
                                                 : py::object(py::str("update"));
  out["message"] = r.message;
  out["step"] = r.step;
  out["time"] = r.time;
  return out;
}

}  // namespace

void register_training(py::module_& m) {
  using resode::bind::is_float64;
  m.def(
      "optimizer_step",
      [](const std::vector<py::array>& params, const std::vector<py::array>& grads,
         const std::vector<std::vector<py::array>>& states, const std::string& optimizer,
         double lr, std::int64_t step, double momentum, bool nesterov, double beta1,
         double beta2, double eps, bool first) {
        resode::require(grads.size() == params.size() && states.size() == params.size(),
                        "params, grads and states must have the same length");
        const auto o =
            optimizer_args(optimizer, lr, step, momentum, nesterov, beta1, beta2, eps, first);
        for (std::size_t i = 0; i < params.size(); ++i) {
          const std::string name = "params[" + std::to_string(i) + "]";
          is_float64(params[i], name.c_str())
              ? optimizer_step<double>(params[i], grads[i], states[i], o, name)
              : optimizer_step<float>(params[i], grads[i], states[i], o, name);
        }
      },
      py::arg("params"), py::arg("grads"), py::arg("states"), py::kw_only(),
      py::arg("optimizer"), py::arg("lr"), py::arg("step"), py::arg("momentum") = 0.0,
      py::arg("nesterov") = false, py::arg("beta1") = 0.9, py::arg("beta2") = 0.999,
      py::arg("eps") = 1e-8, py::arg("first") = false,
      "One SGD/Adam update of every array of params in place (step: updates taken before this "
      "one), one call per step.");
  m.def(
      "bound_l1",
      [](const std::vector<py::array>& arrays, double bound) {
        if (arrays.empty()) return;
        is_float64(arrays[0], "arrays[0]") ? bound_l1<double>(arrays, bound)
                                           : bound_l1<float>(arrays, bound);
      },
      py::arg("arrays"), py::arg("bound"),
      "Scale each piece (leading index) of the arrays together to an L1 norm <= bound.");
  m.def(
      "grad_norm",
      [](const std::vector<py::array>& arrays) {
        if (arrays.empty()) return 0.0;
        return is_float64(arrays[0], "arrays[0]") ? grad_norm<double>(arrays)
                                                  : grad_norm<float>(arrays);
      },
      py::arg("arrays"), "Euclidean norm of all arrays together (overflow-safe).");
  m.def(
      "train_epoch",
      [](const py::array& X, const py::array& y, const std::vector<py::array>& theta,
         const py::array& P, const py::array& c, const py::array& order, index_t batch,
         std::string field, std::string activation, std::string method, double dt,
         index_t substeps, index_t augment, std::string loss, double weight_decay, bool turnpike,
         std::string gradient, index_t checkpoints, const std::string& optimizer, double lr,
         std::int64_t step, double momentum, bool nesterov, double beta1, double beta2,
         double eps, bool first, const std::vector<std::vector<py::array>>& state, double bound,
         bool fixed_projection, std::string readout, double l1, bool decay_readout,
         double turnpike_weight) {
        const Config cfg = config(field, activation, method, dt, substeps, augment);
        const auto o =
            optimizer_args(optimizer, lr, step, momentum, nesterov, beta1, beta2, eps, first);
        const LossTerms terms{readout, weight_decay, l1, turnpike_weight, turnpike, decay_readout};
        return is_float64(X, "X")
                   ? train_epoch<double>(X, y, theta, P, c, order, batch, cfg, loss, terms,
                                         gradient, checkpoints, o, state, bound, fixed_projection)
                   : train_epoch<float>(X, y, theta, P, c, order, batch, cfg, loss, terms,
                                        gradient, checkpoints, o, state, bound, fixed_projection);
      },
      py::arg("X"), py::arg("y"), py::arg("theta"), py::arg("P"), py::arg("c"), py::arg("order"),
      py::kw_only(), py::arg("batch"), py::arg("field"), py::arg("activation"), py::arg("method"),
      py::arg("dt"), py::arg("substeps") = 1, py::arg("augment") = 0,
      py::arg("loss") = "cross_entropy", py::arg("weight_decay") = 0.0,
      py::arg("turnpike") = false, py::arg("gradient") = "discrete", py::arg("checkpoints") = 0,
      py::arg("optimizer"), py::arg("lr"), py::arg("step"), py::arg("momentum") = 0.0,
      py::arg("nesterov") = false, py::arg("beta1") = 0.9, py::arg("beta2") = 0.999,
      py::arg("eps") = 1e-8, py::arg("first") = false, py::arg("state"), py::arg("bound") = 0.0,
      py::arg("fixed_projection") = false, py::arg("readout") = "linear", py::arg("l1") = 0.0,
      py::arg("decay_readout") = false, py::arg("turnpike_weight") = 1.0,
      "One epoch of mini-batch training in place: a dict with batches, steps, loss_sum, "
      "norm_sum, correct, sse (the kept batches' predictions, see resode/epoch.hpp) and failure (None, 'sweep' or 'update') with message, step and time.");
}
