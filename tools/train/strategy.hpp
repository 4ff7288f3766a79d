#pragma once
// How scalegpt-train spreads one training run over the ranks of its world: one small interface,
// one implementation per technique, each in its own file:
//
//   single_device.cpp   one rank holds the whole model (f32 here, bf16/fp16 through lesson 05)
//   data_parallel.cpp   every rank the whole model and its own rows (lessons 06 and 07)
//   pipeline_parallel.cpp  rank r holds stage r of the model, micro-batches flow (lessons 08, 09)
//   tensor_parallel.cpp    every rank a shard of every block (lesson 10, with or without
//                          sequence parallelism)
//   zero.cpp               data parallelism with sharded model state (lesson 11, --zero 1|2|3)
//   parallel3d.cpp         all three on one grid of D x P x T ranks (lesson 12, --dp D --pp P --tp T)
//   (partitioned.hpp: what the two that split the model across ranks share: gathering it on rank 0)
//
// plan.cpp answers --plan with lesson 12's planner, without training.
//
// The step loop in train.cpp knows nothing of the technique: it asks the strategy for one
// optimizer step on the batch the strategy's data share says to load, for evaluation losses, for a
// model to sample from, and for checkpoints. Checkpoints are always the consolidated single-device
// file (the whole model and its AdamW moments, as one rank with every parameter would save them),
// so a run resumes under any strategy, whatever strategy wrote it.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "comm/communicator.hpp"
#include "model/gpt.hpp"
#include "optim/optim.hpp"
#include "planner.hpp"  // lesson 12
#include "train/checkpoint.hpp"

namespace sgpt::train {

/// What one optimizer step reports (the same on every rank).
struct StepResult {
  double loss = 0;       ///< the mean loss of the global batch
  double grad_norm = 0;  ///< the global gradient norm before clipping (inf for a skipped step)
};

/// What every strategy is built from.
struct StrategySetup {
  GPTConfig cfg;               ///< the single-device model
  uint64_t seed = 0;           ///< initialisation seed: every strategy starts from GPT(cfg, seed)'s values
  AdamWConfig adamw;           ///< optimizer hyper-parameters (step() takes the learning rate)
  Device device = Device::CPU;
  std::string dtype = "f32";   ///< f32, bf16 or fp16
  bool recompute_gelu = false; ///< --recompute gelu: one rank's GPT keeps GELU's input only (GPT::set_recompute_gelu)
  double loss_scale = 65536;   ///< fp16: the dynamic loss scale's first value (--loss-scale)
  int64_t loss_scale_window = 2000;  ///< fp16: good steps in a row before it doubles (--loss-scale-window)
  int64_t batch = 1;           ///< --batch: sequences per step, per data-parallel rank
  int64_t seq_len = 1;         ///< tokens per sequence
};

/// One technique of spreading the run over the ranks (the world may be null: one process).
/// Every method is collective: every rank of the world calls it, in the same order.
class Strategy {
 public:
  virtual ~Strategy() = default;

  /// The ranks whose rows differ: this rank loads rows data_rank() of data_ranks() of every global
  /// batch of data_ranks() x --batch sequences (DataLoader's rank and world).
  virtual int data_rank() const { return 0; }
  /// See data_rank().
  virtual int data_ranks() const { return 1; }
  /// Into how many parts the model's work of one data-parallel replica is cut (1 unless the model
  /// itself is split): this rank computes 1/model_parts() of its replica's FLOPs.
  virtual int model_parts() const { return 1; }
  /// The layout for the log line after "batch B x T tokens" (e.g. " per rank x 2 ranks").
  virtual std::string describe() const { return ""; }

  /// One optimizer step on this rank's rows (x, y: i32 [batch, T]) at learning rate `lr`, the
  /// global gradient norm clipped to `clip` (0: no clipping).
  virtual StepResult step(const Tensor& x, const Tensor& y, double lr, double clip) = 0;

