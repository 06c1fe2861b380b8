// Build-wide switches of the core: scalar index type and the CPU dispatch attributes.
#pragma once
#include <algorithm>
#include <cstddef>

namespace resode {

// Signed index for all loops over samples, features and steps (sizes are checked to fit).
using index_t = std::ptrdiff_t;

}  // namespace resode

// RESODE_AVX512 marks a function compiled for AVX-512 (x86-64-v4), RESODE_AVX2 one compiled for
// AVX2+FMA (x86-64-v3); isa.hpp calls each only on a CPU that has the set. Without GCC/Clang on
// x86-64 (or with RESODE_NO_DISPATCH) everything is compiled once, for the build's target.
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && \
    !defined(RESODE_NO_DISPATCH)
#define RESODE_AVX512 __attribute__((target("arch=x86-64-v4")))
#define RESODE_AVX2 __attribute__((target("arch=x86-64-v3")))
#define RESODE_DISPATCH 1  // RESODE_AVX512 / RESODE_AVX2 functions really get those instructions
#else
#define RESODE_AVX512
#define RESODE_AVX2
#define RESODE_DISPATCH 0
#endif

// Helpers of a dispatched kernel must be inlined into it, so they are compiled once per
// instruction set with it (a separate baseline copy would pass SIMD values through memory).
// RESODE_KERNEL marks a kernel body (a lambda) handed to resode::dispatch (isa.hpp).
#if defined(__GNUC__) || defined(__clang__)
#define RESODE_INLINE inline __attribute__((always_inline))
#define RESODE_KERNEL __attribute__((always_inline))
#else
#define RESODE_INLINE inline
#define RESODE_KERNEL
#endif
