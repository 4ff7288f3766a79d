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
  // Contract: the comment of this function in the header. Hints: README.md, section "Hints", task 4.
  SGPT_TODO(5, 4, "the mixed-precision step");
}

// ---- task 5 ------------------------------------------------------------------------------------------------

ModelStateBytes model_state_bytes(const Recipe& recipe, int64_t n_params) {
  // TODO(lesson 05, task 5): bytes per parameter and activation bytes
  // Contract: the comment of this function in the header. Hints: README.md, section "Hints", task 5.
  SGPT_TODO(5, 5, "bytes per parameter and activation bytes");
}

int64_t activation_bytes(const GPTConfig& cfg, int64_t B, int64_t T, DType dtype) {
  // TODO(lesson 05, task 5): bytes per parameter and activation bytes
  // Contract: the comment of this function in the header. Hints: README.md, section "Hints", task 5.
  SGPT_TODO(5, 5, "bytes per parameter and activation bytes");
}

}  // namespace sgpt::lesson05
