// Elementwise kernels over whole blocks (level-1 BLAS style), compiled per CPU like the GEMMs.
#pragma once
#include "config.hpp"
#include "isa.hpp"

namespace resode {

// y[i] += alpha * x[i]
template <class T>
void axpy(index_t n, T alpha, const T* x, T* y) {
  dispatch([&]() RESODE_KERNEL {
    for (index_t i = 0; i < n; ++i) y[i] += alpha * x[i];
  });
}

// y[i] = alpha * x[i]
template <class T>
void scaled_copy(index_t n, T alpha, const T* x, T* y) {
  dispatch([&]() RESODE_KERNEL {
    for (index_t i = 0; i < n; ++i) y[i] = alpha * x[i];
  });
}

// out[i] = base_scale * base[i] + sum_{m < terms} coef[m] * vec[m][i], terms <= 4, in one pass
// (a Runge-Kutta stage input, a step's update, or a stage cotangent). out may alias base.
template <class T>
void combine(index_t n, T base_scale, const T* base, int terms, const T* coef,
                    const T* const* vec, T* out) {
  dispatch([&]() RESODE_KERNEL {
    switch (terms) {
      case 0:
        for (index_t i = 0; i < n; ++i) out[i] = base_scale * base[i];
        return;
      case 1:
        for (index_t i = 0; i < n; ++i) out[i] = base_scale * base[i] + coef[0] * vec[0][i];
        return;
      case 2:
        for (index_t i = 0; i < n; ++i)
          out[i] = base_scale * base[i] + coef[0] * vec[0][i] + coef[1] * vec[1][i];
        return;
      case 3:
        for (index_t i = 0; i < n; ++i)
          out[i] = base_scale * base[i] + coef[0] * vec[0][i] + coef[1] * vec[1][i] +
                   coef[2] * vec[2][i];
        return;
      default:
        for (index_t i = 0; i < n; ++i)
          out[i] = base_scale * base[i] + coef[0] * vec[0][i] + coef[1] * vec[1][i] +
                   coef[2] * vec[2][i] + coef[3] * vec[3][i];
        return;
    }
  });
}

// Collects the nonzero terms of a combine() call.
template <class T>
struct Terms {
  int count = 0;
  T coef[4];
  const T* vec[4];
  void add(double c, const T* v) {
    if (c != 0.0) coef[count] = T(c), vec[count] = v, ++count;
  }
};

// Are all x[i] finite? x - x is 0 for a finite x and NaN for NaN or +-Inf; 16 independent
// partial sums let the loop vectorise (a single running sum would be a serial chain).
template <class T>
bool all_finite(index_t n, const T* x) {
  return dispatch([&]() RESODE_KERNEL {
    constexpr int lanes = 16;
    T acc[lanes] = {};
    index_t i = 0;
    for (; i + lanes <= n; i += lanes)
      for (int l = 0; l < lanes; ++l) acc[l] += x[i + l] - x[i + l];
    for (; i < n; ++i) acc[0] += x[i] - x[i];
    T total = T(0);
    for (int l = 0; l < lanes; ++l) total += acc[l];
    return total == T(0);
  });
}

}  // namespace resode
