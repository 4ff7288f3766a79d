#pragma once
/// @file parallel3d.hpp
/// @brief Lesson 12, tasks 2 and 4: one training step of 3D parallelism — tensor parallelism inside
/// each pipeline stage, 1F1B across the stages, data parallelism across the replicas, plain or with
/// ZeRO-1's sharded optimizer state (Megatron's "distributed optimizer").
///
/// Every rank holds one TPStage (tp_stage.hpp): stage grid.coord.pp of grid.shape.pp, its blocks
/// split over the grid.tp group. Each replica (grid.coord.dp) trains on its own rows of the
/// global batch, in micro-batches that flow through its pipeline in the 1F1B order; the replicas
/// then average their gradients over grid.dp and every rank updates its own shard.
///
/// Given (the reference versions of earlier lessons; this lesson links them):
///   lesson09::one_f_one_b_schedule(p, r, m)   the 1F1B order of F(i)/B(i) on stage r
///   lesson06::average_gradients(comm, grads)  the data-parallel gradient average (one all-reduce)
///   lesson06::global_mean_loss(comm, loss)    the mean of one number over a group
///   lesson11::owned_pieces(units, world, rank) this rank's piece of each unit (lesson 11, task 1)
///   TPStage::forward / backward / optimizer_step / optimizer_shard, Communicator::send_async /
///   recv / all_reduce / reduce_scatter / all_gather
///
/// You write sync_replicas and train_step_3d (task 2), zero1_shard and sync_replicas_zero1
/// (task 4) in parallel3d.cpp.

#include "grid.hpp"
#include "tp_stage.hpp"

namespace sgpt::lesson12 {

/// Task 2a: the data-parallel end of a step, after every micro-batch's backward: make grads()
/// the average over the grid.dp group of the replicas' gradients (one all-reduce on grid.dp, no
/// other collective), then one optimizer step at `lr`. This is where ZeRO-1 plugs in: it would
/// reduce-scatter the gradients over grid.dp, update its 1/D of the optimizer state, and
/// all-gather the parameters.
void sync_replicas(Grid& grid, TPStage& stage, double lr);

/// Task 2b: one optimizer step of the whole grid on the global batch (tokens, targets: i32
/// [B,T], the same on every rank). Replica d trains on rows [d·B/D, (d+1)·B/D), cut into m =
/// B/(D·micro_batch) micro-batches of micro_batch consecutive rows. Zero the gradients, run this
/// stage's 1F1B schedule over grid.pp (forward outputs to the next stage, input gradients to the
/// previous, every micro-batch's loss weighted 1/m), then sync_replicas — or, when the stage keeps
/// a shard of the optimizer state (stage.optimizer_sharded(): ZeRO-1), sync_replicas_zero1. Sends must not rely on
/// buffering (the tests set SGPT_SYNC_SEND=1): use send_async and wait for each send before its
/// buffer is freed or reused. Returns the mean loss of the global batch on every rank (the last
/// stage's, summed over grid.pp, averaged over grid.dp: one all-reduce on each). Throws sgpt::Error
/// naming the numbers, on every rank before any communication, when the grid's world does not
/// match the stage (stage.spec() must be (coord.pp, shape.pp); stage.tp() must be grid.tp's size),
/// or micro_batch < 1 or D·micro_batch does not divide B.
double train_step_3d(Grid& grid, TPStage& stage, const Tensor& tokens, const Tensor& targets, int64_t micro_batch,
                     double lr);

/// Task 4a: ZeRO-1's shard of this rank's stage buffer (tp_stage_numel elements for stage
/// grid.coord.pp of grid.shape.pp, lesson08::stage_spec's split, at grid.shape.tp): lesson 11's
/// piece, over the grid.dp group, of stage 1's one unit (the whole buffer), so the D ranks of a dp
/// group, which hold the same stage and the same tp shard, split it by shard_range. Build the
/// stage with it: TPStage(cfg, P, pp, *grid.tp, seed, dtype, opt, zero1_shard(grid, cfg)).
ShardRange zero1_shard(const Grid& grid, const GPTConfig& cfg);

/// Task 4b: the data-parallel end of a step under ZeRO-1, in place of sync_replicas: afterwards
/// params() is what sync_replicas would give, on every rank, but each rank has averaged and
/// updated only its shard. Reduce-scatter grads() over grid.dp (average) so that the shard's
/// gradients are the replicas' average, one optimizer step at `lr` (the stage updates its shard),
/// then all-gather the parameters over grid.dp. Communication on grid.dp: exactly one
/// reduce_scatter and one all_gather of the whole stage buffer (together they move what
/// sync_replicas' one all-reduce moves), nothing else. Throws sgpt::Error naming both ranges, on
/// every rank and before any communication, unless the stage keeps exactly zero1_shard(grid,
/// stage.config()).
void sync_replicas_zero1(Grid& grid, TPStage& stage, double lr);

}  // namespace sgpt::lesson12
