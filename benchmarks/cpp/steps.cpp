// One training step (loss_and_grad) of each workload of benchmarks/README.md, timed in C++
// with no Python around it: the figures there marked "C++ driver" come from this program.
//
//   cmake -S . -B build/bench -DRESODE_BENCHMARKS=ON && cmake --build build/bench -j2
//   build/bench/resode_steps [repeats]         (RESODE_ISA=avx2|baseline for the lower sets)
//
// Prints one line per workload and dtype: the best time of `repeats` calls (default 20) on
// one thread, and the GFLOP/s of the matrix products (2 FLOPs per multiply-add; forward, and
// twice that for the backward sweep), as `resode bench` counts them.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "resode/resode.hpp"

namespace {

using resode::index_t;

struct Workload {
  const char* name;
  resode::FieldKind field;
  resode::Activation activation;
  resode::Method method;
  index_t dim, augment, hidden, pieces, substeps, N;
  double T;
};

// The workloads of benchmarks/README.md ("Workloads").
const Workload workloads[] = {
    {"W1 seed NODE N=2", resode::FieldKind::bottleneck, resode::Activation::relu,
     resode::Method::rk4, 2, 1, 50, 16, 1, 2, 5.0},
    {"W1 seed NODE N=150", resode::FieldKind::bottleneck, resode::Activation::relu,
     resode::Method::rk4, 2, 1, 50, 16, 1, 150, 5.0},
    {"W1 seed NODE N=1000", resode::FieldKind::bottleneck, resode::Activation::relu,
     resode::Method::rk4, 2, 1, 50, 16, 1, 1000, 5.0},
    {"W2 ResNet L=100 D=2", resode::FieldKind::outside, resode::Activation::tanh,
     resode::Method::euler, 2, 0, 2, 100, 1, 1000, 10.0},
    {"W2 ResNet L=100 D=16", resode::FieldKind::outside, resode::Activation::tanh,
     resode::Method::euler, 16, 0, 16, 100, 1, 1000, 10.0},
    {"W2 ResNet L=100 D=64", resode::FieldKind::outside, resode::Activation::tanh,
     resode::Method::euler, 64, 0, 64, 100, 1, 1000, 10.0},
    {"W3 NODE D=256 4x5 rk4", resode::FieldKind::outside, resode::Activation::tanh,
     resode::Method::rk4, 256, 0, 256, 4, 5, 1024, 1.0},
};

template <class T>
std::vector<T> uniform(std::mt19937_64& rng, std::size_t n, double bound) {
  std::uniform_real_distribution<double> u(-bound, bound);
  std::vector<T> v(n);
  for (auto& x : v) x = T(u(rng));
  return v;
}

template <class T>
void run(const Workload& w, int repeats) {
  std::mt19937_64 rng(0);
  const index_t D = w.dim + w.augment, H = w.hidden, K = w.pieces, C = 2;
  const bool bottleneck = w.field == resode::FieldKind::bottleneck;
  // torch.nn.Linear's initialisation, as resode's models: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
  auto W1 = uniform<T>(rng, std::size_t(K * H * D), 1 / std::sqrt(double(D)));
  auto b1 = uniform<T>(rng, std::size_t(K * H), 1 / std::sqrt(double(D)));
  auto W2 = uniform<T>(rng, bottleneck ? std::size_t(K * D * H) : 0, 1 / std::sqrt(double(H)));
  auto b2 = uniform<T>(rng, bottleneck ? std::size_t(K * D) : 0, 1 / std::sqrt(double(H)));
  auto P = uniform<T>(rng, std::size_t(C * D), 1 / std::sqrt(double(D)));
  auto c = uniform<T>(rng, std::size_t(C), 1 / std::sqrt(double(D)));
  std::normal_distribution<double> normal;
  std::vector<T> X(std::size_t(w.N * w.dim));
  std::vector<std::int64_t> labels(std::size_t(w.N));
  for (index_t i = 0; i < w.N; ++i) {
    double r2 = 0;
    for (index_t d = 0; d < w.dim; ++d) {
      const double x = normal(rng);
      X[std::size_t(i * w.dim + d)] = T(x);
      r2 += x * x;
    }
    labels[std::size_t(i)] = r2 > double(w.dim);
  }

  resode::Problem<T> pb;
  auto& f = pb.dyn.field;
  f.kind = w.field, f.pieces = K, f.D = D, f.H = bottleneck ? H : D;
  f.W1 = W1.data(), f.b1 = b1.data(), f.W2 = W2.data(), f.b2 = b2.data();
  pb.dyn.activation = w.activation;
  pb.dyn.tab = resode::tableau(w.method);
  pb.dyn.substeps = w.substeps;
  pb.dyn.dt = T(w.T / double(K * w.substeps));
  pb.readout = {C, P.data(), c.data()};
  pb.N = w.N, pb.augment = w.augment, pb.X = X.data();
  resode::Targets<T> targets;
  targets.count = w.N, targets.labels = labels.data();
  resode::GradientOptions opt;
  std::vector<T> dfield(std::size_t(f.size())), dP(std::size_t(C * D));
  std::vector<T> dc(static_cast<std::size_t>(C));

  double best = 1e300;
  for (int r = 0; r <= repeats; ++r) {  // the first call warms the workspaces up
    const auto start = std::chrono::steady_clock::now();
    resode::loss_and_grad(pb, targets, opt, dfield.data(), dP.data(), dc.data());
    const std::chrono::duration<double> s = std::chrono::steady_clock::now() - start;
    if (r > 0) best = std::min(best, s.count());
  }
  const double stages = double(pb.dyn.tab.stages), steps = double(K * w.substeps);
  const double width = bottleneck ? 2.0 * double(D * H) : double(D * D);
  const double gflop = 3 * 2.0 * double(w.N) * width * steps * stages / 1e9;
  std::printf("| %s | %s | %.3f | %.1f |\n", w.name, sizeof(T) == 8 ? "float64" : "float32",
              best * 1e3, gflop / best);
}

}  // namespace

int main(int argc, char** argv) {
  const int repeats = argc > 1 ? std::max(1, std::atoi(argv[1])) : 20;
  resode::set_num_threads(1);
  std::printf("kernels: %s, 1 thread, best of %d calls\n\n",
              resode::isa_name(resode::active_isa()), repeats);
  std::printf("| workload | dtype | ms | GFLOP/s |\n|---|---|---|---|\n");
  for (const auto& w : workloads) {
    run<double>(w, repeats);
    run<float>(w, repeats);
  }
}
