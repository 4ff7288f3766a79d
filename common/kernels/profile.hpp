#pragma once
/// @file profile.hpp
/// @brief Where the time goes: optional per-op timing of every operator in ops.hpp.
///
/// Off by default (one branch per op). When on, each op waits for its device before and after
/// it runs, so the times are exact per op but the whole run is slower; benchmarks report both.

#include <cstdint>
#include <string>
#include <vector>

#include "core/tensor.hpp"

namespace sgpt {

/// Total time and call count of one operator since the last reset.
struct OpProfileEntry {
  std::string op;        ///< operator name, e.g. "matmul_forward"
  int64_t calls = 0;     ///< number of timed calls
  double seconds = 0;    ///< total wall-clock seconds over those calls (device synchronised)
};

/// Turns per-op timing on or off (also on when the environment sets SGPT_PROFILE_OPS=1).
void set_op_profiling(bool on);
/// Whether per-op timing is on.
bool op_profiling();
/// The entries, largest total time first.
std::vector<OpProfileEntry> op_profile();
/// Drops every entry (profiling stays on or off as it was).
void reset_op_profile();
/// A table of the profile (op, calls, total ms, share) for people.
std::string op_profile_report();

namespace detail {
/// Times the enclosing op when profiling is on.
class OpScope {
 public:
  /// Starts timing `op` (a string literal: it is kept, not copied) on `t`'s device, synchronising
  /// that device first. Ops called from inside another timed op are not timed separately.
  OpScope(const char* op, const Tensor& t);
  ~OpScope();
  OpScope(const OpScope&) = delete;
  OpScope& operator=(const OpScope&) = delete;

 private:
  const char* op_;
  Device device_;
  double start_ = -1;
};
}  // namespace detail

}  // namespace sgpt
