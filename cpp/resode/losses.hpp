// The readout z = x P^T + c and the data losses on it, per block of samples.
//   cross_entropy: (1/N) sum_i [ logsumexp(z_i) - z_{i, y_i} ],   dl/dz_i = (softmax(z_i) - e_{y_i})/N
//   mse:           (1/(N C)) sum_{i,j} (z_ij - y_ij)^2,            dl/dz_ij = 2 (z_ij - y_ij)/(N C)
// The 1/N (or 1/(N C)) makes per-block contributions add up to the mean over the whole data set.
#pragma once
#include <cmath>
#include <cstdint>
#include <string>

#include "errors.hpp"
#include "linalg.hpp"

namespace resode {

enum class LossKind { cross_entropy, mse };

inline LossKind parse_loss(const std::string& name) {
  if (name == "cross_entropy") return LossKind::cross_entropy;
  if (name == "mse") return LossKind::mse;
  throw std::invalid_argument("loss must be 'cross_entropy' or 'mse'; got '" + name + "'");
}

template <class T>
struct Readout {
  index_t classes = 0;
  const T* P = nullptr;  // (classes, D)
  const T* c = nullptr;  // (classes,)
};

// Targets of the whole data set: integer labels (N,) for cross_entropy, values (N, C) for mse.
template <class T>
struct Targets {
  LossKind kind = LossKind::cross_entropy;
  index_t count = 0;                  // N, the number of samples the mean runs over
  const std::int64_t* labels = nullptr;
  const T* values = nullptr;
};

// z (n, C) = x (n, D) P^T + c.
template <class T>
void readout(const Readout<T>& r, index_t n, index_t D, const T* x, T* z) {
  gemm_nt(n, r.classes, D, x, D, r.P, z, r.classes);
  for (index_t i = 0; i < n; ++i)
    for (index_t j = 0; j < r.classes; ++j) z[i * r.classes + j] += r.c[j];
}

// Loss contribution of samples [first, first + n) with logits z; when zbar is not null it
// receives weight * d(contribution)/dz. Accumulated in double for float32 models too.
template <class T>
double block_loss(const Targets<T>& t, index_t C, index_t first, index_t n, const T* z, T* zbar,
                  double weight) {
  double total = 0.0;
  if (t.kind == LossKind::cross_entropy) {
    const double scale = 1.0 / double(t.count);
    for (index_t i = 0; i < n; ++i) {
      const T* zi = z + i * C;
      const std::int64_t label = t.labels[first + i];
      double zmax = zi[0];
      for (index_t j = 1; j < C; ++j) zmax = std::max(zmax, double(zi[j]));
      double sum = 0.0;
      for (index_t j = 0; j < C; ++j) sum += std::exp(double(zi[j]) - zmax);
      total += (zmax + std::log(sum) - double(zi[label])) * scale;
      if (zbar) {
        for (index_t j = 0; j < C; ++j) {
          const double softmax = std::exp(double(zi[j]) - zmax) / sum;
          zbar[i * C + j] = T(weight * scale * (softmax - (j == label ? 1.0 : 0.0)));
        }
      }
    }
  } else {
    const double scale = 1.0 / (double(t.count) * double(C));
    for (index_t i = 0; i < n; ++i)
      for (index_t j = 0; j < C; ++j) {
        const double r = double(z[i * C + j]) - double(t.values[(first + i) * C + j]);
        total += r * r * scale;
        if (zbar) zbar[i * C + j] = T(weight * 2.0 * scale * r);
      }
  }
  return total;
}

// Back through the readout: xbar (+)= zbar P, dP += zbar^T x, dc += sum_i zbar_i.
template <class T>
void readout_vjp(const Readout<T>& r, index_t n, index_t D, const T* x, const T* zbar, T* xbar,
                 bool accumulate, T* dP, T* dc) {
  gemm_nn(n, r.classes, D, zbar, r.P, xbar, accumulate);
  gemm_tn_acc(n, r.classes, D, T(1), zbar, x, D, dP);
  column_sums_acc(n, r.classes, T(1), zbar, dc);
}

}  // namespace resode
