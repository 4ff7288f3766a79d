// Lesson 08: pipeline parallelism, GPipe. Each rank owns one stage (a contiguous range of blocks
// and of the flat parameter buffer); micro-batches flow forward through the ranks, then their
// gradients flow back; the gradients of the m micro-batches add up (each scaled by 1/m) before
// one optimizer step per rank.

#include <cmath>
#include <limits>

#include "comm/communicator.hpp"
#include "pipeline_gpipe.hpp"

namespace sgpt::lesson08 {

StageSpec stage_spec(const GPTConfig& cfg, int num_stages, int stage) {
  // TODO(lesson 08, task 1): the stage split
  // Contract: the comment of this function in the header. Hints: README.md, section "Hints", task 1.
  SGPT_TODO(8, 1, "the stage split");
}

double forward_step(Communicator& comm, PipelineStage& stage, int mb, const Tensor& tokens, const Tensor& targets) {
  // TODO(lesson 08, task 2): the forward and backward steps with their point-to-point messages
  // Contract: the comment of this function in the header. Hints: README.md, section "Hints", task 2.
  SGPT_TODO(8, 2, "the forward and backward steps with their point-to-point messages");
}

void backward_step(Communicator& comm, PipelineStage& stage, int mb, double loss_scale) {
  // TODO(lesson 08, task 2): the forward and backward steps with their point-to-point messages
  // Contract: the comment of this function in the header. Hints: README.md, section "Hints", task 2.
  SGPT_TODO(8, 2, "the forward and backward steps with their point-to-point messages");
}

std::vector<PipeOp> gpipe_schedule(int num_stages, int stage, int m) {
  // TODO(lesson 08, task 3): the GPipe schedule and the training step
  // Contract: the comment of this function in the header. Hints: README.md, section "Hints", task 3.
  SGPT_TODO(8, 3, "the GPipe schedule and the training step");
}

double gpipe_train_step(Communicator& comm, PipelineStage& stage, AdamW& opt, const Tensor& tokens,
                        const Tensor& targets, int m, double lr) {
  // TODO(lesson 08, task 3): the GPipe schedule and the training step
  // Contract: the comment of this function in the header. Hints: README.md, section "Hints", task 3.
  SGPT_TODO(8, 3, "the GPipe schedule and the training step");
}

}  // namespace sgpt::lesson08
