// Matrix products of wide layers through a real BLAS, in builds with RESODE_BLAS defined
// (CMake -DRESODE_BLAS=ON): the CBLAS of the scipy-openblas32 package, whose symbols carry a
// scipy_ prefix (scipy_cblas_dgemm), so it never clashes with NumPy's or SciPy's own OpenBLAS.
//
// linalg.hpp asks `blas::takes(rows, cols)` before each product whose two layer-sized sides
// (not the samples side) are rows and cols: BLAS takes it when both are at least
// blas::min_width. The library runs on one thread: resode's own OpenMP loop over sample
// blocks is the parallelism, and a second thread pool inside it spin-waits against the first
// (measured 2-9x slower).
//
// Measured on x86-64 (benchmarks/README.md): at the shapes the sweeps issue (a layer times a
// cache-sized block of samples) the hand kernels of linalg.hpp match or beat OpenBLAS, with
// AVX2 and with AVX-512, so the default build leaves this off. It is there for CPUs where
// OpenBLAS has kernels and linalg.hpp has only generic vector code.
#pragma once
#include "config.hpp"

#if defined(RESODE_BLAS) && RESODE_BLAS
#include <cblas.h>
#endif

namespace resode {
namespace blas {

#if defined(RESODE_BLAS) && RESODE_BLAS
constexpr bool compiled = true;
#else
constexpr bool compiled = false;
#endif

// Products whose layer sides are both at least this wide go to BLAS ("large D" of issue 5).
constexpr index_t min_width = 64;

inline bool takes(index_t rows, index_t cols) {
  return compiled && rows >= min_width && cols >= min_width;
}

#if defined(RESODE_BLAS) && RESODE_BLAS
// One thread for the library, set once. The setting is process-wide for this library: NumPy
// and SciPy wheels carry their own OpenBLAS copies and are not affected, but another package
// that loads the same scipy-openblas32 library is.
inline void single_threaded() {
  static const bool done = [] {
    scipy_openblas_set_num_threads(1);
    return true;
  }();
  (void)done;
}

// C (m x n, row stride ldc) = alpha op(A) op(B) + beta C, all row-major; op(X) = X^T when
// the flag says so (A is then stored k x m, B n x k).
inline void gemm(bool trans_a, bool trans_b, index_t m, index_t n, index_t k, double alpha,
                 const double* A, index_t lda, const double* B, index_t ldb, double beta,
                 double* C, index_t ldc) {
  single_threaded();
  scipy_cblas_dgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                    trans_b ? CblasTrans : CblasNoTrans, blasint(m), blasint(n), blasint(k),
                    alpha, A, blasint(lda), B, blasint(ldb), beta, C, blasint(ldc));
}
inline void gemm(bool trans_a, bool trans_b, index_t m, index_t n, index_t k, float alpha,
                 const float* A, index_t lda, const float* B, index_t ldb, float beta, float* C,
                 index_t ldc) {
  single_threaded();
  scipy_cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                    trans_b ? CblasTrans : CblasNoTrans, blasint(m), blasint(n), blasint(k),
                    alpha, A, blasint(lda), B, blasint(ldb), beta, C, blasint(ldc));
}
#else
// Never called (takes() is false): present so that linalg.hpp compiles the same either way.
template <class T>
void gemm(bool, bool, index_t, index_t, index_t, T, const T*, index_t, const T*, index_t, T, T*,
          index_t) {}
#endif

}  // namespace blas
}  // namespace resode
