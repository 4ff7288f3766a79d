// Lesson 12, tasks 2 and 4: the three dimensions at once. Tensor parallelism lives inside TPStage's
// blocks (lesson 10), the pipeline runs lesson 09's 1F1B order over the pp group, and the replicas
// meet once per step, on the dp group, like lesson 06's data parallelism, or lesson 11's ZeRO-1.

#include "parallel3d.hpp"

#include <cmath>
#include <vector>

#include "core/check.hpp"
#include "data_parallel.hpp"
#include "pipeline_1f1b.hpp"
#include "pipeline_gpipe.hpp"
#include "zero.hpp"

namespace sgpt::lesson12 {

void sync_replicas(Grid& grid, TPStage& stage, double lr) {
  // TODO(lesson 12, task 2): average the gradients over the replicas, then update
  lesson06::average_gradients(*grid.dp, stage.grads());
  stage.optimizer_step(lr);
  // END TODO
}

double train_step_3d(Grid& grid, TPStage& stage, const Tensor& tokens, const Tensor& targets, int64_t micro_batch,
                     double lr) {
  // TODO(lesson 12, task 2): one 3D step: the replica's rows, 1F1B over pp, sync over dp
  const GridShape& s = grid.shape;
  const StageSpec& spec = stage.spec();
  SGPT_CHECK(spec.num_stages == s.pp && spec.stage == grid.coord.pp, "train_step_3d: this rank is stage ",
             grid.coord.pp, " of ", s.pp, " in the grid, but its TPStage is stage ", spec.stage, " of ",
             spec.num_stages);
  SGPT_CHECK(stage.tp().size() == s.tp, "train_step_3d: the grid's tensor groups have ", s.tp,
             " ranks, the stage's has ", stage.tp().size());
  SGPT_CHECK(tokens.dim() == 2 && targets.shape() == tokens.shape(), "train_step_3d: tokens and targets must be [B,T]");
  const int64_t B = tokens.size(0);
  SGPT_CHECK(micro_batch >= 1 && B % (s.dp * micro_batch) == 0, "train_step_3d: a batch of ", B,
             " rows does not split into ", s.dp, " replicas x micro-batches of ", micro_batch, " rows");
  const int64_t rows = B / s.dp, row0 = grid.coord.dp * rows;
  const int m = static_cast<int>(rows / micro_batch);
  const int p = s.pp, r = grid.coord.pp;
  Communicator& pp = *grid.pp;
  const Shape act{micro_batch, tokens.size(1), stage.config().n_embd};

  stage.zero_grad();
  std::vector<Work> sent_y(m);  // forward outputs in flight to r + 1 (views of the caches)
  std::vector<Work> sent_dx;    // input gradients in flight to r - 1
  std::vector<Tensor> dxs;      // ... and their buffers
  double loss = 0.0;
  for (const PipeOp& op : lesson09::one_f_one_b_schedule(p, r, m)) {
    const int i = op.microbatch;
    const int64_t a = row0 + i * micro_batch;
    if (op.kind == PipeOp::Forward) {
      Tensor x;
      if (r > 0) {
        x = Tensor::empty(act, stage.params().dtype(), Device::CPU, MemCategory::Communication);
        pp.recv(x, r - 1);
      }
      Tensor y = stage.forward(i, r == 0 ? tokens.slice(a, a + micro_batch) : x, targets.slice(a, a + micro_batch));
      if (r + 1 < p) sent_y[i] = pp.send_async(y, r + 1);
      else loss += stage.loss(i);
    } else {
      Tensor dy;
      if (r + 1 < p) {
        dy = Tensor::empty(act, stage.params().dtype(), Device::CPU, MemCategory::Communication);
        pp.recv(dy, r + 1);
        sent_y[i].wait();  // backward frees the cache that y views
      }
      Tensor dx = stage.backward(i, dy, 1.0 / m);
      if (r > 0) {
        sent_dx.push_back(pp.send_async(dx, r - 1));
        dxs.push_back(dx);
      }
    }
  }
  for (Work& w : sent_dx) w.wait();
  dxs.clear();
  if (stage.optimizer_sharded()) sync_replicas_zero1(grid, stage, lr);
  else sync_replicas(grid, stage, lr);
  // The replica's loss lives on its last stage; the pp sum brings it to every stage.
  Tensor l = Tensor::from(std::vector<double>{r + 1 == p ? loss / m : 0.0}, {1});
  pp.all_reduce(l);
  return lesson06::global_mean_loss(*grid.dp, l.to_vector()[0]);
  // END TODO
}

ShardRange zero1_shard(const Grid& grid, const GPTConfig& cfg) {
  // TODO(lesson 12, task 4): lesson 11's piece of the whole stage buffer over the dp group
  const StageSpec spec = lesson08::stage_spec(cfg, grid.shape.pp, grid.coord.pp);
  const ShardRange whole{0, tp_stage_numel(cfg, spec, grid.shape.tp)};
  return lesson11::owned_pieces({whole}, grid.shape.dp, grid.coord.dp)[0];
  // END TODO
}

void sync_replicas_zero1(Grid& grid, TPStage& stage, double lr) {
  // TODO(lesson 12, task 4): reduce-scatter over dp, update my shard, all-gather
  const ShardRange mine = zero1_shard(grid, stage.config());
  const ShardRange kept = stage.optimizer_shard();
  SGPT_CHECK(stage.optimizer_sharded() && kept == mine, "sync_replicas_zero1: rank ", grid.coord.dp, " of ",
             grid.shape.dp, " replicas owns elements [", mine.begin, ", ", mine.begin + mine.count,
             ") of its stage, but the stage keeps the optimizer state of [", kept.begin, ", ", kept.begin + kept.count,
             ")", stage.optimizer_sharded() ? "" : " (it was built without a shard)");
  Tensor g = stage.grads().view(mine.begin, {mine.count});
  grid.dp->reduce_scatter(g, stage.grads(), ReduceOp::Avg);
  stage.optimizer_step(lr);
  grid.dp->all_gather(stage.params(), stage.params().view(mine.begin, {mine.count}));
  // END TODO
}

}  // namespace sgpt::lesson12
