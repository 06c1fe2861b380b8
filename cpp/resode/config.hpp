// Build-wide switches of the core: scalar index type and the CPU dispatch attribute.
#pragma once
#include <cstddef>

namespace resode {

// Signed index for all loops over samples, features and steps (sizes are checked to fit).
using index_t = std::ptrdiff_t;

}  // namespace resode

// RESODE_CLONES marks a hot leaf kernel: GCC/Clang emit a baseline x86-64 copy and an AVX2+FMA
// copy (x86-64-v3) and pick one once at load time, so a portable build runs at AVX2 speed.
// RESODE_AVX512 marks a kernel compiled only for AVX-512 (x86-64-v4), RESODE_AVX2 one compiled
// only for AVX2+FMA (x86-64-v3), each called after a CPU check.
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && \
    !defined(RESODE_NO_CLONES) && !defined(__SANITIZE_ADDRESS__)
#define RESODE_CLONES __attribute__((target_clones("default", "arch=x86-64-v3", "arch=x86-64-v4")))
#define RESODE_AVX512 __attribute__((target("arch=x86-64-v4")))
#define RESODE_AVX2 __attribute__((target("arch=x86-64-v3")))
#define RESODE_DISPATCH 1  // RESODE_AVX512 / RESODE_AVX2 kernels really get those instructions
#else
#define RESODE_CLONES
#define RESODE_AVX512
#define RESODE_AVX2
#define RESODE_DISPATCH 0
#endif

// Helpers of a RESODE_CLONES kernel must be inlined into it, so they are compiled once per
// clone with its instruction set (a separate baseline copy would pass SIMD values through
// memory).
#if defined(__GNUC__) || defined(__clang__)
#define RESODE_INLINE inline __attribute__((always_inline))
#else
#define RESODE_INLINE inline
#endif
