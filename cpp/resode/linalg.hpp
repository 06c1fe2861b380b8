// Dense kernels on feature-major blocks. A block of n samples of width D is stored as a D x n
// row-major matrix (feature i of sample s at [i*n + s]), so every loop over samples is a
// contiguous, vectorisable loop, also for the tiny widths (D = 1..8) of the toy problems.
// The sweeps need three products and a row sum:
//   gemm       C (r x n) (+)= alpha * A (r x k, any strides) * B (k x n) [+ bias 1^T]
//                                              forward Z = W X + b 1^T, cotangent Xb = W^T G
//   gemm_abt   C (r x c) += alpha * A (r x n) * B (c x n)^T        weight gradient dW += G X^T
//   row_sums   out (r) += alpha * sum_s A (r x n)                   bias gradient db += G 1
// gemm keeps an MR x (2 SIMD vectors) tile of C in registers and streams rows of B; gemm_abt
// keeps RA x RB dot products of SIMD vectors over samples (or transposes B and calls gemm when
// both sides of C are wide).
//
// CPU dispatch: every kernel is a template on the SIMD width in bytes, compiled three times:
// 16-byte vectors for baseline x86-64, 32-byte ones for AVX2+FMA (RESODE_AVX2), 64-byte ones
// for AVX-512 (RESODE_AVX512). Which one runs is the active instruction set (isa.hpp).
#pragma once
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <utility>
#include <vector>

#include "config.hpp"
#include "isa.hpp"

