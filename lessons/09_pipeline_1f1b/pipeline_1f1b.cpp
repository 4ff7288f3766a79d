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
  // HINT: three phases: warm-up forwards, steady pairs (forward, backward), cool-down backwards.
  SGPT_TODO(9, 1, "the 1F1B order of operations");
}

double one_f_one_b_train_step(Communicator& comm, PipelineStage& stage, AdamW& opt, const Tensor& tokens,
                              const Tensor& targets, int m, double lr) {
  // TODO(lesson 09, task 2): the 1F1B training step with its point-to-point messages
  // HINT: in the steady phase a rank sends an activation to r + 1 and expects a gradient from
  // HINT: r + 1 (and sends a gradient to r - 1 while expecting the next activation from r - 1):
  // HINT: pair each such send with its receive in one send_recv.
  SGPT_TODO(9, 2, "the 1F1B training step with its point-to-point messages");
}

}  // namespace sgpt::lesson09
