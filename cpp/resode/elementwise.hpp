// Elementwise kernels over whole blocks (level-1 BLAS style), compiled per CPU like the GEMMs.
#pragma once
#include "config.hpp"

namespace resode {

// y[i] += alpha * x[i]
template <class T>
RESODE_CLONES void axpy(index_t n, T alpha, const T* x, T* y) {
  for (index_t i = 0; i < n; ++i) y[i] += alpha * x[i];
}

// y[i] = alpha * x[i]
template <class T>
RESODE_CLONES void scaled_copy(index_t n, T alpha, const T* x, T* y) {
  for (index_t i = 0; i < n; ++i) y[i] = alpha * x[i];
}

// Are all x[i] finite? x - x is 0 for a finite x and NaN for NaN or +-Inf; 16 independent
// partial sums let the loop vectorise (a single running sum would be a serial chain).
template <class T>
RESODE_CLONES bool all_finite(index_t n, const T* x) {
  constexpr int lanes = 16;
  T acc[lanes] = {};
  index_t i = 0;
  for (; i + lanes <= n; i += lanes)
    for (int l = 0; l < lanes; ++l) acc[l] += x[i + l] - x[i + l];
  for (; i < n; ++i) acc[0] += x[i] - x[i];
  T total = T(0);
  for (int l = 0; l < lanes; ++l) total += acc[l];
  return total == T(0);
}

}  // namespace resode
