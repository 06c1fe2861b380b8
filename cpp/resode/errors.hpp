// Exceptions thrown by the core. Bindings map std::invalid_argument to ValueError and
// non_finite_error to resode.NonFiniteError (a ValueError and FloatingPointError).
#pragma once
#include <stdexcept>
#include <string>
#include <type_traits>

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

// An adaptive step-size failure (adaptive.hpp): max_steps reached, or a step below the
// resolution of t. Mapped to resode.StepSizeError (a ValueError).
class step_size_error : public std::invalid_argument {
 public:
  step_size_error(const std::string& what, long sample, double t, double dt, double error)
      : std::invalid_argument(what), sample(sample), t(t), dt(dt), error(error) {}
  long sample;
  double t, dt, error;
};

// Throws std::invalid_argument(message) unless ok.
inline void require(bool ok, const char* message) {
  if (!ok) throw std::invalid_argument(message);
}

// The same with a message built only on failure: message() returns it. Checks in loops (one per
// label) must not build a string per element: that cost 140 ns a label.
template <class Message, class = std::enable_if_t<std::is_invocable_v<Message&>>>
void require(bool ok, Message&& message) {
  if (!ok) throw std::invalid_argument(message());
}

}  // namespace resode
