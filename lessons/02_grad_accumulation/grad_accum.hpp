#pragma once
/// @file grad_accum.hpp
/// @brief Lesson 02: gradient accumulation, a large batch from several small ones.
///
/// global batch = micro-batch x accumulation steps x data-parallel ranks   (gbs = mbs * k * dp)
///
/// You write the three functions below in grad_accum.cpp.

#include <cstdint>

#include "core/tensor.hpp"
#include "model/gpt.hpp"
#include "optim/optim.hpp"

namespace sgpt::lesson02 {

/// Task 1: the number k of micro-batches per optimizer step, from gbs = mbs * k * dp. Throws
/// sgpt::Error (SGPT_CHECK) naming the numbers when a size is not positive or mbs * dp does not
/// divide the global batch.
int64_t grad_accum_steps(int64_t global_batch, int64_t micro_batch, int64_t dp = 1);

/// Task 2: runs forward and backward over the rows of (x, y) [k*mbs, T] in k micro-batches of
/// `micro_batch` rows, adding into model.grads() (+=, it does not zero them) the gradient of the
/// mean loss over the whole batch. Returns that mean loss. Only one micro-batch's activations
/// exist at a time.
double accumulate_gradients(GPT& model, const Tensor& x, const Tensor& y, int64_t micro_batch);

/// What a training step reports.
struct StepStats {
  double loss = 0;       ///< mean loss of the global batch
  double grad_norm = 0;  ///< global gradient norm before clipping
};

/// Task 3: one optimizer step on the global batch (x, y) in micro-batches of `micro_batch`
/// rows: zero the gradients once, accumulate, clip the global norm to `clip` (<= 0: off), and
/// update with `opt` at learning rate `lr`.
StepStats train_step(GPT& model, AdamW& opt, const Tensor& x, const Tensor& y, int64_t micro_batch, double lr,
                     double clip);

}  // namespace sgpt::lesson02