namespace resode {
namespace detail {

// A SIMD vector of `Bytes` bytes (32: one AVX2 register; 64: one AVX-512 register).
template <class T, int Bytes>
struct Simd;
template <>
struct Simd<double, 32> {
  typedef double type __attribute__((vector_size(32)));
};
template <>
struct Simd<float, 32> {
  typedef float type __attribute__((vector_size(32)));
};
template <>
struct Simd<double, 16> {
  typedef double type __attribute__((vector_size(16)));
};
template <>
struct Simd<float, 16> {
  typedef float type __attribute__((vector_size(16)));
};
template <>
struct Simd<double, 64> {
  typedef double type __attribute__((vector_size(64)));
};
template <>
struct Simd<float, 64> {
  typedef float type __attribute__((vector_size(64)));
};
template <class T, int Bytes>
using Vec = typename Simd<T, Bytes>::type;
template <class T, int Bytes>
constexpr int lanes = int(Bytes / sizeof(T));

template <class T, int Bytes>
RESODE_INLINE Vec<T, Bytes> load(const T* p) {
  Vec<T, Bytes> v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
template <class T, int Bytes>
RESODE_INLINE void store(T* p, Vec<T, Bytes> v) {
  std::memcpy(p, &v, sizeof v);
}
// The low and high halves of a vector, as register shuffles (no trip through memory; GCC < 12
// has no __builtin_shufflevector: copies there, which it also turns into register moves).
template <class T, int Bytes, std::size_t... I>
RESODE_INLINE Vec<T, Bytes / 2> low_half(Vec<T, Bytes> v, std::index_sequence<I...>) {
#if defined(__has_builtin) && __has_builtin(__builtin_shufflevector)
  return __builtin_shufflevector(v, v, int(I)...);
#else
  Vec<T, Bytes / 2> half;
  std::memcpy(&half, &v, sizeof half);
  return half;
#endif
}
template <class T, int Bytes, std::size_t... I>
RESODE_INLINE Vec<T, Bytes / 2> high_half(Vec<T, Bytes> v, std::index_sequence<I...>) {
#if defined(__has_builtin) && __has_builtin(__builtin_shufflevector)
  return __builtin_shufflevector(v, v, int(I + sizeof...(I))...);
#else
  Vec<T, Bytes / 2> half;
  std::memcpy(&half, reinterpret_cast<const char*>(&v) + sizeof half, sizeof half);
  return half;
#endif
}

// v itself, pinned to a register in tiles of up to 4 rows: GCC otherwise folds a B vector into
// each of the MR FMAs that use it as a memory operand, loading it MR times (measured: 15 loads
// per 12 FMAs in a 3-row tile, half the speed; W1 16% faster with AVX2). Full 8-row AVX-512
// tiles were measured faster unpinned. Pin is set only by the kernels compiled for AVX2 or
// AVX-512 (in the baseline x86-64 build a 32-byte vector is no register).
template <int Bytes, int MR, bool Pin, class V>
RESODE_INLINE V in_register(V v) {
#if RESODE_DISPATCH
  if constexpr (Pin && MR <= 4) {
    if constexpr (Bytes == 64)
      asm("" : "+v"(v));
    else
      asm("" : "+x"(v));
  }
#endif
  return v;
}

// Sum of the lanes by halving: 64 -> 32 -> 16 bytes with vector adds, then the last lanes.
template <class T, int Bytes>
RESODE_INLINE T horizontal_sum(Vec<T, Bytes> v) {
  if constexpr (Bytes > 16) {
    using Half = std::make_index_sequence<std::size_t(lanes<T, Bytes> / 2)>;
    return horizontal_sum<T, Bytes / 2>(low_half<T, Bytes>(v, Half{}) +
                                        high_half<T, Bytes>(v, Half{}));
  } else {
    T s = T(0);
    for (int l = 0; l < lanes<T, Bytes>; ++l) s += v[l];
    return s;
  }
}

// Do the active kernels have AVX-512 (64-byte vectors), or AVX2+FMA? (isa.hpp)
inline bool has_avx512() { return isa_at_least(Isa::avx512); }
inline bool has_avx2() { return isa_at_least(Isa::avx2); }

// What a gemm does to each finished value of C before storing it (the "post" argument of the
// kernels below): StoreAsIs nothing. Others fuse an elementwise pass over C into the store, an
// activation or a chain-rule slope (cde_field.hpp), with the same operations as the separate
// pass and so the same bits. post(v, at) gets a vector (or a scalar, at the edges) of values
// and the address in C they go to: a post that reads another matrix laid out as C finds its
// entries at the same offset from that matrix's origin.
struct StoreAsIs {
  template <class V, class T>
  RESODE_INLINE V operator()(V v, const T*) const { return v; }
};

// Rows [0, MR) of C, columns [0, NV * lanes): C = post(alpha * A * B (+ C) (+ bias)).
template <class T, int Bytes, bool Pin, int MR, int NV, class Post>
RESODE_INLINE void gemm_tile(index_t k, T alpha, const T* A, index_t rsa, index_t csa, const T* B,
                             index_t ldb, T* C, index_t ldc, bool accumulate, const T* bias,
                             const Post& post) {
  constexpr int L = lanes<T, Bytes>;
  using V = Vec<T, Bytes>;
  V acc[MR][NV];
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[i][v] = V{};
  for (index_t p = 0; p < k; ++p) {
    V b[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) b[v] = in_register<Bytes, MR, Pin>(load<T, Bytes>(B + p * ldb + v * L));
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
      const T a = A[i * rsa + p * csa];
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[i][v] += a * b[v];
    }
  }
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      T* c = C + i * ldc + v * L;
      V value = alpha * acc[i][v];
      if (accumulate) value += load<T, Bytes>(c);
      if (bias) value += bias[i];
      store<T, Bytes>(c, post(value, c));
    }
}

// Columns that do not fill a tile: plain loops.
template <class T, class Post>
RESODE_INLINE void gemm_edge(index_t rows, index_t cols, index_t k, T alpha, const T* A,
                             index_t rsa, index_t csa, const T* B, index_t ldb, T* C,
                             index_t ldc, bool accumulate, const T* bias, const Post& post) {
  for (index_t i = 0; i < rows; ++i)
    for (index_t j = 0; j < cols; ++j) {
      T s = T(0);
      for (index_t p = 0; p < k; ++p) s += A[i * rsa + p * csa] * B[p * ldb + j];
      T value = alpha * s;
      if (accumulate) value += C[i * ldc + j];
      if (bias) value += bias[i];
      C[i * ldc + j] = post(value, C + i * ldc + j);
    }
}

// Rows [0, rows) (rows <= MR) of C over the columns [0, n - n % lanes): strips of NV vectors,
// NV = 4 for short tiles where the registers allow (AVX-512: rows <= 4, AVX2: rows <= 2; W^T G
// at D = 3 has 3 rows, and 3 x 2 accumulators measured slower), otherwise 2; then 2, then 1.
template <class T, int Bytes, bool Pin, int MR, class Post>
RESODE_INLINE void gemm_row_tiles(index_t rows, index_t n, index_t k, T alpha, const T* A,
                                  index_t rsa, index_t csa, const T* B, index_t ldb, T* C,
                                  index_t ldc, bool accumulate, const T* bias, const Post& post) {
  constexpr index_t L = lanes<T, Bytes>;
  if (rows == MR) {
    // accumulators MR x wide within half the registers (32 with AVX-512, 16 with AVX2)
    constexpr int wide = (Bytes == 64 ? MR <= 4 : MR <= 2) ? 4 : 2;
    index_t j = 0;
    for (; j + wide * L <= n; j += wide * L)
      gemm_tile<T, Bytes, Pin, MR, wide>(k, alpha, A, rsa, csa, B + j, ldb, C + j, ldc, accumulate,
                                         bias, post);
    if constexpr (wide == 4)
      if (j + 2 * L <= n) {
        gemm_tile<T, Bytes, Pin, MR, 2>(k, alpha, A, rsa, csa, B + j, ldb, C + j, ldc, accumulate,
                                        bias, post);
        j += 2 * L;
      }
    if (j + L <= n)
      gemm_tile<T, Bytes, Pin, MR, 1>(k, alpha, A, rsa, csa, B + j, ldb, C + j, ldc, accumulate,
                                      bias, post);
  } else if constexpr (MR > 1) {
    gemm_row_tiles<T, Bytes, Pin, MR - 1>(rows, n, k, alpha, A, rsa, csa, B, ldb, C, ldc, accumulate,
                                          bias, post);
  }
}

template <class T, int Bytes, bool Pin, class Post>
RESODE_INLINE void gemm_impl(index_t r, index_t n, index_t k, T alpha, const T* A, index_t rsa,
                             index_t csa, const T* B, index_t ldb, T* C, index_t ldc,
                             bool accumulate, const T* bias, const Post& post) {
  // rows per tile: 8 x 2 accumulators of AVX-512's 32 registers, 6 x 2 of AVX2's 16 (6 rows
  // measured 6% faster than 4 at D = 64)
  constexpr int MR = Bytes == 64 ? 8 : 6;
  constexpr index_t L = lanes<T, Bytes>;
  // Row tiles outer, column strips inner (measured faster than the other order).
  for (index_t i = 0; i < r; i += MR)
    gemm_row_tiles<T, Bytes, Pin, MR>(std::min<index_t>(MR, r - i), n, k, alpha, A + i * rsa, rsa,
                                 csa, B, ldb, C + i * ldc, ldc, accumulate,
                                 bias ? bias + i : nullptr, post);
  const index_t j = n - n % L;
  if (j == n) return;
  // The last n % lanes columns: half-width vectors, then plain loops.
  if constexpr (Bytes > 16)
    gemm_impl<T, Bytes / 2, Pin>(r, n - j, k, alpha, A, rsa, csa, B + j, ldb, C + j, ldc, accumulate,
                                 bias, post);
  else
    gemm_edge(r, n - j, k, alpha, A, rsa, csa, B + j, ldb, C + j, ldc, accumulate, bias, post);
}

// RA x RB dot products over n samples: out[i][j] = sum_s A[i*lda + s] * B[j*ldb + s].
// (All loops over i and j are fully unrolled so the accumulators live in registers.)
template <class T, int Bytes, bool Pin, int RA, int RB>
RESODE_INLINE void dot_tile(index_t n, const T* A, index_t lda, const T* B, index_t ldb,
                            T out[4][4]) {
  constexpr int L = lanes<T, Bytes>;
  using V = Vec<T, Bytes>;
  V acc[RA][RB];
#pragma GCC unroll 4
  for (int i = 0; i < RA; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < RB; ++j) acc[i][j] = V{};
  index_t s = 0;
  for (; s + L <= n; s += L) {
    V a[RA], b[RB];
#pragma GCC unroll 4
    for (int i = 0; i < RA; ++i) a[i] = in_register<Bytes, 1, Pin>(load<T, Bytes>(A + i * lda + s));
#pragma GCC unroll 4
    for (int j = 0; j < RB; ++j) b[j] = in_register<Bytes, 1, Pin>(load<T, Bytes>(B + j * ldb + s));
#pragma GCC unroll 4
    for (int i = 0; i < RA; ++i)
#pragma GCC unroll 4
      for (int j = 0; j < RB; ++j) acc[i][j] += a[i] * b[j];
  }
#pragma GCC unroll 4
  for (int i = 0; i < RA; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < RB; ++j) {
      T sum = s > 0 ? horizontal_sum<T, Bytes>(acc[i][j]) : T(0);  // n < L: no vector pass
      for (index_t t = s; t < n; ++t) sum += A[i * lda + t] * B[j * ldb + t];
      out[i][j] = sum;
    }
}

template <class T, int Bytes, bool Pin, int RA>
RESODE_INLINE void dot_row(index_t n, const T* A, index_t lda, const T* B, index_t ldb, int rb,
                           T out[4][4]) {
  switch (rb) {
    case 4: return dot_tile<T, Bytes, Pin, RA, 4>(n, A, lda, B, ldb, out);
    case 3: return dot_tile<T, Bytes, Pin, RA, 3>(n, A, lda, B, ldb, out);
    case 2: return dot_tile<T, Bytes, Pin, RA, 2>(n, A, lda, B, ldb, out);
    default: return dot_tile<T, Bytes, Pin, RA, 1>(n, A, lda, B, ldb, out);
  }
}

template <class T, int Bytes, bool Pin>
RESODE_INLINE void dot_block(index_t n, const T* A, index_t lda, const T* B, index_t ldb, int ra,
                             int rb, T out[4][4]) {
  switch (ra) {
    case 4: return dot_row<T, Bytes, Pin, 4>(n, A, lda, B, ldb, rb, out);
    case 3: return dot_row<T, Bytes, Pin, 3>(n, A, lda, B, ldb, rb, out);
    case 2: return dot_row<T, Bytes, Pin, 2>(n, A, lda, B, ldb, rb, out);
    default: return dot_row<T, Bytes, Pin, 1>(n, A, lda, B, ldb, rb, out);
  }
}

// C (r x c) += alpha A B^T by dot products over samples; with `transposed` the (i, j) result
// goes to C[j*ldc + i] (so C^T += B A^T can be computed as A B^T with the wide side in A).
// Tiles of RA x 4 dot products: RA = 2 with AVX2 (8 accumulators of 16 registers), RA = 4 with
// AVX-512 (16 of 32).
template <class T, int Bytes, bool Pin>
RESODE_INLINE void gemm_abt_dots_impl(index_t r, index_t c, index_t n, T alpha, const T* A,
                                      index_t lda, const T* B, index_t ldb, T* C, index_t ldc,
                                      bool transposed) {
  constexpr index_t RA = Bytes == 64 ? 4 : 2;
  T out[4][4];
  for (index_t i = 0; i < r; i += RA) {
    const int ra = int(std::min<index_t>(RA, r - i));
    for (index_t j = 0; j < c; j += 4) {
      const int rb = int(std::min<index_t>(4, c - j));
      dot_block<T, Bytes, Pin>(n, A + i * lda, lda, B + j * ldb, ldb, ra, rb, out);
      for (int a = 0; a < ra; ++a)
        for (int b = 0; b < rb; ++b)
          (transposed ? C[(j + b) * ldc + i + a] : C[(i + a) * ldc + j + b]) += alpha * out[a][b];
    }
  }
}

// The compiled instances: 16-byte vectors for baseline x86-64 (SSE2's registers: 32-byte
// vectors there were split by the compiler and ran the D = 64 ResNet at 1 GFLOP/s), pinned
// 32-byte vectors for AVX2+FMA, 64-byte vectors for AVX-512.
template <class T, class Post>
void gemm_v16(index_t r, index_t n, index_t k, T alpha, const T* A, index_t rsa, index_t csa,
              const T* B, index_t ldb, T* C, index_t ldc, bool accumulate, const T* bias,
              const Post& post) {
  gemm_impl<T, 16, false>(r, n, k, alpha, A, rsa, csa, B, ldb, C, ldc, accumulate, bias, post);
}
template <class T, class Post>
RESODE_AVX2 void gemm_v32_avx2(index_t r, index_t n, index_t k, T alpha, const T* A, index_t rsa,
                               index_t csa, const T* B, index_t ldb, T* C, index_t ldc,
                               bool accumulate, const T* bias, const Post& post) {
  gemm_impl<T, 32, true>(r, n, k, alpha, A, rsa, csa, B, ldb, C, ldc, accumulate, bias, post);
}
template <class T, class Post>
RESODE_AVX512 void gemm_v64(index_t r, index_t n, index_t k, T alpha, const T* A, index_t rsa,
                            index_t csa, const T* B, index_t ldb, T* C, index_t ldc,
                            bool accumulate, const T* bias, const Post& post) {
  gemm_impl<T, 64, true>(r, n, k, alpha, A, rsa, csa, B, ldb, C, ldc, accumulate, bias, post);
}
template <class T>
void gemm_abt_dots_v16(index_t r, index_t c, index_t n, T alpha, const T* A, index_t lda,
                       const T* B, index_t ldb, T* C, index_t ldc, bool transposed) {
  gemm_abt_dots_impl<T, 16, false>(r, c, n, alpha, A, lda, B, ldb, C, ldc, transposed);
}
template <class T>
RESODE_AVX2 void gemm_abt_dots_v32_avx2(index_t r, index_t c, index_t n, T alpha, const T* A,
                                        index_t lda, const T* B, index_t ldb, T* C, index_t ldc,
                                        bool transposed) {
  gemm_abt_dots_impl<T, 32, true>(r, c, n, alpha, A, lda, B, ldb, C, ldc, transposed);
}
template <class T>
RESODE_AVX512 void gemm_abt_dots_v64(index_t r, index_t c, index_t n, T alpha, const T* A,
                                     index_t lda, const T* B, index_t ldb, T* C, index_t ldc,
                                     bool transposed) {
  gemm_abt_dots_impl<T, 64, true>(r, c, n, alpha, A, lda, B, ldb, C, ldc, transposed);
}

// A row stride for a scratch matrix of c columns that is not a multiple of 1 KiB: the gemm
// tile reads a column strip of it, one line from each row, and rows 4 KiB apart all land in
// the same L1 set (dW += G X^T at D = 512 in blocks of 32 samples: 69 -> 105 GFLOP/s with one
// cache line of padding, where OpenBLAS reaches 95).
template <class T>
constexpr index_t unaliased_stride(index_t c) {
  constexpr index_t line = index_t(64 / sizeof(T));
  return c * index_t(sizeof(T)) % 1024 == 0 ? c + line : c;
}

// Per-thread scratch for transposing a block; grows to the largest block seen, never shrinks.
template <class T>
T* transpose_buffer(index_t size) {
  thread_local std::vector<T> buffer;
  if (index_t(buffer.size()) < size) buffer.resize(std::size_t(size));
  return buffer.data();
}

#if defined(__has_builtin)
#if __has_builtin(__builtin_shufflevector)
#define RESODE_REGISTER_TRANSPOSE 1
#endif
#endif
#ifndef RESODE_REGISTER_TRANSPOSE
#define RESODE_REGISTER_TRANSPOSE 0  // GCC < 12: the plain loops of transpose()
#endif

#if RESODE_REGISTER_TRANSPOSE
// The 8 x 8 tile at B (row stride ldb) transposed to Bt (row stride ldt) in registers: eight
// row loads; interleave pairs of rows, then pairs of pairs, then halves (24 two-register
// shuffles); eight row stores. V holds 8 lanes (8 doubles: 64 bytes, 8 floats: 32 bytes).
template <class T>
RESODE_INLINE void transpose_tile8(const T* B, index_t ldb, T* Bt, index_t ldt) {
  constexpr int Bytes = int(8 * sizeof(T));
  using V = Vec<T, Bytes>;
  V r[8], t[8], u[8];
#pragma GCC unroll 8
  for (int i = 0; i < 8; ++i) r[i] = load<T, Bytes>(B + i * ldb);
#pragma GCC unroll 4
  for (int k = 0; k < 8; k += 2) {  // t[k]: columns 0 2 4 6 of rows k, k+1 interleaved
    t[k] = __builtin_shufflevector(r[k], r[k + 1], 0, 8, 2, 10, 4, 12, 6, 14);
    t[k + 1] = __builtin_shufflevector(r[k], r[k + 1], 1, 9, 3, 11, 5, 13, 7, 15);
  }
#pragma GCC unroll 2
  for (int h = 0; h < 8; h += 4) {  // u[h + m]: columns (m', m' + 4) of rows h..h+3
    u[h] = __builtin_shufflevector(t[h], t[h + 2], 0, 1, 8, 9, 4, 5, 12, 13);      // 0, 4
    u[h + 1] = __builtin_shufflevector(t[h], t[h + 2], 2, 3, 10, 11, 6, 7, 14, 15);  // 2, 6
    u[h + 2] = __builtin_shufflevector(t[h + 1], t[h + 3], 0, 1, 8, 9, 4, 5, 12, 13);  // 1, 5
    u[h + 3] = __builtin_shufflevector(t[h + 1], t[h + 3], 2, 3, 10, 11, 6, 7, 14, 15);  // 3, 7
  }
  constexpr int low_column[4] = {0, 2, 1, 3};
#pragma GCC unroll 4
  for (int m = 0; m < 4; ++m) {
    const int c = low_column[m];
    store<T, Bytes>(Bt + c * ldt, __builtin_shufflevector(u[m], u[m + 4], 0, 1, 2, 3, 8, 9, 10, 11));
    store<T, Bytes>(Bt + (c + 4) * ldt,
                    __builtin_shufflevector(u[m], u[m + 4], 4, 5, 6, 7, 12, 13, 14, 15));
  }
}
#endif

// Bt (n x c, row stride ldt) = B^T for B (c x n, row stride ldb), in 8 x 8 tiles so reads
// and writes both stay within a few cache lines; full tiles in registers where the kernels
// have vectors (transpose_tile8).
template <class T>
void transpose(index_t c, index_t n, const T* B, index_t ldb, T* Bt, index_t ldt) {
  [[maybe_unused]] const bool registers = RESODE_REGISTER_TRANSPOSE && simd_kernels_run();
  dispatch([&]() RESODE_KERNEL {
    constexpr index_t tile = 8;
    if (n < tile) {  // a few samples (gemm_abt_short): one pass per sample, writes contiguous
      for (index_t s = 0; s < n; ++s)
        for (index_t j = 0; j < c; ++j) Bt[s * ldt + j] = B[j * ldb + s];
      return;
    }
    for (index_t j0 = 0; j0 < c; j0 += tile)
      for (index_t s0 = 0; s0 < n; s0 += tile) {
        const index_t j1 = std::min(c, j0 + tile), s1 = std::min(n, s0 + tile);
        // B is usually a state on the discrete sweep's tape, back from DRAM; eight interleaved
        // row streams defeat the hardware prefetcher (ResNet D = 64: transposes 17% -> 10%).
        for (index_t j = j0; j < j1; ++j) __builtin_prefetch(B + j * ldb + s0 + 4 * tile);
#if RESODE_REGISTER_TRANSPOSE
        if (registers && j1 - j0 == tile && s1 - s0 == tile) {
          transpose_tile8(B + j0 * ldb + s0, ldb, Bt + s0 * ldt + j0, ldt);
          continue;
        }
#endif
        for (index_t j = j0; j < j1; ++j)
          for (index_t s = s0; s < s1; ++s) Bt[s * ldt + j] = B[j * ldb + s];
      }
  });
}

// gemm_abt for sums over fewer samples than a SIMD vector holds (N = 1..3 in the last block):
// dot products would be all setup and horizontal sums. Instead the products run along the
// wide side of C: C += alpha A Bt with Bt = B^T (n x c) when c is wide; otherwise
// C^T += alpha B At computed into a scratch copy of C^T; plain loops when both are narrow.
template <class T>
void gemm_abt_short(index_t r, index_t c, index_t n, T alpha, const T* A, index_t lda,
                    const T* B, index_t ldb, T* C, index_t ldc);

// gemm (below) for the active kernel set's vector width.
template <class T, class Post = StoreAsIs>
void gemm_kernels(index_t r, index_t n, index_t k, T alpha, const T* A, index_t rsa,
                  index_t csa, const T* B, index_t ldb, T* C, index_t ldc, bool accumulate,
                  const T* bias = nullptr, const Post& post = Post{}) {
  if (has_avx512())
    gemm_v64(r, n, k, alpha, A, rsa, csa, B, ldb, C, ldc, accumulate, bias, post);
  else if (has_avx2())
    gemm_v32_avx2(r, n, k, alpha, A, rsa, csa, B, ldb, C, ldc, accumulate, bias, post);
  else
    gemm_v16(r, n, k, alpha, A, rsa, csa, B, ldb, C, ldc, accumulate, bias, post);
}

}  // namespace detail

