// Lesson 05, task 3: dynamic loss scaling (Micikevicius et al. 2018, "Mixed Precision Training").
//
// fp16 cannot hold gradients below 2^-24 (they become 0) and above 65504 (inf). Multiplying the
// loss by a scale S multiplies every gradient by S and shifts them up into fp16's range; the
// optimizer divides by S again in f32. S is as large as possible without overflow: an overflow
// (inf/NaN in the gradients) skips the step and halves S, and a run of good steps doubles it.

#include <cmath>

#include "mixed_precision.hpp"

namespace sgpt::lesson05 {

DynamicLossScaler::DynamicLossScaler(const LossScalerConfig& cfg) : cfg_(cfg), scale_(cfg.init_scale) {
  SGPT_CHECK(cfg.init_scale > 0 && std::isfinite(cfg.init_scale), "loss scaler: init_scale must be positive, got ",
             cfg.init_scale);
  SGPT_CHECK(cfg.growth_factor > 1, "loss scaler: growth_factor must be > 1, got ", cfg.growth_factor);
  SGPT_CHECK(cfg.backoff_factor > 0 && cfg.backoff_factor < 1, "loss scaler: backoff_factor must be in (0, 1), got ",
             cfg.backoff_factor);
  SGPT_CHECK(cfg.growth_interval >= 1, "loss scaler: growth_interval must be >= 1, got ", cfg.growth_interval);
}

bool has_inf_or_nan(const Tensor& t) {
  if (t.defined() && t.device() == Device::CUDA) return count_nonfinite(t) > 0;  // given: the library's GPU kernel
  // TODO(lesson 05, task 3): dynamic loss scaling
  // Contract: the comment of this function in the header. Hints: README.md, section "Hints", task 3.
  SGPT_TODO(5, 3, "dynamic loss scaling");
}

bool DynamicLossScaler::update(bool found_inf) {
  // TODO(lesson 05, task 3): dynamic loss scaling
  // Contract: the comment of this function in the header. Hints: README.md, section "Hints", task 3.
  SGPT_TODO(5, 3, "dynamic loss scaling");
}

}  // namespace sgpt::lesson05
