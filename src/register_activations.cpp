// Elementwise activations of the core, exposed so tests can check them against NumPy.
#include "bindings.hpp"

namespace {

template <class T>
py::array_t<T> apply(const std::string& name, const py::array& x, bool derivative) {
  const auto in = resode::bind::checked<T>(x, "x", resode::bind::Shape(std::size_t(x.ndim()), -1),
                                           false);
  py::array_t<T> out(resode::bind::shape_of(in));
  const auto act = resode::parse_activation(name);
  const resode::index_t n = in.size();
  const T* src = in.data();
  T* dst = out.mutable_data();
  py::gil_scoped_release release;  // plain buffers only below
  resode::with_activation(act, [&](auto a) {
    using Act = decltype(a);
    if (derivative)
      resode::derivative<Act>(n, src, dst);
    else
      resode::activate<Act>(n, src, dst);
  });
  return out;
}

py::array dispatch(const std::string& name, const py::array& x, bool derivative) {
  if (resode::bind::is_float64(x, "x")) return apply<double>(name, x, derivative);
  return apply<float>(name, x, derivative);
}

}  // namespace

void register_activations(py::module_& m) {
  m.def("activation",
        [](const std::string& name, const py::array& x) { return dispatch(name, x, false); },
        py::arg("name"), py::arg("x"), "sigma(x) elementwise, in the dtype of x.");
  m.def("activation_grad",
        [](const std::string& name, const py::array& x) { return dispatch(name, x, true); },
        py::arg("name"), py::arg("x"), "sigma'(x) elementwise, in the dtype of x.");
}
