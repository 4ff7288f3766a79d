// Lesson 01, tasks 1-3: what a training step costs, computed from the configuration alone.
// Every number here is checked against the real model: the layout's buffers, the memory
// tracker, and hand-computed values. Do not call GPTConfig::num_parameters or
// training_flops_per_token: derive the numbers.

#include "training_step.hpp"

namespace sgpt::lesson01 {

ParameterCount count_parameters(const GPTConfig& cfg) {
  // TODO(lesson 01, task 1): count the parameters from the shapes
  const int64_t C = cfg.n_embd, L = cfg.n_layer, Vp = cfg.padded_vocab_size, maxT = cfg.max_seq_len;
  ParameterCount n;
  n.embeddings = Vp * C + maxT * C;
  const int64_t ln = 2 * C;                         // weight and bias
  const int64_t attn = (3 * C * C + 3 * C) + (C * C + C);  // qkv and the output projection
  const int64_t mlp = (4 * C * C + 4 * C) + (4 * C * C + C);  // up and down projections
  n.per_block = ln + attn + ln + mlp;
  n.blocks = L * n.per_block;
  n.final_norm = 2 * C;
  n.lm_head = cfg.tied_embeddings ? 0 : Vp * C;
  n.total = n.embeddings + n.blocks + n.final_norm + n.lm_head;
  return n;
  // END TODO
}

double flops_per_token(const GPTConfig& cfg, int64_t T) {
  // TODO(lesson 01, task 2): training FLOPs per token, 6N plus attention
  const double N = static_cast<double>(count_parameters(cfg).total);
  return 6.0 * N + 12.0 * cfg.n_layer * double(cfg.n_embd) * double(T);
  // END TODO
}

double mfu(const GPTConfig& cfg, int64_t B, int64_t T, double step_seconds, double peak_flops) {
  // TODO(lesson 01, task 2): model FLOPs utilisation of a measured step
  SGPT_CHECK(step_seconds > 0 && peak_flops > 0, "mfu: step time and peak must be positive");
  const double achieved = flops_per_token(cfg, T) * double(B) * double(T) / step_seconds;
  return achieved / peak_flops;
  // END TODO
}

MemoryEstimate estimate_memory(const GPTConfig& cfg, int64_t B, int64_t T, DType dtype) {
  // TODO(lesson 01, task 3): bytes per memory category of one training step
  const int64_t s = static_cast<int64_t>(dtype_size(dtype));
  const int64_t N = count_parameters(cfg).total;
  const int64_t C = cfg.n_embd, NH = cfg.n_head, L = cfg.n_layer, Vp = cfg.padded_vocab_size;
  const int64_t BT = B * T;
  MemoryEstimate e;
  e.parameters = N * s;
  e.gradients = N * s;
  e.optimizer_state = 2 * N * s;
  const int64_t block_cache = 16 * BT * C + 4 * BT + NH * B * T * T;  // ln1 3C.. see BlockCache
  const int64_t head = BT * C + 2 * BT + BT * Vp + BT + BT * C;        // lnf, stats, logits, losses, dlnf
  const int64_t scratch = 4 * BT * C + 2 * 4 * BT * C + 3 * BT * C;  // BlockGradScratch
  const int64_t floats = BT * C /*encoded*/ + L * block_cache + head + scratch + 2 * BT * C /*dresid*/;
  e.activations = floats * s + 2 * BT * static_cast<int64_t>(sizeof(int32_t));  // tokens, targets
  return e;
  // END TODO
}

}  // namespace sgpt::lesson01
