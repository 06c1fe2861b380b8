// The core's kernels alone, timed in C++ with no Python around them: the products of the
// sweeps (resode::gemm, resode::gemm_abt of cpp/resode/linalg.hpp) at the shapes the sweeps
// issue, and the vectorised tanh (cpp/resode/activations.hpp) per element with its accuracy.
// benchmarks/README.md calls it the "kernels driver" ("Large D", and the tanh of W2 D = 2).
//
//   cmake -S . -B build/bench -DRESODE_BENCHMARKS=ON && cmake --build build/bench -j2
//   build/bench/resode_kernels [repeats]       (RESODE_ISA=avx2|baseline for the lower sets)
//
// One thread; each figure is the best of `repeats` timings (default 20) of a loop long enough
// (about 2 ms) for the clock. GFLOP/s counts 2 FLOPs per multiply-add.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <random>
#include <vector>

#include "resode/resode.hpp"

namespace {

using resode::index_t;

// Best time in seconds of one call of f(), over `repeats` timings of `calls` calls each.
template <class F>
double best_seconds(int repeats, int calls, F&& f) {
  f();  // warm the caches (and any scratch buffer) up
  double best = std::numeric_limits<double>::infinity();
  for (int r = 0; r < repeats; ++r) {
    const auto start = std::chrono::steady_clock::now();
    for (int c = 0; c < calls; ++c) f();
    const std::chrono::duration<double> s = std::chrono::steady_clock::now() - start;
    best = std::min(best, s.count() / calls);
  }
  return best;
}

// Enough calls of something that takes about `ns` nanoseconds to fill about 2 ms.
int calls_for(double ns) { return std::max(1, int(2e6 / std::max(ns, 1.0))); }

std::vector<double> uniform(std::mt19937_64& rng, index_t n, double lo, double hi) {
  std::uniform_real_distribution<double> u(lo, hi);
  std::vector<double> v(static_cast<std::size_t>(n));
  for (auto& x : v) x = u(rng);
  return v;
}

// A layer of width r = k on a block of n samples, float64 (feature-major blocks: a matrix of
// n samples has one row per feature, linalg.hpp): GFLOP/s of the forward product Z = W X, the
// cotangent W^T G and the weight gradient G X^T.
void products(index_t r, index_t n, index_t k, int repeats, const char* note) {
  std::mt19937_64 rng(0);
  const auto W = uniform(rng, r * k, -1, 1), X = uniform(rng, k * n, -1, 1);
  const auto G = uniform(rng, r * n, -1, 1);
  std::vector<double> Z(std::size_t(r * n)), Xb(std::size_t(k * n)), dW(std::size_t(r * k));
  const double flops = 2.0 * double(r) * double(n) * double(k);
  const int calls = calls_for(flops / 100);  // at about 100 GFLOP/s
  const double wx = best_seconds(repeats, calls, [&] {
    resode::gemm<double>(r, n, k, 1.0, W.data(), k, 1, X.data(), n, Z.data(), n, false);
  });
  const double wtg = best_seconds(repeats, calls, [&] {  // W^T (k x r): element (i, p) at p*k + i
    resode::gemm<double>(k, n, r, 1.0, W.data(), 1, k, G.data(), n, Xb.data(), n, false);
  });
  const double gxt = best_seconds(repeats, calls, [&] {
    resode::gemm_abt<double>(r, k, n, 1.0, G.data(), n, X.data(), n, dW.data(), k);
  });
  std::printf("| %td x %td x %td%s | %.0f | %.0f | %.0f |\n", r, n, k, note, flops / wx / 1e9,
              flops / wtg / 1e9, flops / gxt / 1e9);
}

// ulp of y in T: the gap to the next representable value away from zero.
template <class T>
long double ulp(T y) {
  const T a = std::fabs(y);
  return static_cast<long double>(std::nextafter(a, std::numeric_limits<T>::infinity()) - a);
}

// resode's tanh on n values in [-10, 10] (in L1): ns per element, and the largest error
// against long double tanh over a dense grid of [-20, 20], in ulp of the exact result.
template <class T>
void tanh_row(int repeats) {
  constexpr index_t n = 2048;
  std::mt19937_64 rng(1);
  const auto values = uniform(rng, n, -10, 10);
  std::vector<T> z(values.begin(), values.end()), out(static_cast<std::size_t>(n));
  const int calls = calls_for(double(n));  // at about 1 ns per element
  const double s = best_seconds(repeats, calls, [&] {
    resode::activate<resode::Tanh, T>(n, z.data(), out.data());
  });

  constexpr index_t grid = 1 << 20;
  std::vector<T> x(static_cast<std::size_t>(grid)), y(static_cast<std::size_t>(grid));
  for (index_t i = 0; i < grid; ++i) x[std::size_t(i)] = T(-20.0 + 40.0 * double(i) / grid);
  resode::activate<resode::Tanh, T>(grid, x.data(), y.data());
  long double worst = 0;
  for (index_t i = 0; i < grid; ++i) {
    const long double exact = std::tanh(static_cast<long double>(x[std::size_t(i)]));
    const T rounded = static_cast<T>(exact);
    if (rounded == 0) continue;  // tanh(0) = 0 exactly (checked by the tests)
    const long double err = std::fabs(static_cast<long double>(y[std::size_t(i)]) - exact);
    worst = std::max(worst, err / ulp(rounded));
  }
  std::printf("| %s | %.3f | %.1f |\n", sizeof(T) == 8 ? "float64" : "float32",
              s / double(n) * 1e9, double(worst));
}

}  // namespace

int main(int argc, char** argv) {
  const int repeats = argc > 1 ? std::max(1, std::atoi(argv[1])) : 20;
  resode::set_num_threads(1);
  std::printf("kernels: %s, 1 thread, best of %d timings\n\n",
              resode::isa_name(resode::active_isa()), repeats);

  std::printf("Products alone, float64, GFLOP/s (r x n x k: a layer of width r = k on a block "
              "of n samples)\n\n");
  std::printf("| r x n x k | W X | W^T G | G X^T |\n|---|---|---|---|\n");
  products(64, 168, 64, repeats, "");  // the block sizes the sweeps use at these widths
  products(256, 64, 256, repeats, "");
  products(512, 32, 512, repeats, "");
  products(1024, 32, 1024, repeats, "");
  products(512, 512, 512, repeats, " (not a sweep shape)");

  std::printf("\ntanh alone (resode::activate<Tanh>, 2048 values in [-10, 10]); error: the "
              "largest over 2^20 points of [-20, 20] against long double tanh\n\n");
  std::printf("| dtype | ns per element | max error, ulp |\n|---|---|---|\n");
  tanh_row<double>(repeats);
  tanh_row<float>(repeats);
}
