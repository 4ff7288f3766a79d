// Lesson 01, tasks 1-3: what a training step costs, computed from the configuration alone.
// Every number here is checked against the real model: the layout's buffers, the memory
// tracker, and hand-computed values. Do not call GPTConfig::num_parameters or
// training_flops_per_token: derive the numbers.

#include "training_step.hpp"

namespace sgpt::lesson01 {

ParameterCount count_parameters(const GPTConfig& cfg) {
  // TODO(lesson 01, task 1): count the parameters from the shapes
  // Contract: the comment of this function in the header. Hints: README.md, section "Hints", task 1.
  SGPT_TODO(1, 1, "count the parameters from the shapes");
}

double flops_per_token(const GPTConfig& cfg, int64_t T) {
  // TODO(lesson 01, task 2): training FLOPs per token, 6N plus attention
  // Contract: the comment of this function in the header. Hints: README.md, section "Hints", task 2.
  SGPT_TODO(1, 2, "training FLOPs per token, 6N plus attention");
}

double mfu(const GPTConfig& cfg, int64_t B, int64_t T, double step_seconds, double peak_flops) {
  // TODO(lesson 01, task 2): model FLOPs utilisation of a measured step
  // Contract: the comment of this function in the header. Hints: README.md, section "Hints", task 2.
  SGPT_TODO(1, 2, "model FLOPs utilisation of a measured step");
}

MemoryEstimate estimate_memory(const GPTConfig& cfg, int64_t B, int64_t T, DType dtype) {
  // TODO(lesson 01, task 3): bytes per memory category of one training step
  // Contract: the comment of this function in the header. Hints: README.md, section "Hints", task 3.
  SGPT_TODO(1, 3, "bytes per memory category of one training step");
}

}  // namespace sgpt::lesson01
