// The argument checks shared by the bindings of the models that read a series U (N, L, C) at
// observation times (register_cde.cpp, register_driven.cpp): the params dict's arrays, U's
// values, the times shared (L,) or per sample (N, L), the output times t=, the adaptive options,
// gradient=, and the (grids, counts) an adaptive run reports. Translation only: no math.
#pragma once
#include <cmath>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "bindings.hpp"

namespace resode::bind {

template <class T>
using carray = py::array_t<T, py::array::c_style>;
using darray = py::array_t<double, py::array::c_style>;

inline const char* dtype_name(std::size_t itemsize) {
  return itemsize == 8 ? "float64" : "float32";
}

// `obj` as a C-contiguous NumPy array of dtype T exactly (TypeError otherwise); `like` names the
// argument whose dtype selected T.
template <class T>
carray<T> typed(const py::object& obj, const std::string& name, const std::string& like) {
  if (!py::isinstance<py::array>(obj))
    throw py::type_error(name + " must be a NumPy array, got " +
                         std::string(py::str(py::type::of(obj).attr("__name__"))));
  py::array arr = obj.cast<py::array>();
  if (arr.dtype().kind() != 'f' || arr.itemsize() != sizeof(T))
    throw py::type_error(name + " must have dtype " + dtype_name(sizeof(T)) + " like " + like +
                         ", got " + std::string(py::str(arr.dtype())));
  auto out = carray<T>::ensure(arr);
  if (!out) throw py::error_already_set();
  return out;
}

// params[key] as a C-contiguous, finite array of dtype T (like `like`) and the expected shape
// (-1 = any extent >= 1); `meaning` names the axes in the messages.
template <class T>
carray<T> checked_param(const py::dict& params, const std::string& key, const Shape& expected,
                        const std::string& meaning, const std::string& like) {
  const std::string name = "params['" + key + "']";
  if (!params.contains(key))
    throw std::invalid_argument("params must hold '" + key + "' " + meaning);
  auto out = typed<T>(params[key.c_str()], name, like);
  const Shape shape = shape_of(out);
  bool ok = shape.size() == expected.size();
  for (std::size_t i = 0; ok && i < shape.size(); ++i)
    ok = (expected[i] < 0 && shape[i] >= 1) || expected[i] == shape[i];
  if (!ok)
    throw std::invalid_argument(name + " must have shape " + shape_string(expected) + " " +
                                meaning + ", got " + shape_string(shape));
  if (!resode::all_finite(out.size(), out.data()))
    throw std::invalid_argument(name + " contains NaN or Inf");
  return out;
}

// A real array (float or integer dtype; array-likes through numpy.asarray) as float64,
// C-contiguous.
inline darray real_array(const py::object& obj, const char* name) {
  const py::array arr = py::module_::import("numpy").attr("asarray")(obj);
  const char kind = arr.dtype().kind();
  if (kind != 'f' && kind != 'i' && kind != 'u')
    throw py::type_error(std::string(name) + " must be a real (float or integer) array, got " +
                         std::string(py::str(arr.dtype())));
  auto out = py::array_t<double, py::array::c_style | py::array::forcecast>::ensure(arr);
  if (!out) throw py::error_already_set();
  return out;
}

// U's values: NaN marks a missing observation; Inf is refused.
template <class T>
void require_no_inf(const carray<T>& U) {
  const T* u = U.data();
  for (index_t i = 0; i < U.size(); ++i)
    resode::require(!std::isinf(u[i]),
                    "U contains Inf (NaN marks a missing value; Inf is refused)");
}

// times, shared (L,) or per sample (N, L), as float64 kept alive in `kept`; points the problem
// (a CdeProblem or DrivenProblem, its N and L set) at them.
template <class Problem>
void bind_times(const py::object& times, darray& kept, Problem& pb) {
  kept = real_array(times, "times");
  const Shape ts = shape_of(kept);
  const bool shared = ts.size() == 1 && ts[0] == pb.L;
  const bool own = ts.size() == 2 && ts[0] == pb.N && ts[1] == pb.L;
  resode::require(shared || own, [&] {
    return "times must have shape (" + std::to_string(pb.L) + ",) (shared) or (" +
           std::to_string(pb.N) + ", " + std::to_string(pb.L) + ") (per sample) like U, got " +
           shape_string(ts);
  });
  pb.times = kept.data(), pb.per_sample_times = own;
}

// t=None (the final state only) or a non-empty 1-D array of output times, kept alive in `kept`.
template <class Problem>
void bind_out_times(const py::object& t, darray& kept, Problem& pb) {
  if (t.is_none()) return;
  kept = real_array(t, "t");
  resode::require(kept.ndim() == 1 && kept.shape(0) >= 1, [&] {
    return "t must be a non-empty 1-D array of times, got shape " + shape_string(shape_of(kept));
  });
  pb.out_times = kept.data(), pb.out_count = kept.shape(0);
}

// rtol, atol, first_step (None: Hairer's heuristic) and max_steps of an adaptive method.
inline resode::AdaptiveOptions checked_adaptive_options(double rtol, double atol,
                                                        std::optional<double> first_step,
                                                        index_t max_steps) {
  resode::require(std::isfinite(rtol) && rtol >= 0, "rtol must be finite and >= 0");
  resode::require(std::isfinite(atol) && atol >= 0, "atol must be finite and >= 0");
  resode::require(rtol > 0 || atol > 0, "rtol and atol must not both be 0");
  const double first = first_step.value_or(0.0);
  resode::require(std::isfinite(first) && (!first_step || first > 0),
                  "first_step must be finite and > 0 (or None: Hairer's heuristic)");
  resode::require(max_steps >= 1, "max_steps must be >= 1");
  resode::AdaptiveOptions options;
  options.rtol = rtol, options.atol = atol, options.first_step = first;
  options.max_steps = max_steps;
  return options;
}

// The step rule of a bound model (BoundCde, BoundDriven): an adaptive method's embedded tableau
// and checked options (run() then picks the steps), or a fixed method's tableau.
template <class Bound>
void bind_method(const std::string& method, double rtol, double atol,
                 std::optional<double> first_step, index_t max_steps, Bound& b) {
  b.adaptive = resode::is_adaptive_method(method);
  if (b.adaptive) {
    b.etab = resode::embedded_tableau(resode::parse_adaptive_method(method));
    b.aopt = checked_adaptive_options(rtol, atol, first_step, max_steps);
  } else {
    b.pb.tab = resode::tableau(resode::parse_method(method));
  }
}

// gradient="discrete" (false) or "adjoint" (true).
inline bool is_adjoint(const std::string& gradient) {
  resode::require(gradient == "discrete" || gradient == "adjoint", [&] {
    return "gradient must be 'discrete' or 'adjoint', got '" + gradient + "'";
  });
  return gradient == "adjoint";
}

// The *_grids functions take an adaptive method only.
inline void require_adaptive_method(const std::string& method) {
  resode::require(resode::is_adaptive_method(method), [&] {
    return "method must be 'dopri5', 'tsit5' or 'bosh3' (an adaptive method), got '" + method +
           "'";
  });
}

// The field's gradients, keyed as params: views of the flat gradient `flat`, one per array in
// the field's layout (names[m] with shapes[m], one after another).
template <class T>
void add_field_views(py::dict& grads, const std::vector<std::string>& names,
                     const std::vector<Shape>& shapes, py::array_t<T>& flat) {
  index_t offset = 0;
  for (std::size_t m = 0; m < names.size(); ++m) {
    grads[names[m].c_str()] = view(flat, offset, shapes[m]);
    index_t size = 1;
    for (index_t e : shapes[m]) size *= e;
    offset += size;
  }
}

// (grids, counts) of an adaptive run: each sample's accepted step times (float64) and counts
// (N, 3) int64: function evaluations, accepted and rejected steps.
template <class Record>
py::tuple grids_and_counts(const std::vector<Record>& records) {
  py::list out;
  const index_t N = index_t(records.size());
  py::array_t<std::int64_t> counts({N, index_t(3)});
  auto c = counts.mutable_unchecked<2>();
  for (index_t i = 0; i < N; ++i) {
    const auto& r = records[std::size_t(i)];
    out.append(py::array_t<double>(py::ssize_t(r.grid.size()), r.grid.data()));
    c(i, 0) = r.nfev, c(i, 1) = r.accepted, c(i, 2) = r.rejected;
  }
  return py::make_tuple(out, counts);
}

}  // namespace resode::bind
