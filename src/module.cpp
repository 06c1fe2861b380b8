// resode._core: the compiled half of resode. Declares the module, maps the core's exceptions,
// and registers each concept; every binding lives in its own register_<concept>.cpp.
#include <Python.h>

#include "bindings.hpp"

PYBIND11_MODULE(_core, m) {
  m.doc() = "resode's C++ core: sweeps, gradients and adjoints of ResNets and neural ODEs";

  // NonFiniteError is both a ValueError and a FloatingPointError, so callers can catch either.
  py::dict namespace_;
  namespace_["__module__"] = "resode";
  namespace_["__doc__"] = R"doc(A state, loss or gradient became NaN or Inf.

The message names the step and time. A ``ValueError`` and a ``FloatingPointError``: callers
may catch either.

Attributes
----------
step : int
    The failing step (-1: not tied to a step).
t : float
    The end time of that step.

Examples
--------
>>> import numpy as np, resode
>>> model = resode.NeuralODE(2, T=1.0, pieces=1, activation="identity", seed=0)
>>> model.params["W"][...] = 1e200 * np.eye(2)
>>> try:
...     model.forward(np.ones((1, 2)))
... except resode.NonFiniteError as err:
...     print(type(err).__name__, isinstance(err, ValueError))
NonFiniteError True
)doc";
  py::object non_finite = py::module_::import("builtins").attr("type")(
      "NonFiniteError",
      py::make_tuple(py::handle(PyExc_ValueError), py::handle(PyExc_FloatingPointError)),
      namespace_);
  m.attr("NonFiniteError") = non_finite;
  static PyObject* non_finite_type = non_finite.inc_ref().ptr();  // lives as long as the process
  // StepSizeError: an adaptive integration could not reach T (a ValueError).
  py::dict step_namespace;
  step_namespace["__module__"] = "resode";
  step_namespace["__doc__"] = R"doc(An adaptive step-size failure (a ``ValueError``).

The controller reached ``max_steps`` attempts, or a next step below the resolution of ``t``.

Attributes
----------
sample : int
    The failing sample.
t : float
    Its time at the failure.
dt : float
    The last attempted step size.
error : float
    Its error norm (NaN before the first attempt).

Examples
--------
>>> import numpy as np, resode
>>> model = resode.NeuralODE(2, T=1.0, pieces=1, method="dopri5", max_steps=2, seed=0)
>>> try:
...     model.forward(np.ones((1, 2)))
... except resode.StepSizeError as err:
...     print(err.sample, isinstance(err, ValueError))
0 True
)doc";
  py::object step_size = py::module_::import("builtins").attr("type")(
      "StepSizeError", py::make_tuple(py::handle(PyExc_ValueError)), step_namespace);
  m.attr("StepSizeError") = step_size;
  static PyObject* step_size_type = step_size.inc_ref().ptr();
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const resode::non_finite_error& e) {
      // The exception carries the step (-1: not tied to a step) and its end time t.
      py::object error = py::handle(non_finite_type)(e.what());
      error.attr("step") = e.step();
      error.attr("t") = e.time();
      PyErr_SetObject(non_finite_type, error.ptr());
    } catch (const resode::step_size_error& e) {
      py::object error = py::handle(step_size_type)(e.what());
      error.attr("sample") = e.sample;
      error.attr("t") = e.t;
      error.attr("dt") = e.dt;
      error.attr("error") = e.error;
      PyErr_SetObject(step_size_type, error.ptr());
    }
  });

  // The kernel set the sweeps run with: "avx512", "avx2" or "baseline" (isa.hpp; RESODE_ISA
  // forces a lower one).
  m.attr("isa") = resode::isa_name(resode::active_isa());

  register_activations(m);
  register_adaptive(m);
  register_cde(m);
  register_driven(m);
  register_sweeps(m);
  register_threads(m);
  register_training(m);
  register_xla(m);
}
