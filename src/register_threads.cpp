// The core's OpenMP thread count.
#include "bindings.hpp"

void register_threads(py::module_& m) {
  // Each docstring starts with CPython's text signature ("name(args)\n--\n\n"), which becomes
  // the function's __text_signature__ (inspect.signature, stubtest, Sphinx), so pybind11's
  // own signature line, which numpydoc would read as the summary, is left out.
  py::options options;
  options.disable_function_signatures();
  m.def("set_num_threads", &resode::set_num_threads, py::arg("n"), R"doc(set_num_threads(n)
--

Set the number of OpenMP threads the sweeps use.

The default is OMP_NUM_THREADS or all cores; a lower OpenMP limit of the calling thread
(OMP_NUM_THREADS, threadpoolctl) still caps it.

Parameters
----------
n : int
    The number of threads, >= 1.

Raises
------
ValueError
    If ``n < 1``.

Examples
--------
>>> import resode
>>> before = resode.get_num_threads()
>>> resode.set_num_threads(1)
>>> resode.get_num_threads()
1
>>> resode.set_num_threads(before)
)doc");
  m.def("get_num_threads", &resode::get_num_threads, R"doc(get_num_threads()
--

Return the number of OpenMP threads the next sweep uses.

Returns
-------
int
    The value of :func:`set_num_threads` (default: OMP_NUM_THREADS or all cores), capped
    by OpenMP's limit of the calling thread.

Examples
--------
>>> import resode
>>> resode.get_num_threads() >= 1
True
)doc");
#ifdef _OPENMP
  m.attr("openmp") = true;
#else
  m.attr("openmp") = false;
#endif
  // Off: the generic kernels, for tests that compare them with the small-batch kernels
  // (small_batch.hpp) bit for bit. Returns the previous setting.
  m.def("_set_small_batch_kernels", &resode::set_small_batch_enabled, py::arg("on"),
        R"doc(_set_small_batch_kernels(on)
--

Use the small-batch kernels (default) or the generic ones; return the previous setting.
)doc");
}
