#pragma once
/// @file pipeline_gpipe.hpp
/// @brief Lesson 08: pipeline parallelism with the GPipe schedule.
///
/// The model's L blocks are cut into p stages, one per rank of `comm` (rank r runs stage r).
/// Stage 0 also embeds the tokens; stage p - 1 also runs the final LayerNorm, the head and the
/// loss. A global batch of B rows is cut into m micro-batches of b = B / m rows; each one flows
/// forward through the stages (activations [b,T,C] from stage r to r + 1) and its gradient flows
/// back (d activations [b,T,C] from r + 1 to r).
///
/// Given (common/model/pipeline_stage.hpp, common/model/pipeline_schedule.hpp):
///   StageSpec                 where a stage sits: its blocks and its range of the flat buffer
///   PipelineStage             a stage's parameters, gradients and micro-batch caches:
///                             forward(mb, x, targets) -> y, backward(mb, dy, scale) -> dx,
///                             loss(mb), boundary_shape(mb), in_flight(), zero_grad()
///   PipeOp                    F(i) / B(i), one operation of a schedule
///   ParameterLayout::layer_range(l), ParameterLayout::numel()   where block l lives
///   Communicator::send / recv                                     point-to-point
///   AdamW::step(params, grads, lr)                                over the stage's range
///
/// You write the five functions below in pipeline_gpipe.cpp.

#include <cstdint>
#include <vector>

#include "comm/communicator.hpp"
#include "model/config.hpp"
#include "model/pipeline_schedule.hpp"
#include "model/pipeline_stage.hpp"
#include "optim/optim.hpp"

namespace sgpt::lesson08 {

/// Task 1: where stage `stage` of `num_stages` sits in the model `cfg`. Blocks are split by the
/// course's sharding rule (shard_range: the first L mod p stages get one block more, in order).
/// The parameter range is exactly what the stage reads: its blocks' parameters, plus the
/// embeddings (wte, wpe) on the first stage and the final LayerNorm and lm_head on the last
/// (ParameterLayout orders the flat buffer so that this is one contiguous range). Throws
/// sgpt::Error naming the numbers when num_stages < 1, when `stage` is outside [0, num_stages),
/// when there are more stages than blocks, or when the embeddings are tied and num_stages > 1.
StageSpec stage_spec(const GPTConfig& cfg, int num_stages, int stage);

/// Task 2a: the forward of micro-batch `mb` on this rank's stage, with its communication: the
/// first stage reads `tokens` (i32 [b,T]); every other stage receives its input [b,T,C] from
/// the previous rank. Every stage but the last sends its output to the next rank; the last
/// reads `targets` (i32 [b,T]). Returns the micro-batch's mean loss on the last stage, NaN
/// elsewhere. One send and/or one recv of b*T*C elements, nothing else.
double forward_step(Communicator& comm, PipelineStage& stage, int mb, const Tensor& tokens, const Tensor& targets);

/// Task 2b: the backward of micro-batch `mb` (in flight on this stage), with its communication:
/// every stage but the last receives d(output) [b,T,C] from the next rank; the last starts from
/// its loss with weight `loss_scale`. Every stage but the first sends d(input) to the previous
/// rank. One send and/or one recv of b*T*C elements, nothing else.
void backward_step(Communicator& comm, PipelineStage& stage, int mb, double loss_scale);

/// Task 3a: the GPipe order of operations on stage `stage` of `num_stages` for m micro-batches.
/// Throws sgpt::Error when m < 1 or the stage is outside [0, num_stages).
std::vector<PipeOp> gpipe_schedule(int num_stages, int stage, int m);

/// Task 3b: one training step of the pipeline on the global batch (tokens, targets), i32 [B,T]
/// on every rank (only the first stage reads the tokens, only the last the targets), in m
/// micro-batches of B / m consecutive rows (micro-batch i is rows [i*b, (i+1)*b)): zero the
/// gradients, run the GPipe order with forward_step and backward_step so that grads() ends as
/// the gradient of the mean loss over the whole batch, then one opt.step at learning rate `lr`.
/// Returns the mean loss over the batch on the last stage, NaN on the others. Throws sgpt::Error
/// (on every rank, before any communication) when comm.size() is not the stage's num_stages, or
/// when m < 1 or m does not divide B.
double gpipe_train_step(Communicator& comm, PipelineStage& stage, AdamW& opt, const Tensor& tokens,
                        const Tensor& targets, int m, double lr);

}  // namespace sgpt::lesson08
