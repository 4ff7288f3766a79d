// Lesson 05, tasks 4 and 5: the mixed-precision training step, and what it costs in bytes.
//
// The fp32 master weights are the model; the 16-bit working copy is a rounded view of them that
// exists to make the forward and backward cheap (half the activation bytes, tensor-core speed).
// Updates go to the master: an AdamW step is often far smaller than half a bf16 ulp of the
// weight it changes, and would be rounded away if it were applied to the 16-bit copy.

#include <cmath>
#include <limits>

#include "mixed_precision.hpp"

namespace sgpt::lesson05 {

// ---- given: precisions -----------------------------------------------------------------------------------

DType precision_dtype(Precision p) {
  switch (p) {
    case Precision::F32: return DType::F32;
    case Precision::BF16: return DType::BF16;
    case Precision::FP16: return DType::F16;
  }
  SGPT_FAIL("unknown precision ", static_cast<int>(p));
}

const char* precision_name(Precision p) {
  switch (p) {
    case Precision::F32: return "f32";
    case Precision::BF16: return "bf16";
    case Precision::FP16: return "fp16";
  }
  return "?";
}

Precision parse_precision(const std::string& name) {
  for (Precision p : {Precision::F32, Precision::BF16, Precision::FP16})
    if (name == precision_name(p)) return p;
  SGPT_FAIL("unknown precision '", name, "' (expected f32, bf16 or fp16)");
}

// ---- given: the trainer's buffers --------------------------------------------------------------------------

MixedPrecisionTrainer::MixedPrecisionTrainer(const GPTConfig& cfg, uint64_t seed, const Recipe& recipe,
                                             const AdamWConfig& adamw, Device device)
    : recipe_(recipe),
      model_(cfg, seed, device, precision_dtype(recipe.precision)),
      opt_(model_.layout(), adamw, DType::F32, device),
      scaler_(recipe.scaler) {
  SGPT_CHECK(!(recipe.fp32_grad_accum && recipe.precision == Precision::F32),
             "recipe: fp32_grad_accum needs bf16 or fp16 gradients (f32 gradients are already f32)");
  const int64_t n = model_.layout().numel();
  if (recipe.precision == Precision::F32) {
    master_ = model_.params();  // the model's f32 parameters are the master: no second copy
  } else {
    master_ = Tensor::empty({n}, DType::F32, device, MemCategory::OptimizerState);
    init_parameters(master_, model_.layout(), seed);
    cast_into(model_.params(), master_);
  }
  if (recipe.fp32_grad_accum) accum_ = Tensor::zeros({n}, DType::F32, device, MemCategory::Gradients);
}

// ---- task 4 ------------------------------------------------------------------------------------------------

StepResult MixedPrecisionTrainer::step(const Tensor& x, const Tensor& y, int64_t micro_batch, double lr,
                                       double clip) {
  // TODO(lesson 05, task 4): the mixed-precision step
  // Given: GPT::backward(s) adds s * d(mean micro-batch loss)/d(params) to model().grads().
  // Given: AdamW::step(master, grads, lr, grad_scale) reads 16-bit gradients and scales them in f32.
  SGPT_CHECK(x.dim() == 2 && y.shape() == x.shape(), "step: x and y must be [rows, T] of the same shape");
  SGPT_CHECK(micro_batch > 0 && x.size(0) % micro_batch == 0, "step: micro-batch ", micro_batch,
             " does not divide the ", x.size(0), " rows of the batch");
  const int64_t k = x.size(0) / micro_batch;
  StepResult r;
  r.loss_scale = recipe_.loss_scaling ? scaler_.scale() : 1.0;

  // Forward and backward on the working copy; the scale makes small fp16 gradients representable.
  model_.zero_grad();
  if (accum_.defined()) accum_.zero_();
  double loss = 0.0;
  for (int64_t i = 0; i < k; ++i) {
    loss += model_.forward(x.slice(i * micro_batch, (i + 1) * micro_batch),
                           y.slice(i * micro_batch, (i + 1) * micro_batch));
    model_.backward(r.loss_scale / double(k));
    if (accum_.defined()) {  // the sum of micro-batches in f32: no rounding to 16 bits between them
      axpy_(accum_, 1.0, model_.grads());
      model_.zero_grad();
    }
  }
  r.loss = loss / double(k);
  const Tensor& g = accum_.defined() ? accum_ : model_.grads();

  // An overflow anywhere makes the whole step wrong: skip it, and let the scaler back off.
  if (recipe_.loss_scaling && !scaler_.update(has_inf_or_nan(g))) {
    r.skipped = true;
    r.grad_norm = std::numeric_limits<double>::infinity();
    return r;
  }

  // Unscale and clip in one factor, applied in f32 inside AdamW; the update goes to the master.
  r.grad_norm = grad_norm(g) / r.loss_scale;
  double factor = 1.0 / r.loss_scale;
  if (clip > 0 && r.grad_norm > clip) factor *= clip / (r.grad_norm + 1e-6);
  opt_.step(master_, g, lr, factor);
  if (recipe_.precision != Precision::F32) cast_into(model_.params(), master_);  // the new working copy
  return r;
  // END TODO
}

// ---- task 5 ------------------------------------------------------------------------------------------------

ModelStateBytes model_state_bytes(const Recipe& recipe, int64_t n_params) {
  // TODO(lesson 05, task 5): bytes per parameter and activation bytes
  const int64_t w = static_cast<int64_t>(dtype_size(precision_dtype(recipe.precision)));
  const bool master = recipe.precision != Precision::F32;  // f32 needs no separate master copy
  ModelStateBytes b;
  b.parameters = w * n_params;                                   // working copy
  b.gradients = (w + (recipe.fp32_grad_accum ? 4 : 0)) * n_params;  // + the f32 accumulator
  b.optimizer_state = ((master ? 4 : 0) + 4 + 4) * n_params;    // master + m + v
  return b;
  // END TODO
}

int64_t activation_bytes(const GPTConfig& cfg, int64_t B, int64_t T, DType dtype) {
  // TODO(lesson 05, task 5): bytes per parameter and activation bytes
  const int64_t C = cfg.n_embd, BT = B * T;
  const int64_t per_block = block_cache_numel(cfg, B, T);
  const int64_t head = 2 * BT * C + 3 * BT + BT * cfg.padded_vocab_size;  // lnf, dlnf; mean, rstd, losses; logits
  const int64_t scratch = 4 * BT * C + 2 * 4 * BT * C + 3 * BT * C;          // one block's backward
  const int64_t other = 3 * BT * C;                                           // encoded, dresid_a, dresid_b
  const int64_t floats = cfg.n_layer * per_block + head + scratch + other;
  return floats * static_cast<int64_t>(dtype_size(dtype)) + 2 * BT * 4;       // + i32 tokens and targets
  // END TODO
}

}  // namespace sgpt::lesson05
