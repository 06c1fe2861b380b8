// Shared by every binding file: pybind11 includes, the core, and the argument checks that turn
// NumPy arrays into validated, contiguous views of the core's scalar type.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <unistd.h>

#include "resode/resode.hpp"

namespace py = pybind11;

void register_activations(py::module_& m);
void register_adaptive(py::module_& m);
void register_cde(py::module_& m);
void register_driven(py::module_& m);
void register_sweeps(py::module_& m);
void register_threads(py::module_& m);
void register_training(py::module_& m);
void register_xla(py::module_& m);

namespace resode::bind {

using Shape = std::vector<index_t>;

inline std::string shape_string(const Shape& shape) {
  std::string s = "(";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    s += shape[i] < 0 ? std::string("*") : std::to_string(shape[i]);
    if (i + 1 < shape.size() || shape.size() == 1) s += shape.size() == 1 ? "," : ", ";
  }
  return s + ")";
}

inline Shape shape_of(const py::array& a) {
  return Shape(a.shape(), a.shape() + a.ndim());
}

// Is `a` a float32 (false) or float64 (true) array? TypeError for anything else.
inline bool is_float64(const py::array& a, const char* name) {
  const char kind = a.dtype().kind();
  if (kind == 'f' && a.itemsize() == 8) return true;
  if (kind == 'f' && a.itemsize() == 4) return false;
  throw py::type_error(std::string(name) + " must be a float32 or float64 array, got dtype " +
                       std::string(py::str(a.dtype())));
}

// Checks dtype == T exactly (TypeError otherwise), the shape (-1 = any extent) and finiteness,
// and returns a C-contiguous view (a copy only if `a` was not C-contiguous).
template <class T>
py::array_t<T, py::array::c_style> checked(const py::array& a, const char* name,
                                           const Shape& expected, bool finite = true) {
  if (a.dtype().kind() != 'f' || a.itemsize() != sizeof(T))
    throw py::type_error(std::string(name) + " must have dtype " +
                         (sizeof(T) == 8 ? "float64" : "float32") + " like X, got " +
                         std::string(py::str(a.dtype())));
  const Shape shape = shape_of(a);
  bool ok = shape.size() == expected.size();
  for (std::size_t i = 0; ok && i < shape.size(); ++i)
    ok = expected[i] < 0 || expected[i] == shape[i];
  if (!ok)
    throw std::invalid_argument(std::string(name) + " must have shape " + shape_string(expected) +
                                ", got " + shape_string(shape));
  auto out = py::array_t<T, py::array::c_style>::ensure(a);
  if (!out) throw py::error_already_set();
  if (finite && !all_finite(out.size(), out.data()))
    throw std::invalid_argument(std::string(name) + " contains NaN or Inf");
  return out;
}

// Outputs larger than this many elements are refused before anything is allocated (16 GiB of
// float64), and so is any output larger than the memory the OS reports as available.
constexpr double max_output_elements = 2147483648.0;  // 2**31

// The memory an output may take: the kernel's estimate of what can be allocated without
// swapping (MemAvailable of /proc/meminfo on Linux; free pages elsewhere), or the number of
// bytes in the environment variable RESODE_MEMORY_LIMIT_BYTES when set (the tests' handle).
// Reading /proc/meminfo costs about 10 us, as much as a whole small-batch flow: for outputs of
// at most small_output_bytes (`bytes`) it is not read (a failure there is NumPy's MemoryError).
constexpr double small_output_bytes = 64.0 * 1024 * 1024;

inline double available_memory_bytes(double bytes) {
  if (const char* limit = std::getenv("RESODE_MEMORY_LIMIT_BYTES"); limit && *limit)
    return std::strtod(limit, nullptr);
  if (bytes <= small_output_bytes) return 1e300;
  if (std::FILE* info = std::fopen("/proc/meminfo", "r")) {
    char line[256];
    double kib = -1;
    while (kib < 0 && std::fgets(line, sizeof line, info))
      if (std::sscanf(line, "MemAvailable: %lf kB", &kib) != 1) kib = -1;
    std::fclose(info);
    if (kib >= 0) return kib * 1024.0;
  }
#if defined(_SC_AVPHYS_PAGES) && defined(_SC_PAGESIZE)
  const long pages = sysconf(_SC_AVPHYS_PAGES), page = sysconf(_SC_PAGESIZE);
  if (pages > 0 && page > 0) return double(pages) * double(page);
#endif
  return 1e300;  // unknown: only the element limit applies
}

// Throws ValueError if an output of `elements` items of `itemsize` bytes is over the limits.
inline void check_output_size(double elements, std::size_t itemsize, const std::string& what) {
  const double bytes = elements * double(itemsize);
  if (elements > max_output_elements)
    throw std::invalid_argument(what + " would hold " + std::to_string((long long)elements) +
                                " elements, more than the limit of 2**31; use fewer steps or "
                                "samples, or resode.odeint on chunks of X");
  if (bytes > available_memory_bytes(bytes))
    throw std::invalid_argument(what + " would need " +
                                std::to_string((long long)(bytes / 1048576.0)) +
                                " MiB, more memory than is available");
}

// A view of `flat` (a 1-D array) starting at `offset` with `shape`; keeps `flat` alive.
template <class T>
py::array_t<T> view(py::array_t<T>& flat, index_t offset, const Shape& shape) {
  return py::array_t<T>(shape, flat.mutable_data() + offset, flat);
}

}  // namespace resode::bind
