// Activations sigma and their derivatives, elementwise and branch-free so loops over samples
// vectorise. tanh and sigmoid use a vectorisable exp (Cephes range reduction and Pade form)
// instead of glibc's scalar tanh/exp (15-27 ns per element here, never vectorised): max
// relative error a few ulp in float64; float32 has its own float versions (a few float ulp).
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>
#include <utility>

#include "config.hpp"
#include "errors.hpp"
#include "isa.hpp"

namespace resode {

enum class Activation { tanh, relu, sigmoid, leaky_relu, identity };

inline Activation parse_activation(const std::string& name) {
  if (name == "tanh") return Activation::tanh;
  if (name == "relu") return Activation::relu;
  if (name == "sigmoid") return Activation::sigmoid;
  if (name == "leaky_relu") return Activation::leaky_relu;
  if (name == "identity") return Activation::identity;
  throw std::invalid_argument("activation must be one of 'tanh', 'relu', 'sigmoid', "
                              "'leaky_relu', 'identity'; got '" + name + "'");
}

namespace detail {

// exp(y) = num / den for y <= 0, including the subnormal range (y in [-745, -708]) and
// underflow to 0. y = n*ln2 + r with |r| <= ln2/2 and the Cephes exp.c Pade form
// exp(r) = (Q(r^2) + r P(r^2)) / (Q(r^2) - r P(r^2)); 2^n is applied to the numerator as two
// exact power-of-two factors 2^(n/2) 2^(n - n/2), each a normal number. Returning the fraction
// lets tanh and sigmoid fold this division into their own single one (divisions are the
// slowest SIMD operation here), and keeps the loop free of calls and branches.
inline void exp_nonpositive_fraction(double y, double& num, double& den) {
  constexpr double log2e = 1.4426950408889634073599;
  constexpr double ln2_hi = 6.93145751953125E-1, ln2_lo = 1.42860682030941723212E-6;
  constexpr double round_shift = 0x1.8p52;  // adding it rounds to an integer in the low bits
  y = y < -1400.0 ? -1400.0 : y;            // exp(-1400) is 0 in double already
  double kd = y * log2e + round_shift;
  std::int64_t n;
  std::memcpy(&n, &kd, sizeof kd);
  n -= std::int64_t(0x4338000000000000);  // the bits of round_shift: leaves n (<= 0)
  kd -= round_shift;
  const double r = (y - kd * ln2_hi) - kd * ln2_lo;
  const double rr = r * r;
  const double px = r * ((1.26177193074810590878E-4 * rr + 3.02994407707441961300E-2) * rr +
                         9.99999999999999999910E-1);
  const double qx = ((3.00198505138664455042E-6 * rr + 2.52448340349684104192E-3) * rr +
                     2.27265548208155028766E-1) * rr + 2.00000000000000000009E0;
  const std::int64_t n1 = n >> 1, n2 = n - n1;  // both in [-1010, 0]
  // unsigned shifts: for a NaN input n is garbage (the result is NaN anyway), and a signed
  // left shift of a negative value would be undefined behaviour
  const std::uint64_t s1_bits = std::uint64_t(n1 + 1023) << 52;
  const std::uint64_t s2_bits = std::uint64_t(n2 + 1023) << 52;
  double s1, s2;
  std::memcpy(&s1, &s1_bits, sizeof s1);
  std::memcpy(&s2, &s2_bits, sizeof s2);
  num = (qx + px) * s1 * s2;
  den = qx - px;
}

inline double exp_nonpositive(double y) {
  double num, den;
  exp_nonpositive_fraction(y, num, den);
  return num / den;
}

// tanh(x): for |x| < 0.625 the Cephes rational form x + x z P(z)/Q(z), z = x^2 (no
// cancellation near 0); otherwise (1 - e)/(1 + e) with e = exp(-2|x|) <= 0.29, i.e.
// (den - num)/(den + num) with e = num/den. Both branches are computed as fractions, one is
// selected, and a single division finishes it: no branch, one divide per element.
inline double tanh(double x) {
  const double ax = x < 0 ? -x : x;
  const double z = x * x;
  const double p = (-9.64399179425052238628E-1 * z - 9.92877231001918586564E1) * z -
                   1.61468768441708447952E3;
  const double q = ((z + 1.12811678491632931402E2) * z + 2.23548839060100448583E3) * z +
                   4.84406305325125486048E3;
  double num, den;
  exp_nonpositive_fraction(-2.0 * ax, num, den);
  const double large_num = x < 0 ? num - den : den - num;
  const bool small = ax < 0.625;
  return (small ? x * q + x * z * p : large_num) / (small ? q : den + num);
}

// The branch |x| < 0.625 of tanh(double) alone, giving its bits: as the compilers build it
// inside tanh(), where the CPU has fused multiply-adds (GCC and Clang contract the
// polynomials to nested fmas and x q + x z p to fma(x, q, (x z) p)), and where it has none.
// activate() takes it for chunks whose entries all lie there, skipping the exponential;
// tests/test_cde_core.py checks, per kernel set, that both forms give tanh()'s bits.
constexpr double tanh_near_zero_bound = 0.625;
RESODE_INLINE double tanh_near_zero_fused(double x) {
  const double z = x * x;
  const double p = __builtin_fma(__builtin_fma(-9.64399179425052238628E-1, z,
                                               -9.92877231001918586564E1), z,
                                 -1.61468768441708447952E3);
  const double q = __builtin_fma(__builtin_fma(z + 1.12811678491632931402E2, z,
                                               2.23548839060100448583E3), z,
                                 4.84406305325125486048E3);
  return __builtin_fma(x, q, (x * z) * p) / q;
}
RESODE_INLINE double tanh_near_zero_unfused(double x) {
  const double z = x * x;
  const double p = (-9.64399179425052238628E-1 * z - 9.92877231001918586564E1) * z -
                   1.61468768441708447952E3;
  const double q = ((z + 1.12811678491632931402E2) * z + 2.23548839060100448583E3) * z +
                   4.84406305325125486048E3;
  return (x * q + x * z * p) / q;
}

// sigmoid(x) = 1/(1+exp(-x)), written with e = exp(-|x|) = num/den <= 1 so it never overflows
// and stays accurate (relative) for large negative x: sigmoid = den/(den+num) for x >= 0 and
// num/(den+num) for x < 0.
inline double sigmoid(double x) {
  double num, den;
  exp_nonpositive_fraction(x < 0 ? x : -x, num, den);
  return (x >= 0 ? den : num) / (den + num);
}

// float32 versions, in float arithmetic (twice the SIMD lanes of double), accurate to a few
// float ulp: Cephes expf (range reduction with ln2 split in two, degree-6 polynomial) and tanhf.
inline float exp_nonpositive(float y) {
  constexpr float log2e = 1.44269504088896341f;
  constexpr float ln2_hi = 0.693359375f, ln2_lo = -2.12194440e-4f;
  constexpr float round_shift = 0x1.8p23f;
  y = y < -104.0f ? -104.0f : y;  // expf(-104) is 0 in float already
  float kd = y * log2e + round_shift;
  std::int32_t n;
  std::memcpy(&n, &kd, sizeof kd);
  n -= std::int32_t(0x4B400000);  // the bits of round_shift: leaves n (<= 0)
  kd -= round_shift;
  const float r = (y - kd * ln2_hi) - kd * ln2_lo;
  const float e = (((((1.9875691500E-4f * r + 1.3981999507E-3f) * r + 8.3334519073E-3f) * r +
                     4.1665795894E-2f) * r + 1.6666665459E-1f) * r + 5.0000001201E-1f) *
                      (r * r) + r + 1.0f;
  const std::int32_t n1 = n >> 1, n2 = n - n1;  // both in [-76, 0]: normal scale factors
  const std::uint32_t s1_bits = std::uint32_t(n1 + 127) << 23;  // unsigned: see above
  const std::uint32_t s2_bits = std::uint32_t(n2 + 127) << 23;
  float s1, s2;
  std::memcpy(&s1, &s1_bits, sizeof s1);
  std::memcpy(&s2, &s2_bits, sizeof s2);
  return e * s1 * s2;
}

inline float tanh(float x) {
  const float ax = x < 0 ? -x : x;
  const float z = x * x;
  const float small = ((((-5.70498872745E-3f * z + 2.06390887954E-2f) * z - 5.37397155531E-2f) *
                            z + 1.33314422036E-1f) * z - 3.33332819422E-1f) * z * x + x;
  const float e = exp_nonpositive(-2.0f * ax);
  const float large_abs = (1.0f - e) / (1.0f + e);
  const float large = x < 0 ? -large_abs : large_abs;
  return ax < 0.625f ? small : large;
}

// Its branch |x| < 0.625 alone, as tanh_near_zero_fused/_unfused(double) above.
RESODE_INLINE float tanh_near_zero_fused(float x) {
  const float z = x * x;
  const float poly = __builtin_fmaf(
      __builtin_fmaf(__builtin_fmaf(__builtin_fmaf(-5.70498872745E-3f, z, 2.06390887954E-2f), z,
                                    -5.37397155531E-2f), z, 1.33314422036E-1f), z,
      -3.33332819422E-1f);
  return __builtin_fmaf(poly * z, x, x);
}
RESODE_INLINE float tanh_near_zero_unfused(float x) {
  const float z = x * x;
  return ((((-5.70498872745E-3f * z + 2.06390887954E-2f) * z - 5.37397155531E-2f) * z +
           1.33314422036E-1f) * z - 3.33332819422E-1f) * z * x + x;
}

inline float sigmoid(float x) {
  const float e = exp_nonpositive(x < 0 ? x : -x);
  const float s = 1.0f / (1.0f + e);
  return x >= 0 ? s : e * s;
}

}  // namespace detail

// c as a T: a scalar, or every lane of a SIMD vector type (GCC vector extension), so the
// piecewise-linear activations and every deriv_of_value also run on whole vectors
// (fused_fields.hpp); T(c) does not compile for a vector type.
template <class T>
RESODE_INLINE T splat(double c) {
  if constexpr (std::is_arithmetic_v<T>) {
    return T(c);
  } else {
    using Lane = std::remove_cv_t<std::remove_reference_t<decltype(std::declval<T&>()[0])>>;
    return T{} + Lane(c);
  }
}

// Each activation: value(x) = sigma(x), deriv(x) = sigma'(x), and deriv_of_value(a) = sigma'(x)
// computed from a = sigma(x) alone (tanh' = 1 - a^2, sigmoid' = a (1 - a); the piecewise-linear
// ones have a > 0 exactly when x > 0), so backward sweeps never evaluate exp/tanh again.
// Kinks take the derivative from the left: relu'(0) = 0, leaky_relu'(0) = 0.01.
// piecewise_linear: a compare and a select, no exp (cheap enough to fuse into other loops).
// slope_on_side(v): the slope on the side of the kink where v (x, or a = sigma(x)) lies.
struct Tanh {
  static constexpr bool piecewise_linear = false;
  template <class T> RESODE_INLINE static T value(T x) { return detail::tanh(x); }
  template <class T> RESODE_INLINE static T deriv(T x) { return deriv_of_value(value(x)); }
  template <class T> RESODE_INLINE static T deriv_of_value(T a) { return splat<T>(1) - a * a; }
};
struct Sigmoid {
  static constexpr bool piecewise_linear = false;
  template <class T> RESODE_INLINE static T value(T x) { return detail::sigmoid(x); }
  template <class T> RESODE_INLINE static T deriv(T x) { return deriv_of_value(value(x)); }
  template <class T> RESODE_INLINE static T deriv_of_value(T a) { return a * (splat<T>(1) - a); }
};
struct Relu {
  static constexpr bool piecewise_linear = true;
  template <class T> RESODE_INLINE static T value(T x) { return x > splat<T>(0) ? x : splat<T>(0); }
  template <class T> RESODE_INLINE static T deriv(T x) { return slope_on_side(x); }
  template <class T> RESODE_INLINE static T deriv_of_value(T a) { return slope_on_side(a); }
  template <class T> RESODE_INLINE static T slope_on_side(T v) {
    return v > splat<T>(0) ? splat<T>(1) : splat<T>(0);
  }
};
struct LeakyRelu {
  static constexpr bool piecewise_linear = true;
  static constexpr double slope = 0.01;
  template <class T> RESODE_INLINE static T value(T x) {
    return x > splat<T>(0) ? x : splat<T>(slope) * x;
  }
  template <class T> RESODE_INLINE static T deriv(T x) { return slope_on_side(x); }
  template <class T> RESODE_INLINE static T deriv_of_value(T a) { return slope_on_side(a); }
  template <class T> RESODE_INLINE static T slope_on_side(T v) {
    return v > splat<T>(0) ? splat<T>(1) : splat<T>(slope);
  }
};
struct Identity {
  static constexpr bool piecewise_linear = true;
  template <class T> RESODE_INLINE static T value(T x) { return x; }
  template <class T> RESODE_INLINE static T deriv(T) { return splat<T>(1); }
  template <class T> RESODE_INLINE static T deriv_of_value(T) { return splat<T>(1); }
};

// Calls f(ActivationType{}) for the runtime choice, so every kernel below is compiled per
// activation and its inner loop has no switch.
template <class F>
decltype(auto) with_activation(Activation a, F&& f) {
  switch (a) {
    case Activation::tanh: return f(Tanh{});
    case Activation::relu: return f(Relu{});
    case Activation::sigmoid: return f(Sigmoid{});
    case Activation::leaky_relu: return f(LeakyRelu{});
    case Activation::identity: break;
  }
  return f(Identity{});
}

namespace detail {

// tanh over chunks of this many entries: a chunk whose entries all lie in |x| < 0.625 (a NaN
// does not) takes the near-zero branch alone, the same bits without the exponential and its
// division (float: without any division); pre-activations of a tanh are often all that small.
constexpr index_t tanh_chunk = 64;

template <class T>
RESODE_INLINE bool all_near_zero(index_t n, const T* x) {
  constexpr T bound = T(tanh_near_zero_bound);
  int far = 0;  // an OR reduction of comparisons: vectorises
  for (index_t i = 0; i < n; ++i) far |= !(x[i] > -bound && x[i] < bound);
  return far == 0;
}

// Fused: the near-zero branch with fmas (the kernels of CPUs that have them), else without.
template <bool Fused, class T>
RESODE_INLINE void tanh_in_chunks(index_t n, const T* z, T* out) {
  for (index_t begin = 0; begin < n; begin += tanh_chunk) {
    const index_t m = std::min(tanh_chunk, n - begin);
    const T* x = z + begin;
    T* y = out + begin;
    if (!all_near_zero(m, x)) {
      for (index_t i = 0; i < m; ++i) y[i] = tanh(x[i]);
    } else if constexpr (Fused) {
      for (index_t i = 0; i < m; ++i) y[i] = tanh_near_zero_fused(x[i]);
    } else {
      for (index_t i = 0; i < m; ++i) y[i] = tanh_near_zero_unfused(x[i]);
    }
  }
}

// sigma over `rows` rows of `count` entries each, row stride ld (ld = count: one flat run).
// Where the kernel set is known (a dispatching build: AVX2 and AVX-512 have fmas, baseline
// x86-64 has none) tanh takes tanh_in_chunks; elsewhere every entry the full form.
template <class Act, class T>
void activate_rows(index_t rows, index_t count, index_t ld, const T* z, T* out) {
  if constexpr (std::is_same_v<Act, Tanh> && RESODE_DISPATCH) {
    if (simd_kernels_run())
      return dispatch_simd([&]() RESODE_KERNEL {
        for (index_t r = 0; r < rows; ++r) tanh_in_chunks<true>(count, z + r * ld, out + r * ld);
      });
    return dispatch([&]() RESODE_KERNEL {  // baseline
      for (index_t r = 0; r < rows; ++r) tanh_in_chunks<false>(count, z + r * ld, out + r * ld);
    });
  }
  dispatch([&]() RESODE_KERNEL {
    for (index_t r = 0; r < rows; ++r)
      for (index_t i = 0; i < count; ++i) out[r * ld + i] = Act::value(z[r * ld + i]);
  });
}

}  // namespace detail

// out[i] = sigma(z[i]), i < n (out may alias z).
template <class Act, class T>
void activate(index_t n, const T* z, T* out) {
  detail::activate_rows<Act>(1, n, n, z, out);
}

// out[i] = g[i] * sigma'(x[i]) given a[i] = sigma(x[i]): the chain rule through an elementwise
// activation (out may alias g).
template <class Act, class T>
void multiply_by_slope(index_t n, const T* a, const T* g, T* out) {
  dispatch([&]() RESODE_KERNEL {
    for (index_t i = 0; i < n; ++i) out[i] = g[i] * Act::deriv_of_value(a[i]);
  });
}

// The same two over `rows` rows of `count` entries each, row stride ld (the active columns of a
// feature-major block, cde_field.hpp), in one dispatch.
template <class Act, class T>
void activate(index_t rows, index_t count, index_t ld, const T* z, T* out) {
  detail::activate_rows<Act>(rows, count, ld, z, out);
}
template <class Act, class T>
void multiply_by_slope(index_t rows, index_t count, index_t ld, const T* a, const T* g, T* out) {
  dispatch([&]() RESODE_KERNEL {
    for (index_t r = 0; r < rows; ++r)
      for (index_t i = 0; i < count; ++i)
        out[r * ld + i] = g[r * ld + i] * Act::deriv_of_value(a[r * ld + i]);
  });
}

// out[i] = sigma'(z[i]).
template <class Act, class T>
void derivative(index_t n, const T* z, T* out) {
  dispatch([&]() RESODE_KERNEL {
    for (index_t i = 0; i < n; ++i) out[i] = Act::deriv(z[i]);
  });
}

}  // namespace resode