// C (r x n, row stride ldc) = alpha * A * B (+ C if accumulate) (+ bias[i] on row i if bias),
// with A(i, p) = A[i*rsa + p*csa] (r x k) and B (k x n, row stride ldb). r and k are layer
// sides, n the samples. (A BLAS for the wide layers was built and measured slower than these
// kernels at every shape the sweeps issue, with AVX2 and AVX-512: CHANGELOG.md.) post: what is
// done to each value before it is stored (detail::StoreAsIs).
template <class T, class Post = detail::StoreAsIs>
void gemm(index_t r, index_t n, index_t k, T alpha, const T* A, index_t rsa, index_t csa,
          const T* B, index_t ldb, T* C, index_t ldc, bool accumulate, const T* bias = nullptr,
          const Post& post = Post{}) {
  detail::gemm_kernels(r, n, k, alpha, A, rsa, csa, B, ldb, C, ldc, accumulate, bias, post);
}

// C (r x c, row stride ldc) += alpha * A (r x n, row stride lda) * B^T (B: c x n, row stride
// ldb): sums over samples of outer products, e.g. dW += G X^T.
template <class T>
void gemm_abt(index_t r, index_t c, index_t n, T alpha, const T* A, index_t lda, const T* B,
              index_t ldb, T* C, index_t ldc) {
  // Measured: dot products win while one side of C is narrow (<= 16); when both are wide, B
  // is transposed once (cheap next to the r*c*n products) and the register-tiled gemm runs.
  // The dot kernel pairs rows of A, so the wide side goes there.
  if (n < detail::lanes<T, 32>) return detail::gemm_abt_short(r, c, n, alpha, A, lda, B, ldb, C, ldc);
  auto dots = detail::has_avx512() ? detail::gemm_abt_dots_v64<T>
              : detail::has_avx2()   ? detail::gemm_abt_dots_v32_avx2<T>
                                     : detail::gemm_abt_dots_v16<T>;
  if (c <= 16 && c <= r) return dots(r, c, n, alpha, A, lda, B, ldb, C, ldc, false);
  if (r <= 16) return dots(c, r, n, alpha, B, ldb, A, lda, C, ldc, true);
  const index_t ldt = detail::unaliased_stride<T>(c);
  T* Bt = detail::transpose_buffer<T>(n * ldt);
  detail::transpose(c, n, B, ldb, Bt, ldt);
  detail::gemm_kernels(r, c, n, alpha, A, lda, index_t(1), Bt, ldt, C, ldc, true);
}

