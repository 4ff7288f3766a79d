#pragma once
/// @file timer.hpp
/// @brief Wall-clock timing and small statistics helpers.

#include <algorithm>
#include <chrono>
#include <vector>

namespace sgpt {

/// A stopwatch on the steady clock.
class Timer {
 public:
  Timer() : start_(std::chrono::steady_clock::now()) {}
  /// Restarts the stopwatch from now.
  void reset() { start_ = std::chrono::steady_clock::now(); }
  /// Seconds since construction or the last reset().
  double seconds() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  }

 private:
  std::chrono::steady_clock::time_point start_;
};

/// Median of a list of samples (0 for an empty list).
inline double median(std::vector<double> v) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  std::size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

}  // namespace sgpt
