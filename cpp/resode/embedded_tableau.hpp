// Runge-Kutta tableaux with an error estimate and a continuous extension, for the adaptive
// integrators (adaptive.hpp) and for dense output of every method (docs/guide/adaptive.md):
//   K_i     = f(x + dt sum_{l<i} a_il K_l)
//   x_next  = x + dt sum_i b_i K_i          err = dt sum_i e_i K_i   (e = b - bhat)
//   x(t + theta dt) = x + dt sum_i bt_i(theta) K_i,   bt_i(theta) = sum_{p=1..4} P_ip theta^p
// The adaptive methods are FSAL: their last stage input is x_next (a_s,l = b_l), so K_s =
// f(x_next) is the next step's first stage. A fixed-step method gets the same form for dense
// output by appending such a stage, f(x_next), and the cubic Hermite interpolant of x, x_next,
// f(x), f(x_next) written in the stages (see hermite()).
#pragma once
#include <string>

#include "errors.hpp"
#include "tableau.hpp"

namespace resode {

enum class AdaptiveMethod { dopri5, tsit5, bosh3 };

struct EmbeddedTableau {
  static constexpr int max_stages = 8;
  int stages = 0;
  int error_order_k = 0;  // k = q + 1 for an error estimator of order q (the controller's k)
  bool adaptive = false;  // has an error estimate (e != 0)
  double a[max_stages][max_stages] = {};
  double b[max_stages] = {};
  double e[max_stages] = {};
  double P[max_stages][4] = {};  // bt_i(theta) = P_i0 theta + P_i1 theta^2 + ...