namespace detail {
template <class T>
void gemm_abt_short(index_t r, index_t c, index_t n, T alpha, const T* A, index_t lda,
                    const T* B, index_t ldb, T* C, index_t ldc) {
  constexpr index_t wide = 2 * lanes<T, 32>;  // a full gemm tile
  if (c >= wide) {  // C (r x c) += alpha A (r x n) Bt (n x c)
    T* Bt = transpose_buffer<T>(n * c);
    transpose(c, n, B, ldb, Bt, c);
    return gemm_kernels(r, c, n, alpha, A, lda, index_t(1), Bt, c, C, ldc, true);
  }
  if (r >= wide) {  // Ct (c x r) = alpha B (c x n) At (n x r), then C += Ct^T
    T* At = transpose_buffer<T>(n * r + c * r);
    T* Ct = At + n * r;
    transpose(r, n, A, lda, At, r);
    gemm_kernels(c, r, n, alpha, B, ldb, index_t(1), At, r, Ct, r, false);
    for (index_t i = 0; i < r; ++i)
      for (index_t j = 0; j < c; ++j) C[i * ldc + j] += Ct[j * r + i];
    return;
  }
  for (index_t i = 0; i < r; ++i)
    for (index_t j = 0; j < c; ++j) {
      T sum = T(0);
      for (index_t s = 0; s < n; ++s) sum += A[i * lda + s] * B[j * ldb + s];
      C[i * ldc + j] += alpha * sum;
    }
}
}  // namespace detail

// out[i] += alpha * sum_s A[i*lda + s], i < r: the bias gradient.
template <class T>
void row_sums(index_t r, index_t n, T alpha, const T* A, index_t lda, T* out) {
  dispatch([&]() RESODE_KERNEL {
    constexpr int L = detail::lanes<T, 32>;
    for (index_t i = 0; i < r; ++i) {
      index_t s = 0;
      detail::Vec<T, 32> acc0 = {}, acc1 = {};
      for (; s + 2 * L <= n; s += 2 * L) {
        acc0 += detail::load<T, 32>(A + i * lda + s);
        acc1 += detail::load<T, 32>(A + i * lda + s + L);
      }
      T sum = s > 0 ? detail::horizontal_sum<T, 32>(acc0 + acc1) : T(0);  // n < 2 vectors
      for (; s < n; ++s) sum += A[i * lda + s];
      out[i] += alpha * sum;
    }
  });
}

}  // namespace resode
