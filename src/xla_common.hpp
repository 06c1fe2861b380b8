// What the XLA FFI handlers of resode.jax share (register_xla.cpp: the flows of odeint;
// register_xla_cde.cpp: the neural CDE; register_xla_driven.cpp: the input-driven neural
// ODE): the leading batch axes that vmap_method="expand_dims" adds, one element's view of a
// batched buffer, times converted to float64, and the mapping of the core's exceptions to XLA
// errors.
//
// Batching (vmap_method="expand_dims"): every argument comes with the same number k of leading
// batch axes, each either the batch extent or 1 (an unbatched argument).
#pragma once
#include <algorithm>
#include <cstdint>
#include <exception>
#include <stdexcept>
#include <string>
#include <vector>

#include "bindings.hpp"
#include "xla/ffi/api/ffi.h"

namespace resode::xla {

namespace ffi = ::xla::ffi;

// The leading batch axes of a buffer whose own rank is `base`: their product (1 if none) and
// whether any is larger than 1.
struct Batch {
  index_t count = 1;
  bool batched = false;
  std::vector<std::int64_t> axes;  // the extents of the leading batch axes
};

inline Batch batch_of(const ffi::AnyBuffer& b, std::size_t base) {
  Batch out;
  const auto dims = b.dimensions();
  for (std::size_t i = 0; i + base < dims.size(); ++i) {
    out.count *= dims[i];
    out.batched = out.batched || dims[i] > 1;
    out.axes.push_back(dims[i]);
  }
  return out;
}

// The number of batch elements, or -1 unless every batched argument has the whole batch shape
// (an unbatched one has only 1s). Nested vmaps over different arguments give, for example, X
// batch axes (1, B) and W (B, 1): they would need broadcasting, which the handlers refuse
// rather than read one element where the output expects B x B.
inline index_t batch_count(const std::vector<Batch>& batches) {
  std::vector<std::int64_t> shape;
  for (const auto& b : batches) {
    if (shape.size() < b.axes.size()) shape.resize(b.axes.size(), 1);
    for (std::size_t i = 0; i < b.axes.size(); ++i) shape[i] = std::max(shape[i], b.axes[i]);
  }
  index_t count = 1;
  for (auto e : shape) count *= e;
  for (const auto& b : batches)
    if (b.batched && b.axes != shape) return -1;
  return count;
}

inline ffi::Error nested_vmap_error(const char* function) {
  return ffi::Error::InvalidArgument(std::string("resode: nested jax.vmap over different "
                                                 "arguments of resode.jax.") +
                                     function + " is not supported");
}

// One element's view of a batched buffer: element e of `count` (or the only one).
template <class T>
T* element(const ffi::AnyBuffer& b, const Batch& batch, index_t e) {
  const index_t size = index_t(b.element_count()) / batch.count;
  return static_cast<T*>(b.untyped_data()) + (batch.batched ? e * size : 0);
}

// Runs fn() and turns the core's exceptions into XLA errors (jax raises them with the message).
template <class Fn>
ffi::Error guarded(Fn&& fn) {
  try {
    fn();
  } catch (const std::exception& e) {
    return ffi::Error::InvalidArgument(std::string("resode: ") + e.what());
  }
  return ffi::Error::Success();
}

// Element e of a real buffer (float32/64, int32/64) as float64, `n` values.
inline std::vector<double> doubles(const ffi::AnyBuffer& buf, const Batch& batch, index_t e, index_t n) {
  std::vector<double> out(std::size_t(n), 0.0);
  auto copy = [&](auto* p) {
    for (index_t i = 0; i < n; ++i) out[std::size_t(i)] = double(p[i]);
  };
  switch (buf.element_type()) {
    case ffi::DataType::F64: copy(element<double>(buf, batch, e)); break;
    case ffi::DataType::F32: copy(element<float>(buf, batch, e)); break;
    case ffi::DataType::S64: copy(element<std::int64_t>(buf, batch, e)); break;
    case ffi::DataType::S32: copy(element<std::int32_t>(buf, batch, e)); break;
    default: throw std::invalid_argument("times and t must be float32, float64, int32 or int64");
  }
  return out;
}

inline bool is_float(const ffi::AnyBuffer& b, ffi::DataType t) { return b.element_type() == t; }

// The buffers of the remaining arguments from `first` on.
inline ffi::Error buffers(const ffi::RemainingArgs& rest, std::vector<ffi::AnyBuffer>& out,
                          std::size_t first = 0) {
  for (std::size_t i = first; i < rest.size(); ++i) {
    auto t = rest.get<ffi::AnyBuffer>(i);
    if (t.has_error()) return t.error();
    out.push_back(*t);
  }
  return ffi::Error::Success();
}

// The buffers of the remaining results.
inline ffi::Error results(const ffi::RemainingRets& rest, std::size_t count,
                          std::vector<ffi::AnyBuffer>& out) {
  for (std::size_t i = 0; i < count; ++i) {
    auto r = rest.get<ffi::AnyBuffer>(i);
    if (r.has_error()) return r.error();
    out.push_back(**r);
  }
  return ffi::Error::Success();
}

// The handlers of the neural CDE (register_xla_cde.cpp), by target name, as PyCapsules.
py::dict cde_handlers();

// The handlers of the input-driven neural ODE (register_xla_driven.cpp), likewise.
py::dict driven_handlers();

}  // namespace resode::xla
