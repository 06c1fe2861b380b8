// The core's sweeps (resode/sweep.hpp, and the adaptive ones of resode/adaptive.hpp, which share
// their field kernels) are compiled once per dtype, each in its own file
// (sweeps_float64.cpp, sweeps_float32.cpp), so a 2-core build compiles the two at once; the
// binding files see only these declarations and instantiate nothing of the sweeps themselves.
#pragma once
#include "resode/resode.hpp"

// RESODE_SWEEP_INSTANCES(extern, double) declares the instances, (, double) defines them.
#define RESODE_SWEEP_INSTANCES(EXTERN, T)                                                    \
  EXTERN template void resode::trajectory<T>(const resode::Problem<T>&, T*);                \
  EXTERN template void resode::final_state<T>(const resode::Problem<T>&, T*);               \
  EXTERN template void resode::logits<T>(const resode::Problem<T>&, T*);                    \
  EXTERN template double resode::loss_and_grad<T>(                                           \
      const resode::Problem<T>&, const resode::Targets<T>&, const resode::GradientOptions&,   \
      T*, T*, T*, resode::PredictionStats*);                                                  \
  EXTERN template void resode::forward_states<T>(const resode::Problem<T>&, resode::index_t,  \
                                                 bool, T*, T*);                                \
  EXTERN template void resode::forward_stage_tape<T>(const resode::Problem<T>&, bool, T*, T*); \
  EXTERN template void resode::vjp_from_states<T>(const resode::Problem<T>&, const T*,         \
                                                  resode::index_t, bool, const T*, bool, T*,   \
                                                  T*);                                         \
  EXTERN template void resode::vjp<T>(const resode::Problem<T>&, const T*,                  \
                                      const resode::GradientOptions&, T*, T*);               \
  EXTERN template void resode::adaptive_solve<T>(const resode::AdaptiveProblem<T>&, T*, T*,   \
                                                 std::vector<resode::SampleRecord>&, T*);     \
  EXTERN template double resode::replay_sweep<T>(                                             \
      const resode::AdaptiveProblem<T>&, const std::vector<std::vector<double>>&,             \
      const resode::Targets<T>*, const T*, resode::index_t, T*, T*, T*, T*, T*, T*);          \
  EXTERN template double resode::adaptive_adjoint_sweep<T>(                                   \
      const resode::AdaptiveProblem<T>&, const resode::Targets<T>*, const T*, T*, T*, T*, T*, \
      std::vector<resode::SampleRecord>&);                                                     \
  EXTERN template double resode::adaptive_loss_and_grad<T>(                                   \
      const resode::AdaptiveProblem<T>&, const std::vector<std::vector<double>>&,             \
      std::vector<resode::SampleRecord>&, const resode::Targets<T>&,                          \
      const resode::GradientOptions&, T*, T*, T*);

RESODE_SWEEP_INSTANCES(extern, double)
RESODE_SWEEP_INSTANCES(extern, float)
