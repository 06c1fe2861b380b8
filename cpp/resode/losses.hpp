// The readout z = x P^T + c and the data losses on it, per block of samples.
//   cross_entropy: (1/N) sum_i [ logsumexp(z_i) - z_{i, y_i} ],   dl/dz_i = (softmax(z_i) - e_{y_i})/N
//   mse:           (1/(N C)) sum_{i,j} (z_ij - y_ij)^2,            dl/dz_ij = 2 (z_ij - y_ij)/(N C)
// The 1/N (or 1/(N C)) makes per-block contributions add up to the mean over the whole data set.
// The readout may be clamped (ReadoutKind::hardtanh, leia's MSE model): z = clamp(x P^T + c, -1, 1).
#pragma once
#include <cmath>
#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "errors.hpp"
#include "fields.hpp"
#include "linalg.hpp"

namespace resode {

enum class LossKind { cross_entropy, mse };

inline LossKind parse_loss(const std::string& name) {
  if (name == "cross_entropy") return LossKind::cross_entropy;
  if (name == "mse") return LossKind::mse;
  throw std::invalid_argument("loss must be 'cross_entropy' or 'mse'; got '" + name + "'");
}

enum class ReadoutKind { linear, hardtanh };

inline ReadoutKind parse_readout(const std::string& name) {
  if (name == "linear") return ReadoutKind::linear;
  if (name == "hardtanh") return ReadoutKind::hardtanh;
  throw std::invalid_argument("readout must be 'linear' or 'hardtanh'; got '" + name + "'");
}

template <class T>
struct Readout {
  index_t classes = 0;
  const T* P = nullptr;  // (classes, D)
  const T* c = nullptr;  // (classes,)
  ReadoutKind kind = ReadoutKind::linear;
};

// Targets of the whole data set: integer labels (N,) for cross_entropy, values (N, C) for mse.
template <class T>
struct Targets {
  LossKind kind = LossKind::cross_entropy;
  index_t count = 0;                  // N, the number of samples the mean runs over
  const std::int64_t* labels = nullptr;
  const T* values = nullptr;
};

// z (C x n) = P x + c 1^T for a feature-major block x (D x n), clamped to [-1, 1] for hardtanh.
template <class T>
void readout(const Readout<T>& r, index_t n, index_t D, const T* x, T* z) {
  detail::affine(r.classes, D, n, r.P, r.c, x, z);
  if (r.kind == ReadoutKind::hardtanh)
    for (index_t i = 0; i < r.classes * n; ++i) z[i] = std::clamp(z[i], T(-1), T(1));
}

// Back through the clamp of a hardtanh readout: zbar = 0 where the clamp is flat. Its derivative
// is [-1 < u < 1] for u = P x + c (PyTorch's hardtanh backward, 0 at u = +-1 too), and the
// clamped z (C x n) is +-1 exactly where it is 0, so the mask is read off z: no copy of u.
template <class T>
void readout_clamp_vjp(const Readout<T>& r, index_t n, const T* z, T* zbar) {
  if (r.kind != ReadoutKind::hardtanh) return;
  for (index_t i = 0; i < r.classes * n; ++i)
    if (!(std::abs(z[i]) < T(1))) zbar[i] = T(0);
}

namespace detail {

// Samples per chunk of cross_entropy_chunk: its per-sample maxima and sums live on the stack.
constexpr index_t loss_chunk = 64;

// The cross-entropy terms of m <= loss_chunk samples [first, first + m) with logits z (C x ld),
// scaled by `scale` and added to `total` in sample order (the running sum of the whole block, so
// chunking does not change its association); zbar (C x ld), when not null, receives
// grad_scale * (softmax - e_label). Per sample s:
//   zmax_s = max_j z_js,  sum_s = sum_j exp(z_js - zmax_s)  (j in order),
//   term_s = zmax_s + log(sum_s) - z_{y_s, s}.
// The maxima, exponentials and sums run along the rows of z (contiguous in s), so they vectorise
// (one sample at a time took 9% of a D = 2 ResNet step); the log and the running total stay
// sequential in s, the same association as a sample-by-sample loop. exp is the inlined
// exp(y <= 0) of activations.hpp, evaluated twice per entry (for the sums, then for the
// softmax) by two loops compiled alike, so both give the same values. Compiled per kernel set,
// its polynomial gets fmas with AVX2 and AVX-512: the loss's last bits may differ between
// kernel sets (as every other kernel's do), not between thread counts or block sizes.
template <class T>
void cross_entropy_chunk(const Targets<T>& t, index_t C, index_t first, index_t m, index_t ld,
                         const T* z, T* zbar, double grad_scale, double scale, double& total) {
  double zmax[loss_chunk], sum[loss_chunk];
  dispatch([&]() RESODE_KERNEL {
    for (index_t s = 0; s < m; ++s) zmax[s] = double(z[s]);
    for (index_t j = 1; j < C; ++j)
      for (index_t s = 0; s < m; ++s) zmax[s] = std::max(zmax[s], double(z[j * ld + s]));
    for (index_t s = 0; s < m; ++s) sum[s] = 0.0;
    for (index_t j = 0; j < C; ++j)
      for (index_t s = 0; s < m; ++s) sum[s] += exp_nonpositive(double(z[j * ld + s]) - zmax[s]);
  });
  const std::int64_t* label = t.labels + first;
  for (index_t s = 0; s < m; ++s)
    total += (zmax[s] + std::log(sum[s]) - double(z[label[s] * ld + s])) * scale;
  if (zbar)
    dispatch([&]() RESODE_KERNEL {
      for (index_t j = 0; j < C; ++j)
        for (index_t s = 0; s < m; ++s) {
          const double softmax = exp_nonpositive(double(z[j * ld + s]) - zmax[s]) / sum[s];
          zbar[j * ld + s] = T(grad_scale * (softmax - (label[s] == j ? 1.0 : 0.0)));
        }
    });
}
}  // namespace detail

// Loss contribution of samples [first, first + n) with logits z (C x ld, the first n columns
// real samples); when zbar (C x ld) is not null it receives weight * d(contribution)/dz, and 0
// in the padding columns n..ld. Accumulated in double for float32 too.
template <class T>
double block_loss(const Targets<T>& t, index_t C, index_t first, index_t n, index_t ld,
                  const T* z, T* zbar, double weight) {
  double total = 0.0;
  if (zbar)
    for (index_t j = 0; j < C; ++j) std::fill(zbar + j * ld + n, zbar + (j + 1) * ld, T(0));
  if (t.kind == LossKind::cross_entropy) {
    const double scale = 1.0 / double(t.count);
    for (index_t begin = 0; begin < n; begin += detail::loss_chunk) {
      const index_t m = std::min(detail::loss_chunk, n - begin);
      detail::cross_entropy_chunk(t, C, first + begin, m, ld, z + begin,
                                  zbar ? zbar + begin : nullptr, weight * scale, scale, total);
    }
  } else {
    const double scale = 1.0 / (double(t.count) * double(C));
    for (index_t s = 0; s < n; ++s)
      for (index_t j = 0; j < C; ++j) {
        const double r = double(z[j * ld + s]) - double(t.values[(first + s) * C + j]);
        total += r * r * scale;
        if (zbar) zbar[j * ld + s] = T(weight * 2.0 * scale * r);
      }
  }
  return total;
}

// What a training history needs of a batch's predictions, read off the logits its loss already
// computed (no extra sweep), summed over the batch's samples s:
//   cross_entropy: correct = #{s : argmax_j z_sj = y_s} (the first maximum, as NumPy's argmax)
//   mse:           sse_j = sum_s (z_sj - y_sj)^2 per output j; with one output also
//                  correct = #{s : (z_s > 0) = (y_s > 0)} (the sign agreement of +-1 targets)
// R^2 = 1 - sse_j / sum_s (y_sj - mean_j)^2 needs the targets' spread, which the caller knows
// (an epoch visits every sample once). Counts are integers and the sums run in block order,
// so the values do not depend on the thread count.
struct PredictionStats {
  std::int64_t correct = 0;
  std::vector<double> sse;  // (classes,) for mse, empty for cross_entropy

