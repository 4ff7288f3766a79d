#pragma once
/// @file pipeline_1f1b.hpp
/// @brief Lesson 09: pipeline parallelism with the one-forward-one-backward (1F1B) schedule.
///
/// Same pipeline as lesson 08 — p stages, one per rank of `comm`, m micro-batches — with a
/// different order of operations: each stage starts the backward of a micro-batch as soon as it
/// can, so it never holds more than p - r micro-batches in flight (rank r), instead of all m.
///
/// Given:
///   lesson08::stage_spec(cfg, p, r)  the stage split of lesson 08 (pipeline_gpipe.hpp); the tests
///                                    link its reference solution (your own in the student release)
///   PipelineStage                    forward(mb, x, targets) -> y, backward(mb, dy, scale) -> dx,
///                                    loss(mb), boundary_shape(mb), zero_grad, params, grads
///   PipeOp, pipe_ops_string          F(i) / B(i) (common/model/pipeline_schedule.hpp)
///   Communicator::send / recv / send_recv
///
/// You write the two functions below in pipeline_1f1b.cpp.

#include <vector>

#include "comm/communicator.hpp"
#include "model/pipeline_schedule.hpp"
#include "model/pipeline_stage.hpp"
#include "optim/optim.hpp"
#include "pipeline_gpipe.hpp"

namespace sgpt::lesson09 {

/// Task 1: the 1F1B order of operations on stage `stage` of `num_stages` for m micro-batches:
/// w = min(p - r - 1, m) warm-up forwards F0..F(w-1); then, while forwards remain, one forward
/// and one backward (F(w+k) then B(k)); then the cool-down backwards of the micro-batches left,
/// in order. Throws sgpt::Error when m < 1 or the stage is outside [0, num_stages).
std::vector<PipeOp> one_f_one_b_schedule(int num_stages, int stage, int m);

/// Task 2: one training step of the pipeline in the 1F1B order, on the global batch (tokens,
/// targets), i32 [B,T] on every rank, in m micro-batches of B / m consecutive rows: zero the
/// gradients, run this rank's one_f_one_b_schedule so that grads() ends as the gradient of the
/// mean loss over the batch, then one opt.step at learning rate `lr`. Returns the mean loss on the
/// last stage, NaN elsewhere. Each stage boundary carries exactly m activations forward and m
/// gradients back (b*T*C elements each). It must not rely on buffered sends: the tests run with
/// sends that complete only when the receiver has posted its recv (as on NCCL), so whenever a rank
/// both sends to and receives from the same neighbour in one phase, it must do both at once
/// (send_recv). Throws sgpt::Error (on every rank, before any communication) when comm.size() is
/// not the stage's num_stages, or when m < 1 or m does not divide B.
double one_f_one_b_train_step(Communicator& comm, PipelineStage& stage, AdamW& opt, const Tensor& tokens,
                              const Tensor& targets, int m, double lr);

}  // namespace sgpt::lesson09
