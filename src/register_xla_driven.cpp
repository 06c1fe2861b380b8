// The XLA FFI handlers of resode.jax.odeint(..., u=U): the input-driven neural ODE's states
// (resode::driven_solve) and their exact discrete vector-Jacobian product (resode::driven_vjp),
// on XLA's buffers, with the checks of the bindings (register_driven.cpp) that depend on the
// values: non-finite x0, parameters or cotangents, Inf in U. Shapes and options are checked in
// Python (resode._driven_bridge).
//
// Arguments: x0 (N, D) (X with its augment zeros), U (N, L, C), times (L,) or (N, L)
// (attribute per_sample_times), then the field's arrays (W, b or W1, b1, W2, b2). times may be
// float32, float64, int32 or int64: converted to float64 as the bindings convert them. With
// trajectory = 1 the output times are the step grid t_j = j T / steps (as resode.NeuralODE's
// trajectory computes it). Batching (xla_common.hpp): one core call per batch element (each
// element's samples have their own grids, so batch elements are never merged into one call).
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "resode/driven.hpp"
#include "xla_common.hpp"

namespace ffi = xla::ffi;

namespace {

using resode::index_t;
using namespace resode::xla;  // Batch, batch_of, batch_count, element, guarded, buffers

struct DrivenAttrs {
  double T;
  std::string_view field, activation, interpolation, method;
  std::int64_t substeps, per_sample_times, trajectory;
};

// The buffers of one call, their batch axes, and the batch's size.
struct DrivenBuffers {
  DrivenBuffers(ffi::AnyBuffer x0_, ffi::AnyBuffer U_, ffi::AnyBuffer times_)
      : x0(x0_), U(U_), times(times_) {}
  ffi::AnyBuffer x0, U, times;
  std::vector<ffi::AnyBuffer> theta;  // the field's arrays
  Batch x0_b, Ub, times_b;
  std::vector<Batch> theta_b;
  index_t count = 1;
};

ffi::Error gather(const DrivenAttrs& a, const ffi::RemainingArgs& rest, DrivenBuffers& b) {
  if (auto err = buffers(rest, b.theta); err.failure()) return err;
  b.x0_b = batch_of(b.x0, 2);
  b.Ub = batch_of(b.U, 3);
  b.times_b = batch_of(b.times, a.per_sample_times ? 2 : 1);
  // W (pieces, rows, D + C), b (pieces, rows), then W2 and b2 alike
  for (std::size_t i = 0; i < b.theta.size(); ++i)
    b.theta_b.push_back(batch_of(b.theta[i], i % 2 == 0 ? 3 : 2));
  return ffi::Error::Success();
}

index_t batch_count_of(DrivenBuffers& b, const std::vector<Batch>& extra) {
  std::vector<Batch> all{b.x0_b, b.Ub, b.times_b};
  all.insert(all.end(), b.theta_b.begin(), b.theta_b.end());
  all.insert(all.end(), extra.begin(), extra.end());
  return b.count = batch_count(all);
}

// The problem of batch element e (times and the output grid converted into `times` and `t`),
// with the value checks of the bindings.
template <class T>
resode::DrivenProblem<T> driven_problem(const DrivenAttrs& a, const DrivenBuffers& b, index_t e,
                                        std::vector<double>& times, std::vector<double>& t) {
  resode::DrivenProblem<T> pb;
  const auto xd = b.x0.dimensions(), ud = b.U.dimensions();
  const std::size_t r = ud.size();
  pb.N = ud[r - 3], pb.L = ud[r - 2], pb.C = ud[r - 1];
  auto& f = pb.field;
  f.D = xd[xd.size() - 1], f.C = pb.C;
  pb.x0 = element<T>(b.x0, b.x0_b, e);
  resode::require(resode::all_finite(pb.N * f.D, pb.x0), "x0 contains NaN or Inf");
  pb.U = element<T>(b.U, b.Ub, e);
  for (index_t i = 0; i < pb.N * pb.L * pb.C; ++i)
    resode::require(!std::isinf(pb.U[i]),
                    "U contains Inf (NaN marks a missing value; Inf is refused)");
  times = doubles(b.times, b.times_b, e, a.per_sample_times ? pb.N * pb.L : pb.L);
  pb.times = times.data(), pb.per_sample_times = a.per_sample_times != 0;
  static const char* const bottleneck[] = {"W1", "b1", "W2", "b2"};
  static const char* const plain[] = {"W", "b"};
  const char* const* names = b.theta.size() == 4 ? bottleneck : plain;
  std::vector<const T*> p;
  for (std::size_t i = 0; i < b.theta.size(); ++i) {
    p.push_back(element<T>(b.theta[i], b.theta_b[i], e));
    const index_t n = index_t(b.theta[i].element_count()) / b.count;
    resode::require(resode::all_finite(n, p.back()), [&] {
      return std::string("params['") + names[i] + "'] contains NaN or Inf";
    });
  }
  f.kind = resode::parse_driven_field(std::string(a.field));
  f.activation = resode::parse_activation(std::string(a.activation));
  const auto Wd = b.theta[0].dimensions();
  f.pieces = Wd[Wd.size() - 3];
  if (f.bottleneck()) f.H = Wd[Wd.size() - 2], f.W2 = p[2], f.b2 = p[3];
  f.W1 = p[0], f.b1 = p[1];
  resode::require(std::isfinite(a.T) && a.T > 0, "T must be finite and > 0");
  pb.T_end = a.T;
  pb.interpolation = resode::parse_interpolation(std::string(a.interpolation));
  pb.tab = resode::tableau(resode::parse_method(std::string(a.method)));
  resode::require(a.substeps >= 1, "substeps must be >= 1");
  pb.substeps = index_t(a.substeps);
  if (a.trajectory) {  // t_j = j T / steps, computed as resode.NeuralODE.trajectory does
    const index_t steps = f.pieces * pb.substeps;
    t.resize(std::size_t(steps + 1));
    for (index_t j = 0; j <= steps; ++j) t[std::size_t(j)] = a.T * double(j) / double(steps);
    pb.out_times = t.data(), pb.out_count = steps + 1;
  }
  return pb;
}

template <class T>
ffi::Error solve(const DrivenAttrs& a, DrivenBuffers& b, ffi::AnyBuffer out) {
  if (batch_count_of(b, {}) < 0) return nested_vmap_error("odeint");
  return guarded([&] {
    const Batch one{b.count, b.count > 1, {}};
    std::vector<double> times, t;
    for (index_t e = 0; e < b.count; ++e) {
      const auto pb = driven_problem<T>(a, b, e, times, t);
      resode::driven_solve(pb, element<T>(out, one, e));
    }
  });
}

template <class T>
ffi::Error vjp(const DrivenAttrs& a, DrivenBuffers& b, ffi::AnyBuffer cotangent,
               ffi::AnyBuffer dx0, ffi::AnyBuffer dU, std::vector<ffi::AnyBuffer>& dtheta) {
  const Batch cb = batch_of(cotangent, a.trajectory ? 3 : 2);
  if (batch_count_of(b, {cb}) < 0) return nested_vmap_error("odeint");
  return guarded([&] {
    const Batch one{b.count, b.count > 1, {}};
    std::vector<double> times, t;
    for (index_t e = 0; e < b.count; ++e) {
      const auto pb = driven_problem<T>(a, b, e, times, t);
      const T* cot = element<T>(cotangent, cb, e);
      const index_t n = index_t(cotangent.element_count()) / b.count;
      resode::require(resode::all_finite(n, cot), "cotangent contains NaN or Inf");
      // The field's gradient is flat in the core ([W1 | b1 | W2 | b2]): split afterwards.
      std::vector<T> flat(std::size_t(pb.field.size()));
      resode::driven_vjp(pb, cot, flat.data(), element<T>(dx0, one, e), element<T>(dU, one, e));
      index_t offset = 0;
      for (std::size_t i = 0; i < dtheta.size(); ++i) {
        const index_t size = index_t(dtheta[i].element_count()) / b.count;
        std::memcpy(element<T>(dtheta[i], one, e), flat.data() + offset,
                    sizeof(T) * std::size_t(size));
        offset += size;
      }
    }
  });
}

ffi::Error solve_any(ffi::AnyBuffer x0, ffi::AnyBuffer U, ffi::AnyBuffer times,
                     ffi::RemainingArgs rest, ffi::Result<ffi::AnyBuffer> out, double T,
                     std::string_view field, std::string_view activation,
                     std::string_view interpolation, std::string_view method,
                     std::int64_t substeps, std::int64_t per_sample_times,
                     std::int64_t trajectory) {
  const DrivenAttrs a{T, field, activation, interpolation, method, substeps, per_sample_times,
                      trajectory};
  DrivenBuffers b(x0, U, times);
  if (auto err = gather(a, rest, b); err.failure()) return err;
  if (is_float(x0, ffi::DataType::F64)) return solve<double>(a, b, *out);
  if (is_float(x0, ffi::DataType::F32)) return solve<float>(a, b, *out);
  return ffi::Error::InvalidArgument("resode: X must be float32 or float64");
}

ffi::Error vjp_any(ffi::AnyBuffer x0, ffi::AnyBuffer U, ffi::AnyBuffer times,
                   ffi::AnyBuffer cotangent, ffi::RemainingArgs rest,
                   ffi::Result<ffi::AnyBuffer> dx0, ffi::Result<ffi::AnyBuffer> dU,
                   ffi::RemainingRets dtheta_rets, double T, std::string_view field,
                   std::string_view activation, std::string_view interpolation,
                   std::string_view method, std::int64_t substeps,
                   std::int64_t per_sample_times, std::int64_t trajectory) {
  const DrivenAttrs a{T, field, activation, interpolation, method, substeps, per_sample_times,
                      trajectory};
  DrivenBuffers b(x0, U, times);
  if (auto err = gather(a, rest, b); err.failure()) return err;
  std::vector<ffi::AnyBuffer> dtheta;
  if (auto err = results(dtheta_rets, b.theta.size(), dtheta); err.failure()) return err;
  if (is_float(x0, ffi::DataType::F64)) return vjp<double>(a, b, cotangent, *dx0, *dU, dtheta);
  if (is_float(x0, ffi::DataType::F32)) return vjp<float>(a, b, cotangent, *dx0, *dU, dtheta);
  return ffi::Error::InvalidArgument("resode: X must be float32 or float64");
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(resode_xla_driven, solve_any,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .RemainingArgs()
                                  .Ret<ffi::AnyBuffer>()
                                  .Attr<double>("T")
                                  .Attr<std::string_view>("field")
                                  .Attr<std::string_view>("activation")
                                  .Attr<std::string_view>("interpolation")
                                  .Attr<std::string_view>("method")
                                  .Attr<std::int64_t>("substeps")
                                  .Attr<std::int64_t>("per_sample_times")
                                  .Attr<std::int64_t>("trajectory"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(resode_xla_driven_vjp, vjp_any,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .RemainingArgs()
                                  .Ret<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()
                                  .RemainingRets()
                                  .Attr<double>("T")
                                  .Attr<std::string_view>("field")
                                  .Attr<std::string_view>("activation")
                                  .Attr<std::string_view>("interpolation")
                                  .Attr<std::string_view>("method")
                                  .Attr<std::int64_t>("substeps")
                                  .Attr<std::int64_t>("per_sample_times")
                                  .Attr<std::int64_t>("trajectory"));

py::dict resode::xla::driven_handlers() {
  py::dict out;
  out["resode_driven"] = py::capsule(reinterpret_cast<void*>(&resode_xla_driven));
  out["resode_driven_vjp"] = py::capsule(reinterpret_cast<void*>(&resode_xla_driven_vjp));
  return out;
}
