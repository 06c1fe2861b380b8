// Butcher tableaux of the explicit fixed-step methods: stages k_i = f(x + dt sum_{l<i} a_il k_l),
// x_{j+1} = x_j + dt sum_i b_i k_i. Every stepper, forward or reverse, reads only this table,
// so a method is one entry here.
#pragma once
#include <string>

#include "errors.hpp"

namespace resode {

enum class Method { euler, midpoint, rk4 };

struct Tableau {
  static constexpr int max_stages = 8;  // room for the adaptive tableaux (embedded_tableau.hpp)
  int stages = 1;
  double a[max_stages][max_stages] = {};
  double b[max_stages] = {};
};

inline Tableau tableau(Method m) {
  Tableau t;
  switch (m) {
    case Method::euler:  // x + dt f(x)
      t.stages = 1, t.b[0] = 1.0;
      break;
    case Method::midpoint:  // x + dt f(x + dt/2 f(x))
      t.stages = 2, t.a[1][0] = 0.5, t.b[1] = 1.0;
      break;
    case Method::rk4:  // the classic RK4 (not the 3/8 rule)
      t.stages = 4;
      t.a[1][0] = 0.5, t.a[2][1] = 0.5, t.a[3][2] = 1.0;
      t.b[0] = 1.0 / 6, t.b[1] = 2.0 / 6, t.b[2] = 2.0 / 6, t.b[3] = 1.0 / 6;
      break;
  }
  return t;
}

inline Method parse_method(const std::string& name) {
  if (name == "euler") return Method::euler;
  if (name == "midpoint") return Method::midpoint;
  if (name == "rk4") return Method::rk4;
  throw std::invalid_argument("method must be 'euler', 'midpoint' or 'rk4'; got '" + name + "'");
}

}  // namespace resode