  void add(const PredictionStats& o) {
    correct += o.correct;
    if (sse.size() < o.sse.size()) sse.resize(o.sse.size(), 0.0);
    for (std::size_t j = 0; j < o.sse.size(); ++j) sse[j] += o.sse[j];
  }
};

// The statistics of samples [first, first + n) with logits z (C x ld) added to `stats`.
template <class T>
void block_prediction_stats(const Targets<T>& t, index_t C, index_t first, index_t n, index_t ld,
                            const T* z, PredictionStats& stats) {
  if (t.kind == LossKind::cross_entropy) {
    for (index_t s = 0; s < n; ++s) {
      index_t best = 0;
      for (index_t j = 1; j < C; ++j)
        if (z[j * ld + s] > z[best * ld + s]) best = j;
      stats.correct += best == index_t(t.labels[first + s]) ? 1 : 0;
    }
    return;
  }
  if (stats.sse.size() < std::size_t(C)) stats.sse.resize(std::size_t(C), 0.0);
  for (index_t j = 0; j < C; ++j)
    for (index_t s = 0; s < n; ++s) {
      const double r = double(z[j * ld + s]) - double(t.values[(first + s) * C + j]);
      stats.sse[std::size_t(j)] += r * r;
    }
  if (C == 1)
    for (index_t s = 0; s < n; ++s)
      stats.correct += (z[s] > T(0)) == (t.values[first + s] > T(0)) ? 1 : 0;
}

// Back through the readout: xbar (+)= P^T zbar, dP += zbar x^T, dc += zbar 1, the parameter
// sums over the first m of the n columns (the others are padding with zbar = 0).
template <class T>
void readout_vjp(const Readout<T>& r, index_t n, index_t m, index_t D, const T* x, const T* zbar,
                 T* xbar, bool accumulate, T* dP, T* dc) {
  gemm(D, n, r.classes, T(1), r.P, 1, D, zbar, n, xbar, n, accumulate);
  detail::affine_param_grads(r.classes, D, m, n, T(1), zbar, x, dP, dc);
}

}  // namespace resode
