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
  SGPT_CHECK(t.defined() && t.device() == Device::CPU, "has_inf_or_nan: expects a CPU tensor");
  const int64_t n = t.numel();
  switch (t.dtype()) {
    case DType::F32: {
      const float* p = t.data<float>();
      for (int64_t i = 0; i < n; ++i)
        if (!std::isfinite(p[i])) return true;
      return false;
    }
    case DType::BF16: {
      const bf16_t* p = t.data<bf16_t>();
      for (int64_t i = 0; i < n; ++i)
        if ((p[i].bits & 0x7f80u) == 0x7f80u) return true;
      return false;
    }
    case DType::F16: {
      const f16_t* p = t.data<f16_t>();
      for (int64_t i = 0; i < n; ++i)
        if ((p[i].bits & 0x7c00u) == 0x7c00u) return true;
      return false;
    }
    default: SGPT_FAIL("has_inf_or_nan: dtype ", dtype_name(t.dtype()), " is not f32, bf16 or f16");
  }
  // END TODO
}

bool DynamicLossScaler::update(bool found_inf) {
  // TODO(lesson 05, task 3): dynamic loss scaling
  if (found_inf) {
    scale_ *= cfg_.backoff_factor;
    good_steps_ = 0;
    ++skipped_;
    return false;
  }
  if (++good_steps_ == cfg_.growth_interval) {
    scale_ *= cfg_.growth_factor;
    good_steps_ = 0;
  }
  return true;
  // END TODO
}

}  // namespace sgpt::lesson05
