// The L1 bound on the controls (fit's `bound`): each piece's field parameters together have
// an L1 norm of at most `bound`; the L-infinity norm over pieces (time) follows.
#pragma once
#include <cmath>
#include <limits>
#include <utility>
#include <vector>

#include "config.hpp"

namespace resode {

// tensors: (data, size) of arrays whose leading axis is the K pieces (size = K * per_piece).
// s_k = sum over the tensors of sum |a_k| (in double, in order); a piece with s_k > bound is
// multiplied by bound / s_k * (1 - 8 eps): a hair less, so that the bound holds after rounding.
template <class T>
void bound_l1_per_piece(const std::vector<std::pair<T*, index_t>>& tensors, index_t pieces,
                        double bound) {
  std::vector<double> sums(pieces, 0.0);
  for (auto [a, size] : tensors) {
    const index_t per_piece = size / pieces;
    for (index_t k = 0; k < pieces; ++k)
      for (index_t i = 0; i < per_piece; ++i) sums[k] += std::abs(double(a[k * per_piece + i]));
  }
  const double shrink = 1.0 - 8.0 * double(std::numeric_limits<T>::epsilon());
  for (index_t k = 0; k < pieces; ++k) {
    if (!(sums[k] > bound)) continue;
    const T factor = T(bound / sums[k] * shrink);
    for (auto [a, size] : tensors) {
      const index_t per_piece = size / pieces;
      for (index_t i = 0; i < per_piece; ++i) a[k * per_piece + i] *= factor;
    }
  }
}

}  // namespace resode
