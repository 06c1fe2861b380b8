// Which instruction set the hot kernels run with, and how a kernel is compiled once per set.
//
// A portable build compiles every hot kernel three times: for baseline x86-64 (SSE2), for
// x86-64-v3 (AVX2 + FMA) and for x86-64-v4 (AVX-512 F/VL/BW/DQ). The set is chosen once, at
// first use, from the CPU; the environment variable RESODE_ISA=avx2|baseline forces a lower one
// (RESODE_DISABLE_AVX512=1 is an alias of RESODE_ISA=avx2), so the lower kernel sets can be
// tested and measured on any machine. A set the CPU lacks is never chosen, whatever is asked.
//
// How a kernel gets its three copies: its body is an always-inline lambda handed to dispatch(),
// which calls it through run_avx512 / run_avx2 / run_baseline. Those three are the only functions
// that carry a target attribute; the lambda is inlined into each and so compiled (and
// vectorised) three times, each copy with its own instruction set. Helpers the body calls must be
// RESODE_INLINE for the same reason (config.hpp).
#pragma once
#include <cstdlib>
#include <cstring>

#include "config.hpp"

namespace resode {

enum class Isa { baseline = 0, avx2 = 1, avx512 = 2 };

inline const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::avx512: return "avx512";
    case Isa::avx2: return "avx2";
    case Isa::baseline: break;
  }
  return "baseline";
}

// The best set this CPU (and OS) runs; in a build without dispatch, the set the whole build
// targets (e.g. -march=native).
inline Isa detected_isa() {
#if RESODE_DISPATCH
  // The kernels are compiled for the whole x86-64-v3 / -v4 levels (BMI1/2, LZCNT, MOVBE and
  // F16C come with AVX2 there), so a CPU (or a VM's masked CPUID) must report every feature.
  static const Isa best = [] {
    __builtin_cpu_init();
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12
    const bool v3 = __builtin_cpu_supports("x86-64-v3");
    const bool v4 = v3 && __builtin_cpu_supports("x86-64-v4");
#else
    bool v3 = __builtin_cpu_supports("avx") && __builtin_cpu_supports("avx2") &&
              __builtin_cpu_supports("fma") && __builtin_cpu_supports("bmi") &&
              __builtin_cpu_supports("bmi2");
#if !defined(__clang__)  // names Clang 14 does not know
    v3 = v3 && __builtin_cpu_supports("f16c") && __builtin_cpu_supports("movbe") &&
         __builtin_cpu_supports("lzcnt");
#endif
    const bool v4 = v3 && __builtin_cpu_supports("avx512f") &&
                    __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw") &&
                    __builtin_cpu_supports("avx512dq");
#endif
    return v4 ? Isa::avx512 : v3 ? Isa::avx2 : Isa::baseline;
  }();
  return best;
#elif defined(__AVX512F__) && defined(__AVX512VL__) && defined(__AVX512BW__) && \
    defined(__AVX512DQ__)
  return Isa::avx512;  // one copy of every kernel, compiled for the target's AVX-512
#elif defined(__AVX2__) && defined(__FMA__)
  return Isa::avx2;
#else
  return Isa::baseline;
#endif
}

// The set RESODE_ISA (or RESODE_DISABLE_AVX512) asks for; avx512 (no limit) when unset or not
// one of the names (resode/__init__.py warns about those).
inline Isa requested_isa() {
  const char* name = std::getenv("RESODE_ISA");
  if (name && std::strcmp(name, "baseline") == 0) return Isa::baseline;
  if (name && std::strcmp(name, "avx2") == 0) return Isa::avx2;
  const char* off = std::getenv("RESODE_DISABLE_AVX512");
  if (off && *off && std::strcmp(off, "0") != 0) return Isa::avx2;
  return Isa::avx512;
}

// The set the kernels run with: the lower of the detected and the requested one. Fixed at first
// use (the environment is read once).
inline Isa active_isa() {
  static const Isa isa = Isa(std::min(int(detected_isa()), int(requested_isa())));
  return isa;
}

inline bool isa_at_least(Isa isa) { return int(active_isa()) >= int(isa); }

namespace detail {
template <class F>
RESODE_AVX512 auto run_avx512(F& body) {
  return body();
}
template <class F>
RESODE_AVX2 auto run_avx2(F& body) {
  return body();
}
template <class F>
auto run_baseline(F& body) {
  return body();
}
}  // namespace detail

// body() compiled for, and run with, the active instruction set. body must be a lambda marked
// RESODE_KERNEL (always inline), e.g.
//   dispatch([&]() RESODE_KERNEL { for (index_t i = 0; i < n; ++i) y[i] += a * x[i]; });
template <class F>
auto dispatch(F&& body) {
#if RESODE_DISPATCH
  switch (active_isa()) {
    case Isa::avx512: return detail::run_avx512(body);
    case Isa::avx2: return detail::run_avx2(body);
    case Isa::baseline: break;
  }
#endif
  return detail::run_baseline(body);
}

// Like dispatch, for kernels compiled for AVX2 and AVX-512 only (in a build without dispatch, the
// one copy for the target): callers check simd_kernels_run() first and take a generic path
// otherwise.
template <class F>
auto dispatch_simd(F&& body) {
#if RESODE_DISPATCH
  if (active_isa() == Isa::avx512) return detail::run_avx512(body);
  return detail::run_avx2(body);
#else
  return detail::run_baseline(body);
#endif
}

// May dispatch_simd kernels be called?
inline bool simd_kernels_run() { return !RESODE_DISPATCH || isa_at_least(Isa::avx2); }

}  // namespace resode
