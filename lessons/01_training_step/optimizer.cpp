// Lesson 01, tasks 4-5: AdamW with bias correction and decoupled weight decay, and the training
// step that uses it (zero, forward, backward, clip, schedule, update).

#include <cmath>

#include "optim/optim.hpp"
#include "training_step.hpp"

namespace sgpt::lesson01 {

namespace {
template <class T>
void adamw_kernel(T* p, const T* g, T* m, T* v, int64_t n, const AdamWConfig& cfg, int64_t t, double lr,
                  bool decay) {
  // TODO(lesson 01, task 4): the AdamW update of one element range
  // Contract: the comment of this function in the header. Hints: README.md, section "Hints", task 4.
  SGPT_TODO(1, 4, "the AdamW update of one element range");
}
}  // namespace

void adamw_step(Tensor& param, const Tensor& grad, Tensor& m, Tensor& v, const AdamWConfig& cfg, int64_t t,
                double lr, bool decay) {
  SGPT_CHECK(param.device() == Device::CPU && grad.device() == Device::CPU, "adamw_step: CPU tensors only");
  SGPT_CHECK(param.numel() == grad.numel() && param.numel() == m.numel() && param.numel() == v.numel(),
             "adamw_step: param, grad, m, v must have the same numel");
  SGPT_CHECK(t >= 1, "adamw_step: t is 1-based, got ", t);
  if (param.dtype() == DType::F32)
    adamw_kernel(param.data<float>(), grad.data<float>(), m.data<float>(), v.data<float>(), param.numel(), cfg, t, lr,
                 decay);
  else if (param.dtype() == DType::F64)
    adamw_kernel(param.data<double>(), grad.data<double>(), m.data<double>(), v.data<double>(), param.numel(), cfg,
                 t, lr, decay);
  else
    SGPT_FAIL("adamw_step: F32 or F64 only, got ", dtype_name(param.dtype()));
}

Optimizer::Optimizer(const ParameterLayout& layout, const AdamWConfig& cfg, DType dtype)
    : layout_(&layout), cfg_(cfg) {
  m_ = Tensor::zeros({layout.numel()}, dtype, Device::CPU, MemCategory::OptimizerState);
  v_ = Tensor::zeros({layout.numel()}, dtype, Device::CPU, MemCategory::OptimizerState);
}

void Optimizer::step(Tensor& params, const Tensor& grads, double lr) {
  ++t_;
  for (const ParamInfo& p : layout_->params()) {
    Tensor pp = params.view(p.offset, {p.numel}), m = m_.view(p.offset, {p.numel}), v = v_.view(p.offset, {p.numel});
    adamw_step(pp, grads.view(p.offset, {p.numel}), m, v, cfg_, t_, lr, p.weight_decay);
  }
}

StepStats train_step(GPT& model, Optimizer& opt, const Tensor& x, const Tensor& y, int64_t step,
                     const TrainConfig& tc) {
  // TODO(lesson 01, task 5): one training step
  // Contract: the comment of this function in the header. Hints: README.md, section "Hints", task 5.
  SGPT_TODO(1, 5, "one training step");
}

}  // namespace sgpt::lesson01
