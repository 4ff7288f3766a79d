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
  // HINT: shard_range(L, p, r) gives the blocks; ParameterLayout(cfg).layer_range(l) gives where
  // HINT: block l lives in the flat buffer; the first stage starts at 0, the last ends at numel().
  SGPT_TODO(8, 1, "the stage split");
}

double forward_step(Communicator& comm, PipelineStage& stage, int mb, const Tensor& tokens, const Tensor& targets) {
  // TODO(lesson 08, task 2): the forward and backward steps with their point-to-point messages
  // HINT: the received input has the shape [b,T,C] of the tokens' [b,T] and the stage's dtype.
  SGPT_TODO(8, 2, "the forward and backward steps with their point-to-point messages");
}

void backward_step(Communicator& comm, PipelineStage& stage, int mb, double loss_scale) {
  // TODO(lesson 08, task 2): the forward and backward steps with their point-to-point messages
  // HINT: stage.boundary_shape(mb) is the shape of the gradient you receive.
  SGPT_TODO(8, 2, "the forward and backward steps with their point-to-point messages");
}

std::vector<PipeOp> gpipe_schedule(int num_stages, int stage, int m) {
  // TODO(lesson 08, task 3): the GPipe schedule and the training step
  // HINT: the order is the same on every stage; the backward of the last micro-batch comes first.
  SGPT_TODO(8, 3, "the GPipe schedule and the training step");
}

double gpipe_train_step(Communicator& comm, PipelineStage& stage, AdamW& opt, const Tensor& tokens,
                        const Tensor& targets, int m, double lr) {
  // TODO(lesson 08, task 3): the GPipe schedule and the training step
  // HINT: check everything before the first message, so a bad setting fails on every rank alike.
  // HINT: the loss of the batch is the mean of the m micro-batch losses, as in lesson 02.
  SGPT_TODO(8, 3, "the GPipe schedule and the training step");
}

}  // namespace sgpt::lesson08
