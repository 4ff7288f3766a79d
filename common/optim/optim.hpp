#pragma once
/// @file optim.hpp
/// @brief AdamW over a flat parameter buffer, global gradient-norm clipping, and the
/// warmup + cosine learning-rate schedule.

#include <cstdint>
#include <vector>

#include "core/tensor.hpp"
#include "kernels/ops.hpp"
#include "model/layout.hpp"

namespace sgpt {

/// AdamW state (first and second moments, MemCategory::OptimizerState) for a flat buffer, and
/// the step. Weight decay applies to the parameters whose layout entry says so.
class AdamW {
 public:
  /// State for elements [begin, begin + numel) of the flat buffer described by `layout`
  /// (the whole buffer by default; a ZeRO shard passes its range).
  AdamW(const ParameterLayout& layout, const AdamWConfig& cfg, DType dtype, Device device, int64_t begin = 0,
        int64_t numel = -1);

  /// One update of `params` from `grads` (both covering this optimizer's range) at learning
  /// rate `lr`. Increments the step first, so the first update uses t = 1. The update sees
  /// grad_scale * grads (mixed precision unscales and clips here, without touching 16-bit
  /// gradients); params may be f32 while grads are bf16/f16 (AdamW on an fp32 master copy). The
  /// runs of equal decay flag go to adamw_update_segments together: one kernel launch on the GPU.
  /// When tracing is on it is recorded as a Compute event "optimizer_step".
  void step(Tensor& params, const Tensor& grads, double lr, double grad_scale = 1.0);

  /// Steps taken so far (0 before the first step()).
  int64_t t() const { return t_; }
  /// Sets the step counter (when resuming from a checkpoint).
  void set_t(int64_t t) { t_ = t; }
  /// First moments [numel] of this optimizer's range, owned by the optimizer.
  Tensor& m() { return m_; }
  /// First moments, read-only.
  const Tensor& m() const { return m_; }
  /// Second moments [numel] of this optimizer's range, owned by the optimizer.
  Tensor& v() { return v_; }
  /// Second moments, read-only.
  const Tensor& v() const { return v_; }
  /// The hyper-parameters (its lr is unused: step() takes the learning rate).
  const AdamWConfig& config() const { return cfg_; }

 private:
  AdamWConfig cfg_;
  std::vector<AdamWSegment> segments_;  // runs of equal decay flag, relative to this optimizer's range
  Tensor m_, v_;
  int64_t t_ = 0;
};

/// The global L2 norm of a gradient buffer (sqrt of the sum of squares, in double).
double grad_norm(const Tensor& grads);
/// Scales the gradients so that their global norm is at most max_norm; returns the norm before
/// clipping. max_norm <= 0 disables clipping.
double clip_grad_norm(Tensor& grads, double max_norm);

/// Linear warmup to max_lr over `warmup` steps, then cosine decay to min_lr at `total` steps.
/// Steps are 0-based: step 0 has lr = max_lr / warmup (never 0).
double lr_at(int64_t step, int64_t warmup, int64_t total, double max_lr, double min_lr);

}  // namespace sgpt
