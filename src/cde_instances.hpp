// The neural CDE sweeps (resode/cde.hpp) are compiled once, for float32 and float64, in
// cde_instances.cpp; register_cde.cpp sees only these declarations.
#pragma once
#include "resode/cde.hpp"
#include "resode/cde_adaptive.hpp"
#include "resode/cde_adjoint.hpp"

// RESODE_CDE_INSTANCES(extern, double) declares the instances, (, double) defines them.
#define RESODE_CDE_INSTANCES(EXTERN, T)                                                        \
  EXTERN template void resode::cde_solve<T>(const resode::CdeProblem<T>&, T*);                \
  EXTERN template void resode::cde_logits<T>(const resode::CdeProblem<T>&, T*);               \
  EXTERN template void resode::cde_vjp<T>(const resode::CdeProblem<T>&, const T*, T*, T*, T*, \
                                          T*);                                                 \
  EXTERN template double resode::cde_loss_and_grad<T>(const resode::CdeProblem<T>&,            \
                                                      const resode::Targets<T>&, double, T*,   \
                                                      T*, T*, T*, T*, T*, T*);          \
  EXTERN template std::vector<resode::CdeAdaptiveRecord> resode::cde_adaptive_grids<T>(       \
      const resode::CdeProblem<T>&, const resode::EmbeddedTableau&,                          \
      const resode::AdaptiveOptions&);                                                        \
  EXTERN template void resode::cde_adjoint_vjp<T>(const resode::CdeProblem<T>&, const T*, T*, \
                                                  T*, T*, T*);                                 \
  EXTERN template double resode::cde_adjoint_loss_and_grad<T>(                               \
      const resode::CdeProblem<T>&, const resode::Targets<T>&, double, T*, T*, T*, T*, T*, T*, \
      T*);

RESODE_CDE_INSTANCES(extern, double)
RESODE_CDE_INSTANCES(extern, float)