  /// The mean loss of this rank's rows (x, y), without gradients.
  virtual double eval_loss(const Tensor& x, const Tensor& y) = 0;
  /// The mean over the data-parallel ranks of a per-rank mean evaluation loss.
  virtual double mean_eval_loss(double local_mean) { return local_mean; }

  /// The whole model, for sampling, on rank 0 (a consolidated copy where the model is split; other
  /// ranks may get nullptr).
  virtual GPT* whole_model() = 0;

  /// Writes the consolidated checkpoint to `path` (atomic; rank 0 writes).
  virtual void save(const std::string& path, const TrainState& state) = 0;
  /// Loads a consolidated checkpoint (any strategy's) into this rank's part of the model and
  /// optimizer; returns its train state.
  virtual TrainState load(const std::string& path) = 0;
};

/// One rank with the whole model: f32 (the trainer's own step) or bf16/fp16 (lesson 05's recipe).
std::unique_ptr<Strategy> make_single_device(const StrategySetup& s);

/// Data parallelism on `world` (size >= 2): replicated model, gradients averaged by lesson 06's
/// code (bucket_kib == 0) or lesson 07's buckets of bucket_kib KiB overlapped with backward.
std::unique_ptr<Strategy> make_data_parallel(const StrategySetup& s, std::shared_ptr<Communicator> world,
                                             int64_t bucket_kib);

/// Pipeline parallelism on `world` (one stage per rank): micro_batches per global batch, schedule
/// "gpipe" (lesson 08's split and schedule) or "1f1b" (lesson 09's schedule). The model must not
/// tie its embeddings (checked by the stage split).
std::unique_ptr<Strategy> make_pipeline_parallel(const StrategySetup& s, std::shared_ptr<Communicator> world,
                                                 int micro_batches, const std::string& schedule);

/// Tensor parallelism on `world` (one tensor-parallel group), with sequence parallelism when
/// `sequence_parallel` (lesson 10). CPU only; the world's size must divide the heads, the MLP
/// width and, with sequence parallelism, s.seq_len.
std::unique_ptr<Strategy> make_tensor_parallel(const StrategySetup& s, std::shared_ptr<Communicator> world,
                                               bool sequence_parallel);

/// ZeRO stage `stage` (1-3) on `world` (size >= 2) through lesson 11's code; f32, untied model.
std::unique_ptr<Strategy> make_zero(const StrategySetup& s, std::shared_ptr<Communicator> world, int stage);

/// 3D parallelism on `world` (D*P*T ranks) through lesson 12's grid and composition: D replicas of
/// a P-stage 1F1B pipeline whose stages are T-way tensor-parallel; micro_batches per replica's
/// --batch rows; zero 0 (plain data parallelism across the replicas) or 1 (ZeRO-1: each replica
/// keeps 1/D of its stage's optimizer state, lesson 12's task 4). f32, CPU, untied model.
std::unique_ptr<Strategy> make_parallel_3d(const StrategySetup& s, std::shared_ptr<Communicator> world, int dp,
                                           int pp, int tp, int micro_batches, int zero = 0);

/// What --plan asks lesson 12's planner.
struct PlanRequest {
  GPTConfig cfg;                           ///< the model (planned untied)
  int64_t seq_len = 1;                     ///< T
  int64_t global_batch = 1;                ///< rows per optimizer step
  std::string dtype = "f32";               ///< f32: fp32 everywhere; bf16/fp16: mixed precision
  int gpus = 1;                            ///< the world to plan for
  int gpus_per_node = 8;                   ///< GPUs sharing a node's fast links
  double memory_gb = 80;                   ///< memory per GPU
  int top = 5;                             ///< layouts to print
  std::optional<lesson12::Layout> given;   ///< the command line's layout, to place among them
};

/// Prints the planner's top layouts for `r` (and where r.given stands); returns the exit status.
int print_plan(const PlanRequest& r);

}  // namespace sgpt::train