  // Stages the solution x_next depends on: the last (FSAL) stage only feeds the error estimate
  // and the interpolant.
  int solution_stages() const { return stages - 1; }
  double interpolant(int i, double theta) const {
    return theta * (P[i][0] + theta * (P[i][1] + theta * (P[i][2] + theta * P[i][3])));
  }
};

namespace detail {
// Makes the last stage x_next itself: a_s,l = b_l (bitwise the same doubles).
inline void close_with_fsal_stage(EmbeddedTableau& t) {
  for (int l = 0; l < t.stages - 1; ++l) t.a[t.stages - 1][l] = t.b[l];
}

// The cubic Hermite interpolant of x, x1 = x + dt sum b_i K_i, f(x) = K_1, f(x1) = K_s:
//   x(theta) = x + h01(theta) (x1 - x) + h10(theta) dt K_1 + h11(theta) dt K_s
// with h01 = 3 theta^2 - 2 theta^3, h10 = theta - 2 theta^2 + theta^3, h11 = theta^3 - theta^2.
inline void hermite(EmbeddedTableau& t) {
  const int s = t.stages - 1;
  for (int i = 0; i < t.stages; ++i) {
    t.P[i][0] = 0.0, t.P[i][1] = 3.0 * t.b[i], t.P[i][2] = -2.0 * t.b[i], t.P[i][3] = 0.0;
  }
  t.P[0][0] += 1.0, t.P[0][1] += -2.0, t.P[0][2] += 1.0;
  t.P[s][1] += -1.0, t.P[s][2] += 1.0;
}
}  // namespace detail

// The fixed-step tableau with an appended stage f(x_next) and the Hermite interpolant.
inline EmbeddedTableau dense_tableau(Method m) {
  const Tableau f = tableau(m);
  EmbeddedTableau t;
  t.stages = f.stages + 1;
  for (int i = 0; i < f.stages; ++i) {
    t.b[i] = f.b[i];
    for (int l = 0; l < i; ++l) t.a[i][l] = f.a[i][l];
  }
  detail::close_with_fsal_stage(t);
  detail::hermite(t);
  return t;
}

inline EmbeddedTableau embedded_tableau(AdaptiveMethod m) {
  EmbeddedTableau t;
  t.adaptive = true;
  switch (m) {
    case AdaptiveMethod::dopri5: {  // Dormand & Prince (1980), 5(4), FSAL
      t.stages = 7, t.error_order_k = 5;
      const double a[6][6] = {
          {1.0 / 5},
          {3.0 / 40, 9.0 / 40},
          {44.0 / 45, -56.0 / 15, 32.0 / 9},
          {19372.0 / 6561, -25360.0 / 2187, 64448.0 / 6561, -212.0 / 729},
          {9017.0 / 3168, -355.0 / 33, 46732.0 / 5247, 49.0 / 176, -5103.0 / 18656}};
      for (int i = 1; i < 6; ++i)
        for (int l = 0; l < i; ++l) t.a[i][l] = a[i - 1][l];
      const double b[7] = {35.0 / 384, 0.0, 500.0 / 1113, 125.0 / 192, -2187.0 / 6784,
                           11.0 / 84, 0.0};
      // e = b - bhat (the negative of SciPy's RK45.E; the norm does not see the sign)
      const double e[7] = {71.0 / 57600,  0.0,           -71.0 / 16695, 71.0 / 1920,
                           -17253.0 / 339200, 22.0 / 525, -1.0 / 40};
      // Shampine's 4th-order continuous extension (SciPy's RK45.P)
      const double P[7][4] = {
          {1.0, -8048581381.0 / 2820520608, 8663915743.0 / 2820520608,
           -12715105075.0 / 11282082432},
          {0.0, 0.0, 0.0, 0.0},
          {0.0, 131558114200.0 / 32700410799, -68118460800.0 / 10900136933,
           87487479700.0 / 32700410799},
          {0.0, -1754552775.0 / 470086768, 14199869525.0 / 1410260304,
           -10690763975.0 / 1880347072},
          {0.0, 127303824393.0 / 49829197408, -318862633887.0 / 49829197408,
           701980252875.0 / 199316789632},
          {0.0, -282668133.0 / 205662961, 2019193451.0 / 616988883, -1453857185.0 / 822651844},
          {0.0, 40617522.0 / 29380423, -110615467.0 / 29380423, 69997945.0 / 29380423}};
      for (int i = 0; i < 7; ++i) {
        t.b[i] = b[i], t.e[i] = e[i];
        for (int p = 0; p < 4; ++p) t.P[i][p] = P[i][p];
      }
      detail::close_with_fsal_stage(t);
      return t;
    }
    case AdaptiveMethod::tsit5: {  // Tsitouras (2011), 5(4), FSAL
      t.stages = 7, t.error_order_k = 5;
      const double a[5][5] = {
          {0.161},
          {-0.8480655492356988544426874250230774675121177393430391537369234245294192976164141156943e-2,
           0.3354806554923569885444268742502307746751211773934303915373692342452941929761641411569},
          {2.897153057105493432130432594192938764924887287701866490314866693455023795137503079289,
           -6.359448489975074843148159912383825625952700647415626703305928850207288721235210244366,
           4.362295432869581411017727318190886861027813359713760212991062156752264926097707165077},
          {5.325864828439256604428877920840511317836476253097040101202360397727981648835607691791,
           -11.74888356406282787774717033978577296188744178259862899288666928009020615663593781589,
           7.495539342889836208304604784564358155658679161518186721010132816213648793440552049753,
           -0.9249506636175524925650207933207191611349983406029535244034750452930469056411389539635e-1},
          {5.861455442946420028659251486982647890394337666164814434818157239052507339770711679748,
           -12.92096931784710929170611868178335939541780751955743459166312250439928519268343184452,
           8.159367898576158643180400794539253485181918321135053305748355423955009222648673734986,
           -0.7158497328140099722453054252582973869127213147363544882721139659546372402303777878835e-1,
           -0.2826905039406838290900305721271224146717633626879770007617876201276764571291579142206e-1}};
      for (int i = 1; i < 6; ++i)
        for (int l = 0; l < i; ++l) t.a[i][l] = a[i - 1][l];
      const double b[7] = {
          0.9646076681806522951816731316512876333711995238157997181903319145764851595234062815396e-1,
          1.0 / 100,
          0.4798896504144995747752495322905965199130404621990332488332634944254542060153074523509,
          1.379008574103741893192274821856872770756462643091360525934940067397245698027561293331,
          -3.290069515436080679901047585711363850115683290894936158531296799594813811049925401677,
          2.324710524099773982415355918398765796109060233222962411944060046314465391054716027841,
          0.0};
      const double bhat[7] = {
          0.9468075576583945807478876255758922856117527357724631226139574065785592789071067303271e-1,
          0.9183565540343253096776363936645313759813746240984095238905939532922955247253608687270e-2,
          0.4877705284247615707855642599631228241516691959761363774365216240304071651579571959813,
          1.234297566930478985655109673884237654035539930748192848315425833500484878378061439761,
          -2.707712349983525454881109975059321670689605166938197378763992255714444407154902012702,
          1.866628418170587035753719399566211498666255505244122593996591602841258328965767580089,
          1.0 / 66};
      for (int i = 0; i < 7; ++i) t.b[i] = b[i], t.e[i] = b[i] - bhat[i];
      // Tsitouras' interpolant, expanded from its factored form (b_i(theta) polynomials).
      auto set = [&](int i, double c1, double c2, double c3, double c4) {
        t.P[i][0] = c1, t.P[i][1] = c2, t.P[i][2] = c3, t.P[i][3] = c4;
      };
      {  // b1 = -1.0530884977290216 t (t - 1.3299890189751412)(t^2 - 1.4364028541716351 t + 0.7139816917074209)
        const double k = -1.0530884977290216, r = 1.3299890189751412, p = 1.4364028541716351,
                     q = 0.7139816917074209;
        // t (t - r)(t^2 - p t + q) = t^4 - (p + r) t^3 + (q + r p) t^2 - r q t
        set(0, -k * r * q, k * (q + r * p), -k * (p + r), k);
      }
      auto quadratic = [&](int i, double k, double p, double q) {  // k t^2 (t^2 - p t + q)
        set(i, 0.0, k * q, -k * p, k);
      };
      auto two_roots = [&](int i, double k, double r1, double r2) {  // k (t - r1)(t - r2) t^2
        set(i, 0.0, k * r1 * r2, -k * (r1 + r2), k);
      };
      quadratic(1, 0.1017, 2.1966568338249754, 1.2949852507374631);
      quadratic(2, 2.490627285651252793, 2.38535645472061657, 1.57803468208092486);
      two_roots(3, -16.54810288924490272, 1.21712927295533244, 0.61620406037800089);
      two_roots(4, 47.37952196281928122, 1.203071208372362603, 0.658047292653547382);
      two_roots(5, -34.87065786149660974, 1.2, 0.666666666666666667);
      two_roots(6, 2.5, 1.0, 0.6);
      detail::close_with_fsal_stage(t);
      return t;
    }
    case AdaptiveMethod::bosh3: {  // Bogacki & Shampine (1989), 3(2), FSAL
      t.stages = 4, t.error_order_k = 3;
      t.a[1][0] = 0.5;
      t.a[2][1] = 0.75;
      t.b[0] = 2.0 / 9, t.b[1] = 1.0 / 3, t.b[2] = 4.0 / 9;
      const double bhat[4] = {7.0 / 24, 1.0 / 4, 1.0 / 3, 1.0 / 8};
      for (int i = 0; i < 4; ++i) t.e[i] = t.b[i] - bhat[i];
      detail::close_with_fsal_stage(t);
      detail::hermite(t);
      return t;
    }
  }
  return t;
}

inline bool is_adaptive_method(const std::string& name) {
  return name == "dopri5" || name == "tsit5" || name == "bosh3";
}

inline AdaptiveMethod parse_adaptive_method(const std::string& name) {
  if (name == "dopri5") return AdaptiveMethod::dopri5;
  if (name == "tsit5") return AdaptiveMethod::tsit5;
  if (name == "bosh3") return AdaptiveMethod::bosh3;
  throw std::invalid_argument("adaptive method must be 'dopri5', 'tsit5' or 'bosh3'; got '" +
                              name + "'");
}

// The tableau of any method by name: adaptive ones as they are, fixed-step ones for dense output.
inline EmbeddedTableau embedded_tableau(const std::string& name) {
  return is_adaptive_method(name) ? embedded_tableau(parse_adaptive_method(name))
                                  : dense_tableau(parse_method(name));
}

}  // namespace resode
