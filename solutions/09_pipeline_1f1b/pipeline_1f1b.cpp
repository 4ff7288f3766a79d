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
  SGPT_CHECK(m >= 1, "a pipeline needs at least one micro-batch, got ", m);
  SGPT_CHECK(stage >= 0 && stage < num_stages, "stage ", stage, " is outside [0, ", num_stages, ")");
  const int warmup = std::min(num_stages - stage - 1, m);
  std::vector<PipeOp> ops;
  for (int i = 0; i < warmup; ++i) ops.push_back({PipeOp::Forward, i});
  for (int k = 0; warmup + k < m; ++k) {
    ops.push_back({PipeOp::Forward, warmup + k});
    ops.push_back({PipeOp::Backward, k});
  }
  for (int i = m - warmup; i < m; ++i) ops.push_back({PipeOp::Backward, i});
  return ops;
  // END TODO
}

double one_f_one_b_train_step(Communicator& comm, PipelineStage& stage, AdamW& opt, const Tensor& tokens,
                              const Tensor& targets, int m, double lr) {
  // TODO(lesson 09, task 2): the 1F1B training step with its point-to-point messages
  const StageSpec& s = stage.spec();
  const int p = s.num_stages, r = s.stage;
  SGPT_CHECK(comm.size() == p, "the pipeline has ", p, " stages but the communicator has ", comm.size(),
             " ranks (one stage per rank)");
  SGPT_CHECK(comm.rank() == r, "rank ", comm.rank(), " holds stage ", r, " (rank r must run stage r)");
  SGPT_CHECK(tokens.dim() == 2 && targets.shape() == tokens.shape(),
             "one_f_one_b_train_step: tokens and targets must be [B,T]");
  const int64_t B = tokens.size(0), T = tokens.size(1);
  SGPT_CHECK(m >= 1 && B % m == 0, "the batch of ", B, " rows cannot be cut into ", m, " equal micro-batches");
  const int64_t b = B / m;
  const Shape act{b, T, stage.config().n_embd};
  auto buffer = [&] {
    return Tensor::empty(act, stage.params().dtype(), stage.params().device(), MemCategory::Communication);
  };
  double loss = 0.0;
  // Forward of micro-batch i from input x (ignored on the first stage, which reads the tokens).
  auto forward = [&](int i, const Tensor& x) {
    Tensor y = stage.forward(i, s.is_first() ? tokens.slice(i * b, (i + 1) * b) : x, targets.slice(i * b, (i + 1) * b));
    if (s.is_last()) loss += stage.loss(i);
    return y;
  };
  stage.zero_grad();
  const int warmup = std::min(p - r - 1, m), steady = m - warmup;

  // Warm-up: forwards only (a stage with warm-up work is never the last one).
  for (int i = 0; i < warmup; ++i) {
    Tensor x;
    if (!s.is_first()) {
      x = buffer();
      comm.recv(x, r - 1);
    }
    comm.send(forward(i, x), r + 1);
  }
  // Steady state: F(warmup + k), then B(k). The output goes to r + 1 while B(k)'s gradient comes
  // back from r + 1; B(k)'s input gradient goes to r - 1 while the next forward's input comes from
  // r - 1. Each pair is one send_recv, so no rank waits on a send its neighbour cannot receive yet.
  Tensor x;
  if (steady > 0 && !s.is_first()) {
    x = buffer();
    comm.recv(x, r - 1);
  }
  for (int k = 0; k < steady; ++k) {
    Tensor y = forward(warmup + k, x), dy;
    if (!s.is_last()) {
      dy = buffer();
      comm.send_recv(y, r + 1, dy, r + 1);
    }
    Tensor dx = stage.backward(k, dy, 1.0 / m);
    if (s.is_first()) continue;
    if (k + 1 < steady) {
      x = buffer();
      comm.send_recv(dx, r - 1, x, r - 1);
    } else {
      comm.send(dx, r - 1);
    }
  }
  // Cool-down: the backwards of the warm-up micro-batches.
  for (int i = steady; i < m; ++i) {
    Tensor dy = buffer();
    comm.recv(dy, r + 1);
    Tensor dx = stage.backward(i, dy, 1.0 / m);
    if (!s.is_first()) comm.send(dx, r - 1);
  }
  opt.step(stage.params(), stage.grads(), lr);
  return s.is_last() ? loss / m : std::numeric_limits<double>::quiet_NaN();
  // END TODO
}

}  // namespace sgpt::lesson09
