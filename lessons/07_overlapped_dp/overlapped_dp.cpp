// Lesson 07: bucketed, overlapped data parallelism. The gradient buffer is cut into buckets in the
// order backward finishes it; each bucket's all-reduce starts as soon as its last gradient is
// final, so communication runs while backward computes the layers below, and the step waits only
// for what is still in flight when backward ends.

#include "overlapped_dp.hpp"

#include "core/check.hpp"

namespace sgpt::lesson07 {

std::vector<Bucket> make_buckets(const ParameterLayout& layout, int64_t bucket_bytes, int64_t element_bytes) {
  // TODO(lesson 07, task 1): gradient buckets in backward order
  // Contract: the comment of this function in the header. Hints: README.md, section "Hints", task 1.
  SGPT_TODO(7, 1, "gradient buckets in backward order");
}

void OverlappedReducer::on_grads_ready(int64_t first_final) {
  // TODO(lesson 07, task 2): start every finished bucket's all-reduce
  // Contract: the comment of this function in the header. Hints: README.md, section "Hints", task 2.
  SGPT_TODO(7, 2, "start every finished bucket's all-reduce");
}

void OverlappedReducer::finish() {
  // TODO(lesson 07, task 3): wait for every bucket
  // Contract: the comment of this function in the header. Hints: README.md, section "Hints", task 3.
  SGPT_TODO(7, 3, "wait for every bucket");
}

StepStats train_step(GPT& model, AdamW& opt, OverlappedReducer& reducer, Communicator& comm, const Tensor& x,
                     const Tensor& y, int64_t micro_batch, double lr, double clip) {
  // TODO(lesson 07, task 4): one overlapped data-parallel step with no_sync accumulation
  // Given: GPT::backward(scale) without a hook communicates nothing; with one, it calls it per stage.
  // Contract: the comment of this function in the header. Hints: README.md, section "Hints", task 4.
  SGPT_TODO(7, 4, "one overlapped data-parallel step with no_sync accumulation");
}

}  // namespace sgpt::lesson07
