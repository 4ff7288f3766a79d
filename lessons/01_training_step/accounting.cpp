// Lesson 01, tasks 1-3: what a training step costs, computed from the configuration alone.
// Every number here is checked against the real model: the layout's buffers, the memory
// tracker, and hand-computed values. Do not call GPTConfig::num_parameters or
// training_flops_per_token: derive the numbers.

#include "training_step.hpp"

namespace sgpt::lesson01 {

ParameterCount count_parameters(const GPTConfig& cfg) {
  // TODO(lesson 01, task 1): count the parameters from the shapes
  // HINT: a block holds ln_1 (w, b), c_attn [3C,C] + [3C], c_proj [C,C] + [C], ln_2 (w, b),
  // HINT: c_fc [4C,C] + [4C] and mlp c_proj [C,4C] + [C]. wte has Vp rows, wpe max_seq_len rows.
  SGPT_TODO(1, 1, "count the parameters from the shapes");
}

double flops_per_token(const GPTConfig& cfg, int64_t T) {
  // TODO(lesson 01, task 2): training FLOPs per token, 6N plus attention
  // HINT: N is your count_parameters(cfg).total; attention adds 12 * L * C * T.
  SGPT_TODO(1, 2, "training FLOPs per token, 6N plus attention");
}

double mfu(const GPTConfig& cfg, int64_t B, int64_t T, double step_seconds, double peak_flops) {
  // TODO(lesson 01, task 2): model FLOPs utilisation of a measured step
  SGPT_TODO(1, 2, "model FLOPs utilisation of a measured step");
}

MemoryEstimate estimate_memory(const GPTConfig& cfg, int64_t B, int64_t T, DType dtype) {
  // TODO(lesson 01, task 3): bytes per memory category of one training step
  // HINT: parameters and gradients: N elements each; AdamW: two moments of N elements.
  // HINT: activations: tokens and targets (i32), the encoder output, L block caches, the head
  // HINT: cache, the block-gradient scratch and two residual-gradient buffers (see gpt.cpp).
  SGPT_TODO(1, 3, "bytes per memory category of one training step");
}

}  // namespace sgpt::lesson01
