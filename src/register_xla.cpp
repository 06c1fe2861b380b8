// The XLA FFI handlers of resode.jax (jax.ffi.ffi_call): the flow (final states or every state)
// and its vector-Jacobian product, called by XLA on raw buffers inside a jitted computation,
// with no Python in between. Exposed to Python as PyCapsules (_core.xla_handlers()), which
// resode.jax registers with jax.ffi.register_ffi_target.
//
// Batching (xla_common.hpp): X batched and the parameters not, the samples of all batch
// elements go through one core call. Otherwise one core call per batch element.
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "bindings.hpp"
#include "sweep_instances.hpp"
#include "xla_common.hpp"

namespace ffi = xla::ffi;

namespace {

using resode::index_t;
using namespace resode::xla;  // Batch, batch_of, batch_count, element, guarded, buffers

struct FlowAttrs {
  std::string_view field, activation, method;
  double dt;
  std::int64_t substeps, augment;
};

// The problem of one batch element: X (N, dim) and the field parameters in core order.
template <class T>
resode::Problem<T> problem(const FlowAttrs& a, const T* X, index_t N,
                           const std::vector<const T*>& theta, const ffi::AnyBuffer& W1) {
  resode::Problem<T> pb;
  auto& f = pb.dyn.field;
  f.kind = resode::parse_field(std::string(a.field));
  const auto dims = W1.dimensions();
  const std::size_t r = dims.size();
  f.pieces = dims[r - 3], f.H = dims[r - 2], f.D = dims[r - 1];
  f.W1 = theta[0], f.b1 = theta[1];
  if (f.bottleneck()) f.W2 = theta[2], f.b2 = theta[3];
  pb.dyn.activation = resode::parse_activation(std::string(a.activation));
  pb.dyn.tab = resode::tableau(resode::parse_method(std::string(a.method)));
  pb.dyn.substeps = index_t(a.substeps);
  pb.dyn.dt = T(a.dt);
  pb.augment = index_t(a.augment);
  pb.N = N;
  pb.X = X;
  return pb;
}

template <class T>
ffi::Error forward(const FlowAttrs& a, bool trajectory, ffi::AnyBuffer X,
                   const ffi::RemainingArgs& rest, ffi::AnyBuffer out) {
  std::vector<ffi::AnyBuffer> theta;
  for (std::size_t i = 0; i < rest.size(); ++i) {
    auto t = rest.get<ffi::AnyBuffer>(i);
    if (t.has_error()) return t.error();
    theta.push_back(*t);
  }
  const Batch xb = batch_of(X, 2);
  bool shared = true;  // the parameters carry no batch
  std::vector<Batch> tb;
  for (std::size_t i = 0; i < theta.size(); ++i) {
    tb.push_back(batch_of(theta[i], i % 2 == 0 ? 3 : 2));
    shared = shared && !tb.back().batched;
  }
  std::vector<Batch> all = tb;
  all.push_back(xb);
  const index_t count = batch_count(all);
  if (count < 0) return nested_vmap_error("odeint");
  const auto xd = X.dimensions();
  const index_t N = xd[xd.size() - 2];
  return guarded([&] {
    auto params = [&](index_t e) {
      std::vector<const T*> p;
      for (std::size_t i = 0; i < theta.size(); ++i) p.push_back(element<T>(theta[i], tb[i], e));
      return p;
    };
    if (shared) {  // every sample of the batch in one call: X (count * N, dim) in memory order
      auto pb = problem<T>(a, element<T>(X, xb, 0), N * xb.count, params(0), theta[0]);
      T* dst = static_cast<T*>(out.untyped_data());
      if (!trajectory) return resode::final_state(pb, dst);  // (count * N, D): out's order
      // (steps + 1, count * N, D) -> out (count, steps + 1, N, D)
      const index_t states = pb.dyn.steps() + 1, slice = N * pb.dyn.field.D;
      std::vector<T> all(std::size_t(states * count * slice));
      resode::trajectory(pb, all.data());
      for (index_t e = 0; e < count; ++e)
        for (index_t j = 0; j < states; ++j)
          std::memcpy(dst + (e * states + j) * slice, all.data() + (j * count + e) * slice,
                      sizeof(T) * std::size_t(slice));
      return;
    }
    for (index_t e = 0; e < count; ++e) {
      auto pb = problem<T>(a, element<T>(X, xb, e), N, params(e), theta[0]);
      const index_t per = index_t(out.element_count()) / count;
      T* dst = static_cast<T*>(out.untyped_data()) + e * per;
      if (trajectory)
        resode::trajectory(pb, dst);
      else
        resode::final_state(pb, dst);
    }
  });
}

template <class T>
ffi::Error vjp(const FlowAttrs& a, std::string_view gradient, std::int64_t checkpoints,
               ffi::AnyBuffer X, ffi::AnyBuffer cotangent, const ffi::RemainingArgs& rest,
               ffi::Result<ffi::AnyBuffer> dX, const ffi::RemainingRets& dtheta_rets) {
  std::vector<ffi::AnyBuffer> theta, dtheta;
  for (std::size_t i = 0; i < rest.size(); ++i) {
    auto t = rest.get<ffi::AnyBuffer>(i);
    if (t.has_error()) return t.error();
    theta.push_back(*t);
    auto r = dtheta_rets.get<ffi::AnyBuffer>(i);
    if (r.has_error()) return r.error();
    dtheta.push_back(**r);
  }
  const Batch xb = batch_of(X, 2);
  std::vector<Batch> tb;
  for (std::size_t i = 0; i < theta.size(); ++i) tb.push_back(batch_of(theta[i], i % 2 == 0 ? 3 : 2));
  const auto xd = X.dimensions();
  const index_t N = xd[xd.size() - 2];
  // (N, D) on the final state or (steps + 1, N, D) on every state, after the k batch axes
  const bool every_state = cotangent.dimensions().size() - (xd.size() - 2) == 3;
  const Batch cb = batch_of(cotangent, every_state ? 3 : 2);
  std::vector<Batch> all = tb;
  all.push_back(xb), all.push_back(cb);
  const index_t count = batch_count(all);
  if (count < 0) return nested_vmap_error("odeint");
  return guarded([&] {
    resode::GradientOptions opt;
    if (gradient == "discrete")
      opt.gradient = resode::Gradient::discrete;
    else if (gradient == "adjoint")
      opt.gradient = resode::Gradient::adjoint;
    else
      throw std::invalid_argument("gradient must be 'discrete' or 'adjoint'");
    opt.checkpoints = index_t(checkpoints);
    opt.cotangent_every_state = every_state;
    // Every output has the batch axes (expand_dims): one slice per element.
    const Batch out_batch{count, count > 1, {}};
    for (index_t e = 0; e < count; ++e) {
      std::vector<const T*> p;
      for (std::size_t i = 0; i < theta.size(); ++i) p.push_back(element<T>(theta[i], tb[i], e));
      auto pb = problem<T>(a, element<T>(X, xb, e), N, p, theta[0]);
      // The flat field gradient of the core, split into the output tensors afterwards.
      std::vector<T> flat(std::size_t(pb.dyn.field.size()));
      resode::vjp(pb, element<T>(cotangent, cb, e), opt, flat.data(), element<T>(*dX, out_batch, e));
      index_t offset = 0;
      for (auto& d : dtheta) {
        const index_t size = index_t(d.element_count()) / count;
        std::memcpy(element<T>(d, out_batch, e), flat.data() + offset, sizeof(T) * std::size_t(size));
        offset += size;
      }
    }
  });
}

// (rows, count * N, D) in `from` -> (count, rows, N, D) in `to`: the samples of one core call
// over a whole vmapped batch, regrouped per batch element.
template <class T>
void regroup(const T* from, index_t rows, index_t count, index_t slice, T* to) {
  for (index_t e = 0; e < count; ++e)
    for (index_t j = 0; j < rows; ++j)
      std::memcpy(to + (e * rows + j) * slice, from + (j * count + e) * slice,
                  sizeof(T) * std::size_t(slice));
}

// The forward sweep of a training step: the output and what the backward needs, `kept` per
// batch element: the stage tape (steps, width, N) with `stages` (resode::forward_stage_tape),
// else the states (rows, N, D) (resode::forward_states), no rows when the output is a
// trajectory with every state kept (the backward then takes the output).
template <class T>
ffi::Error forward_kept(const FlowAttrs& a, bool trajectory, index_t stride, bool stages,
                        ffi::AnyBuffer X,
                        const ffi::RemainingArgs& rest, ffi::AnyBuffer out, ffi::AnyBuffer kept) {
  std::vector<ffi::AnyBuffer> theta;
  if (auto err = buffers(rest, theta); err.failure()) return err;
  const Batch xb = batch_of(X, 2);
  bool shared = true;  // the parameters carry no batch
  std::vector<Batch> tb;
  for (std::size_t i = 0; i < theta.size(); ++i) {
    tb.push_back(batch_of(theta[i], i % 2 == 0 ? 3 : 2));
    shared = shared && !tb.back().batched;
  }
  std::vector<Batch> all = tb;
  all.push_back(xb);
  const index_t count = batch_count(all);
  if (count < 0) return nested_vmap_error("odeint");
  const auto xd = X.dimensions();
  const index_t N = xd[xd.size() - 2];
  const auto kd = kept.dimensions();
  const index_t rows = kd[kd.size() - 3];
  return guarded([&] {
    auto params = [&](index_t e) {
      std::vector<const T*> p;
      for (std::size_t i = 0; i < theta.size(); ++i) p.push_back(element<T>(theta[i], tb[i], e));
      return p;
    };
    auto run = [&](const resode::Problem<T>& pb, T* states, T* dst) {
      if (stages)
        resode::forward_stage_tape(pb, trajectory, states, dst);
      else if (rows == 0)
        resode::trajectory(pb, dst);
      else
        resode::forward_states(pb, stride, trajectory, states, dst);
    };
    T* dst = static_cast<T*>(out.untyped_data());
    T* states = static_cast<T*>(kept.untyped_data());
    if (shared && count > 1) {  // every sample of the batch in one call, then regrouped
      auto pb = problem<T>(a, element<T>(X, xb, 0), N * xb.count, params(0), theta[0]);
      const index_t slice = N * pb.dyn.field.D, S = pb.dyn.steps() + 1;
      std::vector<T> all_states(kept.element_count());
      std::vector<T> all_out(trajectory ? std::size_t(S * count * slice) : 0);
      run(pb, all_states.data(), trajectory ? all_out.data() : dst);  // final: out's order
      // states: rows of (N, D) per element; the stage tape: steps x width rows of N
      if (stages)
        regroup(all_states.data(), rows * kd[kd.size() - 2], count, N, states);
      else
        regroup(all_states.data(), rows, count, slice, states);
      if (trajectory) regroup(all_out.data(), S, count, slice, dst);
      return;
    }
    const Batch one{count, count > 1, {}};
    for (index_t e = 0; e < count; ++e) {
      auto pb = problem<T>(a, element<T>(X, xb, e), N, params(e), theta[0]);
      run(pb, rows ? element<T>(kept, one, e) : nullptr, element<T>(out, one, e));
    }
  });
}

// vjp's discrete product from the states forward_kept kept (resode::vjp_from_states), one core
// call per batch element.
template <class T>
ffi::Error vjp_kept(const FlowAttrs& a, index_t stride, bool stages, ffi::AnyBuffer X,
                    ffi::AnyBuffer cotangent, ffi::AnyBuffer kept, const ffi::RemainingArgs& rest,
                    ffi::Result<ffi::AnyBuffer> dX, const ffi::RemainingRets& dtheta_rets) {
  std::vector<ffi::AnyBuffer> theta;
  if (auto err = buffers(rest, theta); err.failure()) return err;
  std::vector<ffi::AnyBuffer> dtheta;
  for (std::size_t i = 0; i < theta.size(); ++i) {
    auto r = dtheta_rets.get<ffi::AnyBuffer>(i);
    if (r.has_error()) return r.error();
    dtheta.push_back(**r);
  }
  const Batch xb = batch_of(X, 2);
  std::vector<Batch> tb;
  for (std::size_t i = 0; i < theta.size(); ++i) tb.push_back(batch_of(theta[i], i % 2 == 0 ? 3 : 2));
  const auto xd = X.dimensions();
  const index_t N = xd[xd.size() - 2];
  const bool every_state = cotangent.dimensions().size() - (xd.size() - 2) == 3;
  const Batch cb = batch_of(cotangent, every_state ? 3 : 2), kb = batch_of(kept, 3);
  std::vector<Batch> all = tb;
  all.push_back(xb), all.push_back(cb), all.push_back(kb);
  const index_t count = batch_count(all);
  if (count < 0) return nested_vmap_error("odeint");
  return guarded([&] {
    const Batch out_batch{count, count > 1, {}};
    for (index_t e = 0; e < count; ++e) {
      std::vector<const T*> p;
      for (std::size_t i = 0; i < theta.size(); ++i) p.push_back(element<T>(theta[i], tb[i], e));
      auto pb = problem<T>(a, element<T>(X, xb, e), N, p, theta[0]);
      std::vector<T> flat(std::size_t(pb.dyn.field.size()));
      resode::vjp_from_states(pb, element<T>(kept, kb, e), stride, stages,
                              element<T>(cotangent, cb, e), every_state, flat.data(),
                              element<T>(*dX, out_batch, e));
      index_t offset = 0;
      for (auto& d : dtheta) {
        const index_t size = index_t(d.element_count()) / count;
        std::memcpy(element<T>(d, out_batch, e), flat.data() + offset, sizeof(T) * std::size_t(size));
        offset += size;
      }
    }
  });
}

FlowAttrs attrs(std::string_view field, std::string_view activation, std::string_view method,
                double dt, std::int64_t substeps, std::int64_t augment) {
  return {field, activation, method, dt, substeps, augment};
}

ffi::Error forward_any(ffi::AnyBuffer X, ffi::RemainingArgs theta, ffi::Result<ffi::AnyBuffer> out,
                       std::string_view field, std::string_view activation,
                       std::string_view method, double dt, std::int64_t substeps,
                       std::int64_t augment, std::int64_t trajectory) {
  const auto a = attrs(field, activation, method, dt, substeps, augment);
  if (is_float(X, ffi::DataType::F64)) return forward<double>(a, trajectory != 0, X, theta, *out);
  if (is_float(X, ffi::DataType::F32)) return forward<float>(a, trajectory != 0, X, theta, *out);
  return ffi::Error::InvalidArgument("resode: X must be float32 or float64");
}

ffi::Error vjp_any(ffi::AnyBuffer X, ffi::AnyBuffer cotangent, ffi::RemainingArgs theta,
                   ffi::Result<ffi::AnyBuffer> dX, ffi::RemainingRets dtheta,
                   std::string_view field, std::string_view activation, std::string_view method,
                   double dt, std::int64_t substeps, std::int64_t augment,
                   std::string_view gradient, std::int64_t checkpoints) {
  const auto a = attrs(field, activation, method, dt, substeps, augment);
  if (is_float(X, ffi::DataType::F64))
    return vjp<double>(a, gradient, checkpoints, X, cotangent, theta, dX, dtheta);
  if (is_float(X, ffi::DataType::F32))
    return vjp<float>(a, gradient, checkpoints, X, cotangent, theta, dX, dtheta);
  return ffi::Error::InvalidArgument("resode: X must be float32 or float64");
}

ffi::Error forward_kept_any(ffi::AnyBuffer X, ffi::RemainingArgs theta,
                            ffi::Result<ffi::AnyBuffer> out, ffi::Result<ffi::AnyBuffer> kept,
                            std::string_view field, std::string_view activation,
                            std::string_view method, double dt, std::int64_t substeps,
                            std::int64_t augment, std::int64_t trajectory, std::int64_t stride,
                            std::int64_t stages) {
  const auto a = attrs(field, activation, method, dt, substeps, augment);
  if (is_float(X, ffi::DataType::F64))
    return forward_kept<double>(a, trajectory != 0, index_t(stride), stages != 0, X, theta,
                                *out, *kept);
  if (is_float(X, ffi::DataType::F32))
    return forward_kept<float>(a, trajectory != 0, index_t(stride), stages != 0, X, theta,
                               *out, *kept);
  return ffi::Error::InvalidArgument("resode: X must be float32 or float64");
}

ffi::Error vjp_kept_any(ffi::AnyBuffer X, ffi::AnyBuffer cotangent, ffi::AnyBuffer kept,
                        ffi::RemainingArgs theta, ffi::Result<ffi::AnyBuffer> dX,
                        ffi::RemainingRets dtheta, std::string_view field,
                        std::string_view activation, std::string_view method, double dt,
                        std::int64_t substeps, std::int64_t augment, std::int64_t stride,
                        std::int64_t stages) {
  const auto a = attrs(field, activation, method, dt, substeps, augment);
  if (is_float(X, ffi::DataType::F64))
    return vjp_kept<double>(a, index_t(stride), stages != 0, X, cotangent, kept, theta, dX,
                            dtheta);
  if (is_float(X, ffi::DataType::F32))
    return vjp_kept<float>(a, index_t(stride), stages != 0, X, cotangent, kept, theta, dX,
                           dtheta);
  return ffi::Error::InvalidArgument("resode: X must be float32 or float64");
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(resode_xla_odeint_states, forward_kept_any,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()
                                  .RemainingArgs()
                                  .Ret<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Attr<std::string_view>("field")
                                  .Attr<std::string_view>("activation")
                                  .Attr<std::string_view>("method")
                                  .Attr<double>("dt")
                                  .Attr<std::int64_t>("substeps")
                                  .Attr<std::int64_t>("augment")
                                  .Attr<std::int64_t>("trajectory")
                                  .Attr<std::int64_t>("stride")
                                  .Attr<std::int64_t>("stages"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(resode_xla_odeint_vjp_states, vjp_kept_any,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .RemainingArgs()
                                  .Ret<ffi::AnyBuffer>()
                                  .RemainingRets()
                                  .Attr<std::string_view>("field")
                                  .Attr<std::string_view>("activation")
                                  .Attr<std::string_view>("method")
                                  .Attr<double>("dt")
                                  .Attr<std::int64_t>("substeps")
                                  .Attr<std::int64_t>("augment")
                                  .Attr<std::int64_t>("stride")
                                  .Attr<std::int64_t>("stages"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(resode_xla_odeint, forward_any,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()
                                  .RemainingArgs()
                                  .Ret<ffi::AnyBuffer>()
                                  .Attr<std::string_view>("field")
                                  .Attr<std::string_view>("activation")
                                  .Attr<std::string_view>("method")
                                  .Attr<double>("dt")
                                  .Attr<std::int64_t>("substeps")
                                  .Attr<std::int64_t>("augment")
                                  .Attr<std::int64_t>("trajectory"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(resode_xla_odeint_vjp, vjp_any,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .RemainingArgs()
                                  .Ret<ffi::AnyBuffer>()
                                  .RemainingRets()
                                  .Attr<std::string_view>("field")
                                  .Attr<std::string_view>("activation")
                                  .Attr<std::string_view>("method")
                                  .Attr<double>("dt")
                                  .Attr<std::int64_t>("substeps")
                                  .Attr<std::int64_t>("augment")
                                  .Attr<std::string_view>("gradient")
                                  .Attr<std::int64_t>("checkpoints"));

void register_xla(py::module_& m) {
  m.def(
      "xla_handlers",
      [] {
        py::dict out;
        out["resode_odeint"] = py::capsule(reinterpret_cast<void*>(&resode_xla_odeint));
        out["resode_odeint_vjp"] = py::capsule(reinterpret_cast<void*>(&resode_xla_odeint_vjp));
        out["resode_odeint_states"] =
            py::capsule(reinterpret_cast<void*>(&resode_xla_odeint_states));
        out["resode_odeint_vjp_states"] =
            py::capsule(reinterpret_cast<void*>(&resode_xla_odeint_vjp_states));
        out.attr("update")(resode::xla::cde_handlers());
        out.attr("update")(resode::xla::driven_handlers());
        return out;
      },
      "The XLA FFI handlers of resode.jax, as PyCapsules for jax.ffi.register_ffi_target.");
}
