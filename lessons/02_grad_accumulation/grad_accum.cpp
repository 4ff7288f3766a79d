// Lesson 02: gradient accumulation, one large batch run as several micro-batches. What each
// function must do is in grad_accum.hpp; the README has the math and hints in three levels.

#include "grad_accum.hpp"

namespace sgpt::lesson02 {

int64_t grad_accum_steps(int64_t global_batch, int64_t micro_batch, int64_t dp) {
  // TODO(lesson 02, task 1): the number of micro-batches per step
  // Contract: the comment of this function in the header. Hints: README.md, section "Hints", task 1.
  SGPT_TODO(2, 1, "the number of micro-batches per step");
}

double accumulate_gradients(GPT& model, const Tensor& x, const Tensor& y, int64_t micro_batch) {
  // TODO(lesson 02, task 2): accumulate the micro-batch gradients
  // Contract: the comment of this function in the header. Hints: README.md, section "Hints", task 2.
  SGPT_TODO(2, 2, "accumulate the micro-batch gradients");
}

StepStats train_step(GPT& model, AdamW& opt, const Tensor& x, const Tensor& y, int64_t micro_batch, double lr,
                     double clip) {
  // TODO(lesson 02, task 3): one optimizer step over k micro-batches
  // Contract: the comment of this function in the header. Hints: README.md, section "Hints", task 3.
  SGPT_TODO(2, 3, "one optimizer step over k micro-batches");
}

}  // namespace sgpt::lesson02
