// The core's thread pool: OpenMP over blocks of samples when built with RESODE_OPENMP.
#pragma once
#include <algorithm>
#include <atomic>
#include <exception>
#include <mutex>

#include "config.hpp"
#include "errors.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace resode {

namespace detail {
inline std::atomic<int>& requested_threads() {
  static std::atomic<int> n{0};  // 0: OpenMP's default (OMP_NUM_THREADS or the core count)
  return n;
}
}  // namespace detail

// Threads the next sweep uses: set_num_threads' value, capped by OpenMP's own setting of the
// calling thread (OMP_NUM_THREADS, omp_set_num_threads, threadpoolctl's limits).
inline int get_num_threads() {
#ifdef _OPENMP
  const int n = detail::requested_threads().load();
  return n > 0 ? std::min(n, omp_get_max_threads()) : omp_get_max_threads();
#else
  return 1;
#endif
}

// Sets resode's thread count (and OpenMP's, for the calling thread, so threadpoolctl reports
// it).
inline void set_num_threads(int n) {
  require(n >= 1, "num_threads must be >= 1");
  detail::requested_threads().store(n);
#ifdef _OPENMP
  omp_set_num_threads(n);
#endif
}

// Calls body(thread, item) for every item in [0, items) on `threads` threads; items are handed
// out one at a time as threads become free (dynamic schedule), so a thread that the OS
// descheduled does not hold the others up. Results must not depend on which thread ran an item
// (the sweeps give each item its own accumulator). An exception thrown by body is caught inside
// the parallel region and rethrown after it (the first one wins).
template <class Body>
void parallel_for(index_t items, int threads, Body&& body) {
  std::exception_ptr error;
  std::mutex error_mutex;
  auto run = [&](int t, index_t item) {
    try {
      body(t, item);
    } catch (...) {
      std::lock_guard<std::mutex> lock(error_mutex);
      if (!error) error = std::current_exception();
    }
  };
#ifdef _OPENMP
  if (threads > 1 && items > 1) {
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
    for (index_t item = 0; item < items; ++item) run(omp_get_thread_num(), item);
  } else {
    for (index_t item = 0; item < items; ++item) run(0, item);
  }
#else
  (void)threads;
  for (index_t item = 0; item < items; ++item) run(0, item);
#endif
  if (error) std::rethrow_exception(error);
}

}  // namespace resode
