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
  SGPT_CHECK(num_stages >= 1, "a pipeline needs at least one stage, got ", num_stages);
  SGPT_CHECK(stage >= 0 && stage < num_stages, "stage ", stage, " is outside [0, ", num_stages, ")");
  SGPT_CHECK(num_stages <= cfg.n_layer, "more pipeline stages (", num_stages, ") than blocks (", cfg.n_layer,
             ") in model '", cfg.name, "': every stage needs at least one block");
  SGPT_CHECK(num_stages == 1 || !cfg.tied_embeddings, "model '", cfg.name,
             "' ties its embeddings: wte would be needed on the first stage and on the last; "
             "pipeline it with tied_embeddings = false");
  const ParameterLayout layout(cfg);
  const ShardRange blocks = shard_range(cfg.n_layer, num_stages, stage);
  StageSpec s;
  s.stage = stage;
  s.num_stages = num_stages;
  s.first_layer = static_cast<int>(blocks.begin);
  s.end_layer = static_cast<int>(blocks.begin + blocks.count);
  s.param_begin = s.is_first() ? 0 : layout.layer_range(s.first_layer).first;
  s.param_end = s.is_last() ? layout.numel() : layout.layer_range(s.end_layer - 1).second;
  return s;
  // END TODO
}

double forward_step(Communicator& comm, PipelineStage& stage, int mb, const Tensor& tokens, const Tensor& targets) {
  // TODO(lesson 08, task 2): the forward and backward steps with their point-to-point messages
  const StageSpec& s = stage.spec();
  Tensor x = tokens;
  if (!s.is_first()) {
    x = Tensor::empty({tokens.size(0), tokens.size(1), stage.config().n_embd}, stage.params().dtype(),
                      stage.params().device(), MemCategory::Communication);
    comm.recv(x, s.stage - 1);
  }
  Tensor y = stage.forward(mb, x, targets);
  if (!s.is_last()) comm.send(y, s.stage + 1);
  return s.is_last() ? stage.loss(mb) : std::numeric_limits<double>::quiet_NaN();
  // END TODO
}

void backward_step(Communicator& comm, PipelineStage& stage, int mb, double loss_scale) {
  // TODO(lesson 08, task 2): the forward and backward steps with their point-to-point messages
  const StageSpec& s = stage.spec();
  Tensor dy;
  if (!s.is_last()) {
    dy = Tensor::empty(stage.boundary_shape(mb), stage.params().dtype(), stage.params().device(),
                       MemCategory::Communication);
    comm.recv(dy, s.stage + 1);
  }
  Tensor dx = stage.backward(mb, dy, loss_scale);
  if (!s.is_first()) comm.send(dx, s.stage - 1);
  // END TODO
}

std::vector<PipeOp> gpipe_schedule(int num_stages, int stage, int m) {
  // TODO(lesson 08, task 3): the GPipe schedule and the training step
  SGPT_CHECK(m >= 1, "a pipeline needs at least one micro-batch, got ", m);
  SGPT_CHECK(stage >= 0 && stage < num_stages, "stage ", stage, " is outside [0, ", num_stages, ")");
  std::vector<PipeOp> ops;
  for (int i = 0; i < m; ++i) ops.push_back({PipeOp::Forward, i});
  for (int i = m - 1; i >= 0; --i) ops.push_back({PipeOp::Backward, i});
  return ops;
  // END TODO
}

double gpipe_train_step(Communicator& comm, PipelineStage& stage, AdamW& opt, const Tensor& tokens,
                        const Tensor& targets, int m, double lr) {
  // TODO(lesson 08, task 3): the GPipe schedule and the training step
  const StageSpec& s = stage.spec();
  SGPT_CHECK(comm.size() == s.num_stages, "the pipeline has ", s.num_stages, " stages but the communicator has ",
             comm.size(), " ranks (one stage per rank)");
  SGPT_CHECK(comm.rank() == s.stage, "rank ", comm.rank(), " holds stage ", s.stage, " (rank r must run stage r)");
  SGPT_CHECK(tokens.dim() == 2 && targets.shape() == tokens.shape(), "gpipe_train_step: tokens and targets must be [B,T]");
  const int64_t B = tokens.size(0);
  SGPT_CHECK(m >= 1 && B % m == 0, "the batch of ", B, " rows cannot be cut into ", m, " equal micro-batches");
  const int64_t b = B / m;
  stage.zero_grad();
  double loss = 0.0;
  for (const PipeOp& op : gpipe_schedule(s.num_stages, s.stage, m)) {
    const int i = op.microbatch;
    if (op.kind == PipeOp::Forward)
      loss += forward_step(comm, stage, i, tokens.slice(i * b, (i + 1) * b), targets.slice(i * b, (i + 1) * b));
    else
      backward_step(comm, stage, i, 1.0 / m);
  }
  opt.step(stage.params(), stage.grads(), lr);
  return s.is_last() ? loss / m : std::numeric_limits<double>::quiet_NaN();
  // END TODO
}

}  // namespace sgpt::lesson08
