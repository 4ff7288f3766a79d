// Lesson 02: gradient accumulation, one large batch run as several micro-batches. What each
// function must do is in grad_accum.hpp; the README has the math and hints in three levels.

#include "grad_accum.hpp"

namespace sgpt::lesson02 {

int64_t grad_accum_steps(int64_t global_batch, int64_t micro_batch, int64_t dp) {
  // TODO(lesson 02, task 1): the number of micro-batches per step
  SGPT_CHECK(global_batch > 0 && micro_batch > 0 && dp > 0, "batch sizes must be positive: global batch ",
             global_batch, ", micro-batch ", micro_batch, ", data-parallel ranks ", dp);
  SGPT_CHECK(global_batch % (micro_batch * dp) == 0, "the global batch ", global_batch,
             " is not a multiple of micro-batch ", micro_batch, " x data-parallel ranks ", dp);
  return global_batch / (micro_batch * dp);
  // END TODO
}

double accumulate_gradients(GPT& model, const Tensor& x, const Tensor& y, int64_t micro_batch) {
  // TODO(lesson 02, task 2): accumulate the micro-batch gradients
  SGPT_CHECK(x.dim() == 2 && y.shape() == x.shape(), "accumulate_gradients: x and y must be [rows, T]");
  const int64_t k = grad_accum_steps(x.size(0), micro_batch);
  double loss = 0.0;
  for (int64_t i = 0; i < k; ++i) {
    const Tensor xi = x.slice(i * micro_batch, (i + 1) * micro_batch);
    const Tensor yi = y.slice(i * micro_batch, (i + 1) * micro_batch);
    loss += model.forward(xi, yi);
    model.backward(1.0 / double(k));
  }
  return loss / double(k);
  // END TODO
}

StepStats train_step(GPT& model, AdamW& opt, const Tensor& x, const Tensor& y, int64_t micro_batch, double lr,
                     double clip) {
  // TODO(lesson 02, task 3): one optimizer step over k micro-batches
  StepStats s;
  model.zero_grad();
  s.loss = accumulate_gradients(model, x, y, micro_batch);
  s.grad_norm = clip_grad_norm(model.grads(), clip);
  opt.step(model.params(), model.grads(), lr);
  return s;
  // END TODO
}

}  // namespace sgpt::lesson02
