// The core's OpenMP thread count.
#include "bindings.hpp"

void register_threads(py::module_& m) {
  m.def("set_num_threads", &resode::set_num_threads, py::arg("n"),
        "Number of OpenMP threads the sweeps use (default: OMP_NUM_THREADS or all cores).");
  m.def("get_num_threads", &resode::get_num_threads);
#ifdef _OPENMP
  m.attr("openmp") = true;
#else
  m.attr("openmp") = false;
#endif
}
