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
  // Contract: the comment of this function in the header. Hints: README.md, section "Hints", task 2.
  SGPT_TODO(12, 2, "average the gradients over the replicas, then update");
}

double train_step_3d(Grid& grid, TPStage& stage, const Tensor& tokens, const Tensor& targets, int64_t micro_batch,
                     double lr) {
  // TODO(lesson 12, task 2): one 3D step: the replica's rows, 1F1B over pp, sync over dp
  // Contract: the comment of this function in the header. Hints: README.md, section "Hints", task 2.
  SGPT_TODO(12, 2, "one 3D step: the replica's rows, 1F1B over pp, sync over dp");
}

ShardRange zero1_shard(const Grid& grid, const GPTConfig& cfg) {
  // TODO(lesson 12, task 4): lesson 11's piece of the whole stage buffer over the dp group
  // Contract: the comment of this function in the header. Hints: README.md, section "Hints", task 4.
  SGPT_TODO(12, 4, "lesson 11's piece of the whole stage buffer over the dp group");
}

void sync_replicas_zero1(Grid& grid, TPStage& stage, double lr) {
  // TODO(lesson 12, task 4): reduce-scatter over dp, update my shard, all-gather
  // Contract: the comment of this function in the header. Hints: README.md, section "Hints", task 4.
  SGPT_TODO(12, 4, "reduce-scatter over dp, update my shard, all-gather");
}

}  // namespace sgpt::lesson12
