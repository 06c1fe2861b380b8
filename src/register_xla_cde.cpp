// The XLA FFI handlers of resode.jax.cdeint: the neural CDE's states (resode::cde_solve) and
// their exact discrete vector-Jacobian product (resode::cde_vjp), on XLA's buffers, with the
// checks of the bindings (register_cde.cpp) that depend on the values: Inf in U, non-finite
// parameters or cotangents. Shapes and options are checked in Python (resode._cde_bridge).
//
// Arguments: U (N, L, C), times (L,) or (N, L) (attribute per_sample_times), then the
// remaining arguments: t (Q,) when has_t, A (S, C), a (S,) and the field's arrays (W, b or
// W1, b1, W2, b2). times and t may be float32, float64, int32 or int64: converted to float64
// as the bindings convert them. Batching (xla_common.hpp): one core call per batch element
// (the observation window, hence the piece boundaries and the allowed t, is that of the
// element's own samples, so batch elements are never merged into one call).
#include <cmath>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "cde_instances.hpp"
#include "xla_common.hpp"

namespace ffi = xla::ffi;

namespace {

using resode::index_t;
using namespace resode::xla;  // Batch, batch_of, batch_count, element, guarded, doubles

struct CdeAttrs {
  std::string_view field, activation, output_activation, interpolation, method;
  std::int64_t substeps, per_sample_times, has_t;
};

// The buffers of one call, their batch axes, and the batch's size.
struct CdeBuffers {
  CdeBuffers(ffi::AnyBuffer U_, ffi::AnyBuffer times_) : U(U_), times(times_) {}
  ffi::AnyBuffer U, times;
  std::vector<ffi::AnyBuffer> theta;  // A, a, the field's arrays
  std::vector<ffi::AnyBuffer> t;      // none, or the output times
  Batch Ub, times_b, t_b;
  std::vector<Batch> theta_b;
  index_t count = 1;
};

// The own rank of each parameter: A (S, C), a (S,), then (pieces, *, *) and (pieces, *).
std::size_t param_rank(std::size_t i) { return i == 0 ? 2 : i == 1 ? 1 : i % 2 == 0 ? 3 : 2; }

ffi::Error gather(const CdeAttrs& a, const ffi::RemainingArgs& rest, CdeBuffers& b) {
  const std::size_t first = a.has_t ? 1 : 0;
  if (a.has_t) {
    auto t = rest.get<ffi::AnyBuffer>(0);
    if (t.has_error()) return t.error();
    b.t.push_back(*t);
  }
  if (auto err = buffers(rest, b.theta, first); err.failure()) return err;
  b.Ub = batch_of(b.U, 3);
  b.times_b = batch_of(b.times, a.per_sample_times ? 2 : 1);
  if (a.has_t) b.t_b = batch_of(b.t[0], 1);
  for (std::size_t i = 0; i < b.theta.size(); ++i)
    b.theta_b.push_back(batch_of(b.theta[i], param_rank(i)));
  return ffi::Error::Success();
}

index_t batch_count_of(CdeBuffers& b, const std::vector<Batch>& extra) {
  std::vector<Batch> all{b.Ub, b.times_b};
  if (!b.t.empty()) all.push_back(b.t_b);
  all.insert(all.end(), b.theta_b.begin(), b.theta_b.end());
  all.insert(all.end(), extra.begin(), extra.end());
  return b.count = batch_count(all);
}

// The problem of batch element e (times and t converted into `times` and `t`), with the
// value checks of the bindings.
template <class T>
resode::CdeProblem<T> cde_problem(const CdeAttrs& a, const CdeBuffers& b, index_t e,
                                  std::vector<double>& times, std::vector<double>& t) {
  resode::CdeProblem<T> pb;
  const auto ud = b.U.dimensions();
  const std::size_t r = ud.size();
  pb.N = ud[r - 3], pb.L = ud[r - 2], pb.C = ud[r - 1];
  pb.U = element<T>(b.U, b.Ub, e);
  const T* u = pb.U;
  for (index_t i = 0; i < pb.N * pb.L * pb.C; ++i)
    resode::require(!std::isinf(u[i]), "U contains Inf (NaN marks a missing value; Inf is refused)");
  times = doubles(b.times, b.times_b, e, a.per_sample_times ? pb.N * pb.L : pb.L);
  pb.times = times.data(), pb.per_sample_times = a.per_sample_times != 0;
  if (a.has_t) {
    const auto td = b.t[0].dimensions();
    pb.out_count = td[td.size() - 1];
    t = doubles(b.t[0], b.t_b, e, pb.out_count);
    pb.out_times = t.data();
  }
  static const char* const bottleneck[] = {"A", "a", "W1", "b1", "W2", "b2"};
  static const char* const plain[] = {"A", "a", "W", "b"};
  const char* const* names = b.theta.size() == 6 ? bottleneck : plain;
  std::vector<const T*> p;
  for (std::size_t i = 0; i < b.theta.size(); ++i) {
    p.push_back(element<T>(b.theta[i], b.theta_b[i], e));
    const index_t n = index_t(b.theta[i].element_count()) / b.count;
    resode::require(resode::all_finite(n, p.back()), [&] {
      return std::string("params['") + names[i] + "'] contains NaN or Inf";
    });
  }
  auto& f = pb.field;
  f.kind = resode::parse_field(std::string(a.field));
  const auto Ad = b.theta[0].dimensions(), Wd = b.theta[2].dimensions();
  f.S = Ad[Ad.size() - 2], f.C = pb.C;
  f.pieces = Wd[Wd.size() - 3];
  if (f.bottleneck()) f.H = Wd[Wd.size() - 2], f.W2 = p[4], f.b2 = p[5];
  f.W1 = p[2], f.b1 = p[3];
  pb.A = p[0], pb.a = p[1];
  f.activation = resode::parse_activation(std::string(a.activation));
  f.has_output_activation = !a.output_activation.empty();
  if (f.has_output_activation)
    f.output_activation = resode::parse_activation(std::string(a.output_activation));
  pb.interpolation = resode::parse_interpolation(std::string(a.interpolation));
  pb.tab = resode::tableau(resode::parse_method(std::string(a.method)));
  resode::require(a.substeps >= 1, "substeps must be >= 1");
  pb.substeps = index_t(a.substeps);
  return pb;
}

template <class T>
ffi::Error solve(const CdeAttrs& a, CdeBuffers& b, ffi::AnyBuffer out) {
  if (batch_count_of(b, {}) < 0) return nested_vmap_error("cdeint");
  return guarded([&] {
    const Batch one{b.count, b.count > 1, {}};
    std::vector<double> times, t;
    for (index_t e = 0; e < b.count; ++e) {
      const auto pb = cde_problem<T>(a, b, e, times, t);
      resode::cde_solve(pb, element<T>(out, one, e));
    }
  });
}

template <class T>
ffi::Error vjp(const CdeAttrs& a, CdeBuffers& b, ffi::AnyBuffer cotangent, ffi::AnyBuffer dU,
               std::vector<ffi::AnyBuffer>& dtheta) {
  const Batch cb = batch_of(cotangent, a.has_t ? 3 : 2);
  if (batch_count_of(b, {cb}) < 0) return nested_vmap_error("cdeint");
  return guarded([&] {
    const Batch one{b.count, b.count > 1, {}};
    std::vector<double> times, t;
    for (index_t e = 0; e < b.count; ++e) {
      const auto pb = cde_problem<T>(a, b, e, times, t);
      const T* cot = element<T>(cotangent, cb, e);
      const index_t n = index_t(cotangent.element_count()) / b.count;
      resode::require(resode::all_finite(n, cot), "cotangent contains NaN or Inf");
      // The field's gradient is flat in the core ([W1 | b1 | W2 | b2]): split afterwards.
      std::vector<T> flat(std::size_t(pb.field.size()));
      resode::cde_vjp(pb, cot, flat.data(), element<T>(dtheta[0], one, e),
                      element<T>(dtheta[1], one, e), element<T>(dU, one, e));
      index_t offset = 0;
      for (std::size_t i = 2; i < dtheta.size(); ++i) {
        const index_t size = index_t(dtheta[i].element_count()) / b.count;
        std::memcpy(element<T>(dtheta[i], one, e), flat.data() + offset,
                    sizeof(T) * std::size_t(size));
        offset += size;
      }
    }
  });
}

CdeAttrs cde_attrs(std::string_view field, std::string_view activation,
                   std::string_view output_activation, std::string_view interpolation,
                   std::string_view method, std::int64_t substeps, std::int64_t per_sample_times,
                   std::int64_t has_t) {
  return {field, activation, output_activation, interpolation, method, substeps, per_sample_times,
          has_t};
}

ffi::Error solve_any(ffi::AnyBuffer U, ffi::AnyBuffer times, ffi::RemainingArgs rest,
                     ffi::Result<ffi::AnyBuffer> out, std::string_view field,
                     std::string_view activation, std::string_view output_activation,
                     std::string_view interpolation, std::string_view method,
                     std::int64_t substeps, std::int64_t per_sample_times, std::int64_t has_t) {
  const auto a = cde_attrs(field, activation, output_activation, interpolation, method, substeps,
                           per_sample_times, has_t);
  CdeBuffers b(U, times);
  if (auto err = gather(a, rest, b); err.failure()) return err;
  if (is_float(U, ffi::DataType::F64)) return solve<double>(a, b, *out);
  if (is_float(U, ffi::DataType::F32)) return solve<float>(a, b, *out);
  return ffi::Error::InvalidArgument("resode: U must be float32 or float64");
}

ffi::Error vjp_any(ffi::AnyBuffer U, ffi::AnyBuffer times, ffi::AnyBuffer cotangent,
                   ffi::RemainingArgs rest, ffi::Result<ffi::AnyBuffer> dU,
                   ffi::RemainingRets dtheta_rets, std::string_view field,
                   std::string_view activation, std::string_view output_activation,
                   std::string_view interpolation, std::string_view method, std::int64_t substeps,
                   std::int64_t per_sample_times, std::int64_t has_t) {
  const auto a = cde_attrs(field, activation, output_activation, interpolation, method, substeps,
                           per_sample_times, has_t);
  CdeBuffers b(U, times);
  if (auto err = gather(a, rest, b); err.failure()) return err;
  std::vector<ffi::AnyBuffer> dtheta;
  if (auto err = results(dtheta_rets, b.theta.size(), dtheta); err.failure()) return err;
  if (is_float(U, ffi::DataType::F64)) return vjp<double>(a, b, cotangent, *dU, dtheta);
  if (is_float(U, ffi::DataType::F32)) return vjp<float>(a, b, cotangent, *dU, dtheta);
  return ffi::Error::InvalidArgument("resode: U must be float32 or float64");
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(resode_xla_cdeint, solve_any,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .RemainingArgs()
                                  .Ret<ffi::AnyBuffer>()
                                  .Attr<std::string_view>("field")
                                  .Attr<std::string_view>("activation")
                                  .Attr<std::string_view>("output_activation")
                                  .Attr<std::string_view>("interpolation")
                                  .Attr<std::string_view>("method")
                                  .Attr<std::int64_t>("substeps")
                                  .Attr<std::int64_t>("per_sample_times")
                                  .Attr<std::int64_t>("has_t"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(resode_xla_cdeint_vjp, vjp_any,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .RemainingArgs()
                                  .Ret<ffi::AnyBuffer>()
                                  .RemainingRets()
                                  .Attr<std::string_view>("field")
                                  .Attr<std::string_view>("activation")
                                  .Attr<std::string_view>("output_activation")
                                  .Attr<std::string_view>("interpolation")
                                  .Attr<std::string_view>("method")
                                  .Attr<std::int64_t>("substeps")
                                  .Attr<std::int64_t>("per_sample_times")
                                  .Attr<std::int64_t>("has_t"));

py::dict resode::xla::cde_handlers() {
  py::dict out;
  out["resode_cdeint"] = py::capsule(reinterpret_cast<void*>(&resode_xla_cdeint));
  out["resode_cdeint_vjp"] = py::capsule(reinterpret_cast<void*>(&resode_xla_cdeint_vjp));
  return out;
}
