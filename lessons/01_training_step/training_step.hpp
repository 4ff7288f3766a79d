#pragma once
/// @file training_step.hpp
/// @brief Lesson 01: what a training step costs (parameters, FLOPs, memory) and one AdamW step.
///
/// You write the functions below in accounting.cpp (tasks 1-3) and optimizer.cpp (tasks 4-5).
/// The library has reference versions of some of them (GPTConfig::num_parameters,
/// training_flops_per_token, sgpt::AdamW, adamw_update): do not call those; the point is to
/// derive the numbers yourself. The tests compare with independent ground truth (the real
/// buffers, the memory tracker, hand-computed values).

#include <cstdint>

#include "core/tensor.hpp"
#include "kernels/ops.hpp"
#include "model/config.hpp"
#include "model/gpt.hpp"
#include "model/layout.hpp"

namespace sgpt::lesson01 {

// ---- task 1: parameters ------------------------------------------------------------------------

/// Parameters of a configuration, by where they live in the flat buffer.
struct ParameterCount {
  int64_t embeddings = 0;  ///< wte [Vp,C] + wpe [maxT,C]
  int64_t per_block = 0;   ///< one transformer block (LayerNorms, attention, MLP, with biases)
  int64_t blocks = 0;      ///< all L blocks
  int64_t final_norm = 0;  ///< ln_f weight and bias
  int64_t lm_head = 0;     ///< the untied output layer [Vp,C]; 0 when tied to wte
  int64_t total = 0;       ///< everything
};

/// Task 1: counts the parameters of `cfg` from its shapes.
ParameterCount count_parameters(const GPTConfig& cfg);

// ---- task 2: FLOPs and MFU ---------------------------------------------------------------------

/// Task 2a: training FLOPs per token at sequence length T: 6 per parameter (2 forward, 4
/// backward) plus attention's QK^T and AV, 12*L*C*T (forward 4*L*C*T, backward twice that).
double flops_per_token(const GPTConfig& cfg, int64_t T);

/// Task 2b: model FLOPs utilisation of a step over B*T tokens that took `step_seconds` on a
/// device that peaks at `peak_flops` FLOP/s: achieved FLOP/s divided by the peak.
double mfu(const GPTConfig& cfg, int64_t B, int64_t T, double step_seconds, double peak_flops);

// ---- task 3: memory ------------------------------------------------------------------------------

/// Bytes per memory category (the tracker's categories) of one training step.
struct MemoryEstimate {
  int64_t parameters = 0;
  int64_t gradients = 0;
  int64_t optimizer_state = 0;
  int64_t activations = 0;  ///< everything GPT allocates for a batch [B,T]: caches and scratch
  /// Sum of the four.
  int64_t total() const { return parameters + gradients + optimizer_state + activations; }
};

/// Task 3: the bytes that sgpt::GPT (with an AdamW optimizer) holds during a step on a batch
/// [B,T] in element type `dtype` (F32 or F64). Tokens and targets are i32. Read
/// ModelActivations::ensure and make_*_cache in common/model/gpt.cpp for what is allocated.
MemoryEstimate estimate_memory(const GPTConfig& cfg, int64_t B, int64_t T, DType dtype);

// ---- tasks 4 and 5: AdamW and the training step --------------------------------------------------

/// Task 4: one AdamW update of a contiguous range, in place on `param`, `m` and `v` (CPU tensors
/// of one dtype, F32 or F64, same numel). `t` is the 1-based step (for the bias correction),
/// `lr` the learning rate of this step (cfg.lr is ignored); weight decay is decoupled
/// (Loshchilov & Hutter) and applied only when `decay` is true.
void adamw_step(Tensor& param, const Tensor& grad, Tensor& m, Tensor& v, const AdamWConfig& cfg, int64_t t,
                double lr, bool decay);

/// AdamW over the whole flat buffer of a model: moments, step counter, and which parameters decay.
/// step() is given (it calls your adamw_step on every parameter tensor).
class Optimizer {
 public:
  Optimizer(const ParameterLayout& layout, const AdamWConfig& cfg, DType dtype);
  /// Increments t, then updates every parameter tensor with adamw_step.
  void step(Tensor& params, const Tensor& grads, double lr);
  int64_t t() const { return t_; }
  const Tensor& m() const { return m_; }
  const Tensor& v() const { return v_; }

 private:
  const ParameterLayout* layout_;
  AdamWConfig cfg_;
  Tensor m_, v_;
  int64_t t_ = 0;
};

/// Hyper-parameters of the training loop.
struct TrainConfig {
  double max_lr = 1e-3;
  double min_lr = 1e-4;
  int64_t warmup = 10;        ///< linear warmup steps
  int64_t total_steps = 100;  ///< cosine decay ends here
  double clip = 1.0;          ///< global gradient-norm clip (<= 0: off)
};

/// What one step reports.
struct StepStats {
  double loss = 0;       ///< mean loss of the batch (before the update)
  double grad_norm = 0;  ///< global gradient norm before clipping
  double lr = 0;         ///< the learning rate used
};

/// Task 5: one training step number `step` (0-based) on the batch (x, y): zero the gradients,
/// forward, backward, clip, look up the learning rate (sgpt::lr_at), update with `opt`.
StepStats train_step(GPT& model, Optimizer& opt, const Tensor& x, const Tensor& y, int64_t step,
                     const TrainConfig& tc);

}  // namespace sgpt::lesson01
