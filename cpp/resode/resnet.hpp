// The residual network x^{k+1} = x^k + h f_k(x^k), k = 0..L-1: exactly one explicit Euler step
// per layer with dt = h, each layer its own piece of parameters. All sweeps of sweep.hpp apply.
#pragma once
#include "stepper.hpp"

namespace resode {

template <class T>
Dynamics<T> resnet_dynamics(const FieldParams<T>& field, Activation activation, T h) {
  require(h > T(0), "h must be > 0");
  Dynamics<T> dyn;
  dyn.field = field;
  dyn.activation = activation;
  dyn.tab = tableau(Method::euler);
  dyn.substeps = 1;
  dyn.dt = h;
  return dyn;
}

}  // namespace resode
