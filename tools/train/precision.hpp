#pragma once
// scalegpt-train --dtype bf16|fp16: lesson 05's mixed-precision recipe inside the trainer.
//
// The trainer keeps its plain f32 step (so it runs whatever lessons are left to do); for bf16 and
// fp16 it hands the step to lesson05::MixedPrecisionTrainer (lessons/05_mixed_precision), built
// from the student's files or the solutions like every lesson. Checkpoints hold the fp32 master
// as the model's parameters, so a bf16 checkpoint is an ordinary f32 checkpoint; an fp16 one also
// holds the loss scaler's state (extra "loss_scale" and "loss_scale_good_steps"), so a resumed run
// goes on with the scale it had, not the initial one.

#include <memory>
#include <string>

#include "comm/communicator.hpp"
#include "train/checkpoint.hpp"
#include "model/gpt.hpp"
#include "optim/optim.hpp"
#include "strategy.hpp"

namespace sgpt::train {

/// A mixed-precision training run: working model, fp32 master, AdamW and loss scaler.
class MixedPrecisionRun {
 public:
  virtual ~MixedPrecisionRun() = default;
  /// The working model (bf16/fp16), for evaluation and sampling.
  virtual GPT& model() = 0;
  /// One optimizer step on (x, y); returns the loss and sets the unscaled gradient norm (inf for a
  /// step the loss scaler skipped).
  virtual double step(const Tensor& x, const Tensor& y, double lr, double clip, double* grad_norm) = 0;
  /// The loss scale the next step will use (1 without loss scaling).
  virtual double loss_scale() = 0;
  /// Saves the master as the parameters, the moments, the loss scaler's state and `state` (atomic).
  virtual void save(const std::string& path, const TrainState& state) = 0;
  /// Loads a checkpoint into the master (and the working copy), the moments and the loss scaler.
  virtual TrainState load(const std::string& path) = 0;
};

/// nullptr for s.dtype f32 (the trainer's own step); a run with lesson 05's recipe for bf16 (no
/// loss scaling) and fp16 (dynamic loss scaling from s.loss_scale, growing after
/// s.loss_scale_window good steps). Throws sgpt::Error for any other dtype, and for bf16/fp16 with
/// more than one rank (data parallelism with mixed precision is not wired yet).
std::unique_ptr<MixedPrecisionRun> make_mixed_precision_run(const StrategySetup& s, int n_ranks);

}  // namespace sgpt::train
