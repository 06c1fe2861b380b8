// The optimisers' update rules, written once: resode.optim's step() and the epoch loop
// (epoch.hpp) both call these, so a per-batch loop from Python and a whole epoch in the core
// give bitwise the same parameters. PyTorch's rules (torch.optim.SGD without dampening, Adam
// without amsgrad), evaluated in the parameter's type T (float or double) with the scalar
// constants rounded to T once. Not dispatched per ISA: they are memory-bound, and a single
// compiled copy keeps the result independent of the CPU's kernel set.
#pragma once
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "config.hpp"

namespace resode {

enum class OptimizerKind { sgd, adam };

inline OptimizerKind parse_optimizer(const std::string& name) {
  if (name == "sgd") return OptimizerKind::sgd;
  if (name == "adam") return OptimizerKind::adam;
  throw std::invalid_argument("optimizer must be 'sgd' or 'adam'; got '" + name + "'");
}

struct OptimizerConfig {
  OptimizerKind kind = OptimizerKind::sgd;
  double momentum = 0.0;  // sgd
  bool nesterov = false;  // sgd
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;  // adam
  // Per-array state slots: sgd with momentum keeps buf, adam keeps m and v.
  int slots() const { return kind == OptimizerKind::adam ? 2 : momentum != 0.0 ? 1 : 0; }
};

// SGD: with momentum mu, buf = mu buf + g (buf = g on the first step), update = g + mu buf
// (Nesterov) or buf; without momentum update = g. Then p -= lr * update.
template <class T>
void sgd_update(const OptimizerConfig& o, double lr, bool first, index_t n, T* p, const T* g,
                T* buf) {
  const T rate = T(lr), mu = T(o.momentum);
  if (o.momentum == 0.0) {
    for (index_t i = 0; i < n; ++i) p[i] -= rate * g[i];
    return;
  }
  for (index_t i = 0; i < n; ++i) {
    buf[i] = first ? g[i] : mu * buf[i] + g[i];
    p[i] -= rate * (o.nesterov ? g[i] + mu * buf[i] : buf[i]);
  }
}

// Adam at step t >= 1 (bias correction):
//   m = b1 m + (1 - b1) g,  v = b2 v + (1 - b2) g^2,
//   p -= (lr / (1 - b1^t)) m / (sqrt(v) / sqrt(1 - b2^t) + eps).
template <class T>
void adam_update(const OptimizerConfig& o, double lr, std::int64_t t, index_t n, T* p, const T* g,
                 T* m, T* v) {
  const T b1 = T(o.beta1), b2 = T(o.beta2), one_b1 = T(1.0 - o.beta1), one_b2 = T(1.0 - o.beta2);
  const T step_size = T(lr / (1.0 - std::pow(o.beta1, double(t))));
  const T bias2_sqrt = T(std::sqrt(1.0 - std::pow(o.beta2, double(t))));
  const T eps = T(o.eps);
  for (index_t i = 0; i < n; ++i) {
    m[i] = b1 * m[i] + one_b1 * g[i];
    v[i] = b2 * v[i] + one_b2 * (g[i] * g[i]);
    p[i] -= step_size * (m[i] / (std::sqrt(v[i]) / bias2_sqrt + eps));
  }
}

// One update of one array. `state` holds o.slots() arrays of n values; `t` is the step number
// counted from 1 (this step included); `first` marks sgd's first step (its buffer is set to g).
template <class T>
void optimizer_update(const OptimizerConfig& o, double lr, std::int64_t t, bool first, index_t n,
                      T* p, const T* g, T* const* state) {
  if (o.kind == OptimizerKind::adam)
    adam_update(o, lr, t, n, p, g, state[0], state[1]);
  else
    sgd_update(o, lr, first, n, p, g, o.slots() ? state[0] : nullptr);
}

}  // namespace resode
