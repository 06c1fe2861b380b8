// Exceptions thrown by the core. Bindings map std::invalid_argument to ValueError and
// non_finite_error to resode.NonFiniteError (a ValueError and FloatingPointError).
#pragma once
#include <stdexcept>
#include <string>

namespace resode {

// A state, loss or gradient became NaN/Inf during a sweep. `step` is the first step (or layer)
// whose result was not finite, `time` its end time t_{step+1}.
class non_finite_error : public std::runtime_error {
 public:
  non_finite_error(const std::string& what, long step, double time)
      : std::runtime_error(what), step_(step), time_(time) {}
  long step() const noexcept { return step_; }
  double time() const noexcept { return time_; }

 private:
  long step_;
  double time_;
};

inline void require(bool ok, const std::string& message) {
  if (!ok) throw std::invalid_argument(message);
}

}  // namespace resode
