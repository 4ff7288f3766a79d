// Lesson 02: gradient accumulation. The gradient of a mean over k*b rows is the mean of the k
// micro-batch gradients, so each micro-batch's backward is scaled by 1/k and added to the
// gradient buffer; the optimizer steps once, after the last micro-batch.

#include "grad_accum.hpp"

namespace sgpt::lesson02 {

int64_t grad_accum_steps(int64_t global_batch, int64_t micro_batch, int64_t dp) {
  // TODO(lesson 02, task 1): the number of micro-batches per step
  // HINT: gbs = mbs * k * dp. Check that every size is positive and that mbs * dp divides gbs,
  // HINT: with SGPT_CHECK and a message that names the three numbers.
  SGPT_TODO(2, 1, "the number of micro-batches per step");
}

double accumulate_gradients(GPT& model, const Tensor& x, const Tensor& y, int64_t micro_batch) {
  // TODO(lesson 02, task 2): accumulate the micro-batch gradients
  // HINT: k = grad_accum_steps(rows, micro_batch); x.slice(i*b, (i+1)*b) is micro-batch i.
  // HINT: GPT::backward(loss_scale) adds loss_scale * d(mean micro-batch loss)/d(params).
  SGPT_TODO(2, 2, "accumulate the micro-batch gradients");
}

StepStats train_step(GPT& model, AdamW& opt, const Tensor& x, const Tensor& y, int64_t micro_batch, double lr,
                     double clip) {
  // TODO(lesson 02, task 3): one optimizer step over k micro-batches
  // HINT: zero once per step (not per micro-batch), and clip the accumulated gradient.
  SGPT_TODO(2, 3, "one optimizer step over k micro-batches");
}

}  // namespace sgpt::lesson02
