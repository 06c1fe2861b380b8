// The core's thread pool: OpenMP over blocks of samples when built with RESODE_OPENMP.
// Work is split into fixed blocks, and each thread takes one contiguous range of blocks
// (static schedule), so for a fixed thread count every sum is formed in the same order and
// results are bitwise reproducible. A run never uses more threads than it has blocks.
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

inline int get_num_threads() {
#ifdef _OPENMP
  const int n = detail::requested_threads().load();
  return n > 0 ? n : omp_get_max_threads();
#else
  return 1;
#endif
}

inline void set_num_threads(int n) {
  require(n >= 1, "num_threads must be >= 1");
  detail::requested_threads().store(n);
}

// Calls body(thread, block) for every block in [0, blocks), thread t < threads taking the
// contiguous range [t*blocks/threads, (t+1)*blocks/threads). An exception thrown by body is
// caught inside the parallel region and rethrown after it (the first one wins).
template <class Body>
void parallel_blocks(index_t blocks, int threads, Body&& body) {
  std::exception_ptr error;
  std::mutex error_mutex;
  auto run = [&](int t) {
    try {
      const index_t begin = blocks * t / threads, end = blocks * (t + 1) / threads;
      for (index_t b = begin; b < end; ++b) body(t, b);
    } catch (...) {
      std::lock_guard<std::mutex> lock(error_mutex);
      if (!error) error = std::current_exception();
    }
  };
#ifdef _OPENMP
  if (threads > 1) {
    // OpenMP may grant fewer threads than asked: each real thread then runs several of the
    // `threads` ranges, so every range (and its accumulator) still belongs to one thread.
#pragma omp parallel num_threads(threads)
    for (int t = omp_get_thread_num(); t < threads; t += omp_get_num_threads()) run(t);
  } else {
    run(0);
  }
#else
  run(0);
#endif
  if (error) std::rethrow_exception(error);
}

}  // namespace resode
