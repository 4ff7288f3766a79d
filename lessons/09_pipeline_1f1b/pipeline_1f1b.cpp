// Lesson 09: pipeline parallelism, 1F1B. Rank r runs p - r - 1 warm-up forwards (the pipeline
// fill it needs before the first gradient can come back), then alternates one forward and one
// backward, then drains the backwards that are left. Its micro-batches in flight never exceed
// p - r, and the bubble stays GPipe's (p - 1)/(m + p - 1).

#include <algorithm>
#include <limits>

#include "pipeline_1f1b.hpp"

namespace sgpt::lesson09 {

std::vector<PipeOp> one_f_one_b_schedule(int num_stages, int stage, int m) {
  // TODO(lesson 09, task 1): the 1F1B order of operations
  // Contract: the comment of this function in the header. Hints: README.md, section "Hints", task 1.
  SGPT_TODO(9, 1, "the 1F1B order of operations");
}

double one_f_one_b_train_step(Communicator& comm, PipelineStage& stage, AdamW& opt, const Tensor& tokens,
                              const Tensor& targets, int m, double lr) {
  // TODO(lesson 09, task 2): the 1F1B training step with its point-to-point messages
  // Contract: the comment of this function in the header. Hints: README.md, section "Hints", task 2.
  SGPT_TODO(9, 2, "the 1F1B training step with its point-to-point messages");
}

}  // namespace sgpt::lesson09
