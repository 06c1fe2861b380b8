// Paths of a neural CDE: irregularly sampled series U (N, L, C) observed at times t (L,) shared
// or (N, L) per sample, with NaN for missing values and NaN padding after a sample's end.
//   length     L_i = 1 + the last row of sample i with at least one non-NaN channel
//   fill       within rows 0..L_i-1 a missing value of channel c is the linear interpolation
//              in time between channel c's nearest observations; before the first observation
//              it is the first observed value, after the last one the last (torchcde's fill).
//              Each filled value is x_r = (1 - lam) U_p + lam U_q: linear in U (FillWeight).
//   slopes     d_k = (x_{k+1} - x_k) / (t_{k+1} - t_k), k = 0..L_i-2
//   dX/dt      on [t_k, t_{k+1}] at u = (tau - t_k) / (t_{k+1} - t_k):
//                linear: d_k
//                cubic:  torchcde's Hermite cubic with backward differences, whose knot
//                        derivatives are m_k = d_{k-1} (m_0 = d_0) and m_{k+1} = d_k:
//                        (1 - w) m_k + w m_{k+1},  w = 4u - 3u^2
//              i.e. always alpha d_{prev(k)} + beta d_k (PathWeights), so the transpose map from
//              a dX/dt cotangent goes to the slopes, then to x (d_k's two ends), then to U.
#pragma once
#include <cmath>
#include <string>
#include <vector>

#include "config.hpp"
#include "errors.hpp"

namespace resode {

enum class Interpolation { linear, cubic };

inline Interpolation parse_interpolation(const std::string& name) {
  if (name == "linear") return Interpolation::linear;
  if (name == "cubic") return Interpolation::cubic;
  throw std::invalid_argument("interpolation must be 'linear' or 'cubic'; got '" + name + "'");
}

// 1 + the last row of one sample's U (L rows of C channels, row-major) holding a non-NaN value;
// 0 when every value is NaN.
template <class T>
index_t observed_length(const T* U, index_t L, index_t C) {
  for (index_t r = L; r > 0; --r)
    for (index_t c = 0; c < C; ++c)
      if (!std::isnan(U[(r - 1) * C + c])) return r;
  return 0;
}

// x_r = (1 - lam) U_p + lam U_q for one channel (p = q, lam = 0 where U_r is observed or the
// row lies before the first or after the last observation).
struct FillWeight {
  index_t p = 0, q = 0;
  double lam = 0.0;
};

// The fill of channel c of one sample: w[r] for r < len (U row-major (L, C), times t (len,)).
// Returns false when the channel has no observation in rows 0..len-1.
template <class T>
bool fill_weights(const T* U, index_t C, index_t c, index_t len, const double* t, FillWeight* w) {
  index_t prev = -1;  // the last observed row so far
  for (index_t r = 0; r < len; ++r) {
    if (std::isnan(U[r * C + c])) continue;
    w[r] = {r, r, 0.0};
    if (prev < 0) {
      for (index_t m = 0; m < r; ++m) w[m] = {r, r, 0.0};  // before the first observation
    } else {
      for (index_t m = prev + 1; m < r; ++m)
        w[m] = {prev, r, (t[m] - t[prev]) / (t[r] - t[prev])};
    }
    prev = r;
  }
  if (prev < 0) return false;
  for (index_t m = prev + 1; m < len; ++m) w[m] = {prev, prev, 0.0};  // after the last
  return true;
}

// The filled value of row r.
template <class T>
T filled_value(const T* U, index_t C, index_t c, const FillWeight& w) {
  const double up = double(U[w.p * C + c]);
  if (w.p == w.q) return T(up);
  return T((1.0 - w.lam) * up + w.lam * double(U[w.q * C + c]));
}

// dU += the transpose of the fill applied to xbar_r (one channel, one row).
template <class T>
void fill_transpose(index_t C, index_t c, const FillWeight& w, T xbar, T* dU) {
  if (w.p == w.q) {
    dU[w.p * C + c] += xbar;
    return;
  }
  dU[w.p * C + c] += T((1.0 - w.lam) * double(xbar));
  dU[w.q * C + c] += T(w.lam * double(xbar));
}

// dX/dt at time tau of path interval k = alpha d_prev + beta d_k (see the top of this file).
struct PathWeights {
  index_t prev = 0;
  double alpha = 0.0, beta = 1.0;
};

inline PathWeights path_weights(Interpolation interp, index_t k, double t_k, double t_next,
                                double tau) {
  if (interp == Interpolation::linear) return {k, 0.0, 1.0};
  const double u = (tau - t_k) / (t_next - t_k);
  const double w = u * (4.0 - 3.0 * u);
  return {k > 0 ? k - 1 : 0, 1.0 - w, w};
}

}  // namespace resode
