#include "optim/optim.hpp"

#include "core/trace.hpp"

#include <algorithm>
#include <cmath>

namespace sgpt {

AdamW::AdamW(const ParameterLayout& layout, const AdamWConfig& cfg, DType dtype, Device device, int64_t begin,
             int64_t numel)
    : cfg_(cfg) {
  if (numel < 0) numel = layout.numel() - begin;
  SGPT_CHECK(begin >= 0 && begin + numel <= layout.numel(), "AdamW: range [", begin, ", ", begin + numel,
             ") outside the ", layout.numel(), " parameters");
  for (const ParamInfo& p : layout.params()) {
    int64_t lo = std::max(begin, p.offset), hi = std::min(begin + numel, p.offset + p.numel);
    if (lo >= hi) continue;
    if (!segments_.empty() && segments_.back().decay == p.weight_decay)
      segments_.back().numel += hi - lo;
    else
      segments_.push_back({lo - begin, hi - lo, p.weight_decay});
  }
  m_ = Tensor::zeros({numel}, dtype, device, MemCategory::OptimizerState);
  v_ = Tensor::zeros({numel}, dtype, device, MemCategory::OptimizerState);
}

void AdamW::step(Tensor& params, const Tensor& grads, double lr, double grad_scale) {
  SGPT_CHECK(params.numel() == m_.numel() && grads.numel() == m_.numel(), "AdamW::step: params (", params.numel(),
             ") and grads (", grads.numel(), ") must match the optimizer's ", m_.numel(), " elements");
  TraceScope trace("optimizer_step");  // timelines (and lesson 07's tests) see when the update reads the grads
  ++t_;
  AdamWConfig c = cfg_;
  c.lr = lr;
  c.grad_scale = grad_scale;
  adamw_update_segments(params, grads, m_, v_, c, t_, segments_);  // one launch on the GPU
}

double grad_norm(const Tensor& grads) { return std::sqrt(sum_of_squares(grads)); }

double clip_grad_norm(Tensor& grads, double max_norm) {
  const double norm = grad_norm(grads);
  if (max_norm > 0 && norm > max_norm) scale_(grads, max_norm / (norm + 1e-6));
  return norm;
}

double lr_at(int64_t step, int64_t warmup, int64_t total, double max_lr, double min_lr) {
  if (step < warmup) return max_lr * double(step + 1) / double(warmup);
  if (step >= total) return min_lr;
  const double progress = double(step - warmup) / double(std::max<int64_t>(1, total - warmup));
  return min_lr + 0.5 * (max_lr - min_lr) * (1.0 + std::cos(M_PI * progress));
}

}  // namespace sgpt
