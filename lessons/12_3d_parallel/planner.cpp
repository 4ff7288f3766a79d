// Lesson 12, task 3: the planner. Memory is the sum of lessons 01-11's formulas for one rank;
// time is compute at a stated FLOP/s, plus the pipeline bubble, plus every message that is not
// hidden behind compute. A plan is only as good as these assumptions: the README says which
// ones a real run breaks.

#include "planner.hpp"

#include <algorithm>
#include <cmath>

#include "core/check.hpp"
#include "tp_stage.hpp"

namespace sgpt::lesson12 {

MemoryBreakdown predict_stage_memory(const Job& job, const Layout& l, int stage) {
  // TODO(lesson 12, task 3): one rank's model state (with ZeRO) and its peak activations
  // Contract: the comment of this function in the header. Hints: README.md, section "Hints", task 3.
  SGPT_TODO(12, 3, "one rank's model state (with ZeRO) and its peak activations");
}

MemoryBreakdown predict_memory(const Job& job, const Layout& l) {
  // TODO(lesson 12, task 3): the rank that needs the most
  // Contract: the comment of this function in the header. Hints: README.md, section "Hints", task 3.
  SGPT_TODO(12, 3, "the rank that needs the most");
}

StepTime predict_step_time(const Job& job, const Cluster& c, const Layout& l) {
  // TODO(lesson 12, task 3): compute + bubble + the communication that is not overlapped
  // Contract: the comment of this function in the header. Hints: README.md, section "Hints", task 3.
  SGPT_TODO(12, 3, "compute + bubble + the communication that is not overlapped");
}

std::vector<Plan> plan(const Job& job, const Cluster& c) {
  // TODO(lesson 12, task 3): enumerate, predict, drop what does not fit, rank
  // Contract: the comment of this function in the header. Hints: README.md, section "Hints", task 3.
  SGPT_TODO(12, 3, "enumerate, predict, drop what does not fit, rank");
}

}  // namespace sgpt::lesson12
