#pragma once
/// @file tp_stage.hpp
/// @brief Lesson 12 (given): one pipeline stage whose blocks are tensor-parallel, and the exact
/// sizes of what it allocates.
///
/// Stage r of P (lesson 08's split, lesson08::stage_spec) held by a tensor-parallel group of T
/// ranks. Each rank keeps
///
///     first stage   wte [Vp,C], wpe [maxT,C]           replicated on the T ranks
///     every block   lesson 10's shard (tp_block_views)  T-way: heads and MLP columns split
///     last stage    ln_f [C] x2, lm_head [Vp,C]         replicated on the T ranks
///
/// in one flat buffer in that order, initialised exactly as the single-device GPT(cfg, seed)
/// initialises those elements. Blocks run lesson 10's tp_block_forward / tp_block_backward (the
/// reference version: this lesson links it); the embedding and the head run whole on every rank
/// of the group, so their gradients are the whole gradient on every rank, like the replicated
/// vectors of a block. The interface is PipelineStage's (lessons 08-09), and so is the
/// bookkeeping of the micro-batches in flight (model/in_flight.hpp):
///
///     Tensor y  = stage.forward(i, x, targets);    // keeps micro-batch i's activations
///     Tensor dx = stage.backward(i, dy, 1.0 / m);  // uses them, adds into grads(), frees them
///
/// Memory: parameters (MemCategory::Parameters), gradients (Gradients) and AdamW's two moments
/// (OptimizerState) are allocated by the constructor — the moments for the whole buffer, or, under
/// ZeRO-1 (a stage built with an optimizer shard), for that shard only; each micro-batch in flight holds
/// stage_activation_parts(...).per_microbatch() bytes of Activations; the first backward
/// allocates the backward workspace (kept), and each backward two [b,T,C] gradient buffers
/// (freed); the [b,T,C] tensor a backward returns is Communication memory (it travels).

#include <cstdint>
#include <optional>
#include <vector>

#include "comm/communicator.hpp"
#include "core/tensor.hpp"
#include "kernels/ops.hpp"
#include "model/config.hpp"
#include "model/gpt.hpp"
#include "model/in_flight.hpp"
#include "model/layout.hpp"
#include "model/pipeline_stage.hpp"
#include "tensor_parallel.hpp"

namespace sgpt::lesson12 {

/// Elements of one rank's flat buffer for stage `spec` at T-way tensor parallelism.
int64_t tp_stage_numel(const GPTConfig& cfg, const StageSpec& spec, int t);

/// The activation memory of one rank of a tensor-parallel stage, in bytes, for micro-batches of
/// b rows of T positions and activations of `act_bytes` bytes per element.
struct StageActivationParts {
  int64_t block_cache = 0;  ///< one block's cache (lesson 10's tp_block_cache_numel · act_bytes)
  int64_t block_input = 0;  ///< one [b,T,C] tensor: what a block keeps under full recomputation
  int64_t outer = 0;        ///< per micro-batch outside the blocks: the stage input, plus the tokens
                            ///< (first stage), the targets and the head's cache (last stage)
  int layers = 0;           ///< blocks on the stage
  int64_t backward = 0;     ///< workspace of a backward (lesson 10's TPScratch + two [b,T,C] buffers)
  /// What one micro-batch in flight keeps without recomputation: outer + layers · block_cache.
  int64_t per_microbatch() const { return outer + layers * block_cache; }
};

/// The parts for stage `spec` of `cfg` at T-way tensor parallelism (pure arithmetic: works for
/// any model size). TPStage allocates exactly these.
StageActivationParts stage_activation_parts(const GPTConfig& cfg, const StageSpec& spec, int t, int64_t b, int64_t T,
                                            int64_t act_bytes);

/// One pipeline stage held by a tensor-parallel group (see the file comment).
class TPStage {
 public:
  /// Stage `stage` of `num_stages` (lesson08::stage_spec) on rank tp.rank() of the T = tp.size()
  /// ranks that hold it, initialised from `seed`; AdamW state (zero moments) with `opt`'s betas,
  /// eps and weight decay (decay on matrices and embeddings, as the single-device AdamW). f32 or
  /// f64, CPU. Throws sgpt::Error naming the problem for tied embeddings (the head and the
  /// embedding live on different stages, or both on every rank: build with tied_embeddings =
  /// false), T not dividing the heads or 4C, or more stages than blocks. `tp` must outlive it.
  ///
  /// ZeRO-1 (task 4): with `optimizer_shard`, a range of this rank's flat buffer, the stage keeps
  /// AdamW's moments for that range only (optimizer_sharded() is then true), and optimizer_step
  /// updates only those parameters. Throws sgpt::Error when the range is not inside the buffer.
  TPStage(const GPTConfig& cfg, int num_stages, int stage, Communicator& tp, uint64_t seed, DType dtype = DType::F32,
          const AdamWConfig& opt = AdamWConfig(), std::optional<ShardRange> optimizer_shard = std::nullopt);

  /// The model configuration.
  const GPTConfig& config() const { return cfg_; }
  /// Where this stage sits in the pipeline.
  const StageSpec& spec() const { return spec_; }
  /// The tensor-parallel group.
  Communicator& tp() const { return *tp_; }
  /// This rank's parameters (tp_stage_numel elements).
  Tensor& params() { return params_; }
  /// This rank's gradients, same layout as params().
  Tensor& grads() { return grads_; }
  /// Sets every gradient to zero.
  void zero_grad() { grads_.zero_(); }
  /// One AdamW update at learning rate `lr` (step counter first) of the parameters in
  /// optimizer_shard(), from the gradients at the same places: the whole buffer unless the stage
  /// was built with a shard (ZeRO-1), in which case the other parameters are left as they are.
  void optimizer_step(double lr);
  /// The range of params() whose AdamW state this rank keeps: {0, params().numel()}, or the
  /// constructor's shard.
  const ShardRange& optimizer_shard() const { return shard_; }
  /// True when the stage was built with an optimizer shard (ZeRO-1), even one that is the whole buffer.
  bool optimizer_sharded() const { return sharded_; }
  /// Steps taken so far.
  int64_t optimizer_steps() const { return t_; }

  /// Copies this rank's slice of a single-device flat buffer (ParameterLayout(cfg).numel()
  /// elements, e.g. GPT::params()) into `dst` (params(), grads() or an optimizer moment): the
  /// embedding and head whole, each block's shard as lesson 10 defines it.
  void load_from_full(Tensor& dst, const Tensor& full) const;
  /// AdamW's first moments (OptimizerState) of optimizer_shard(): element k belongs to
  /// params() element optimizer_shard().begin + k (the same layout as params() when unsharded).
  Tensor& adam_m() { return m_; }
  /// AdamW's second moments, laid out as adam_m().
  Tensor& adam_v() { return v_; }
  /// Sets adam_m() and adam_v() to this rank's part (its optimizer shard of what load_from_full
  /// gives) of a single-device run's moments (ParameterLayout(cfg).numel() elements each).
  void load_moments_from_full(const Tensor& full_m, const Tensor& full_v);

  /// Forward of micro-batch `mb` (not in flight): x is the tokens (i32 [b,T]) on the first stage,
  /// the previous stage's output [b,T,C] elsewhere (copied); targets (i32 [b,T]) on the last
  /// stage. Returns the output [b,T,C] (a view valid until backward(mb)), undefined on the last
  /// stage, whose loss(mb) then holds the micro-batch's mean loss. Same on every rank of tp.
  Tensor forward(int mb, const Tensor& x, const Tensor& targets = Tensor());
  /// Mean loss of micro-batch `mb` (last stage, in flight).
  double loss(int mb) const;
  /// Backward of micro-batch `mb`: dout = d loss / d output (ignored on the last stage, which
  /// starts from its loss with weight loss_scale). Adds into grads() (+=), frees mb's
  /// activations, returns d loss / d input [b,T,C] (Communication memory; undefined on the
  /// first stage).
  Tensor backward(int mb, const Tensor& dout, double loss_scale = 1.0);
  /// Micro-batches in flight now.
  int in_flight() const { return live_.size(); }
  /// The most micro-batches in flight at once so far.
  int peak_in_flight() const { return live_.peak(); }

 private:
  struct MicroBatch {
    Tensor tokens, targets, input;
    std::vector<BlockCache> blocks;
    HeadCache head;
    double loss = 0;
  };
  struct Segment {
    int64_t begin, numel;
    bool decay;
  };
  BlockParams block_of(const Tensor& flat, int i) const;  // i: index on this stage
  OuterParams outer_of(const Tensor& flat) const;

  GPTConfig cfg_;
  StageSpec spec_;
  Communicator* tp_;
  int t_size_;
  ParameterLayout layout_;
  DType dtype_;
  AdamWConfig opt_;
  Tensor params_, grads_, m_, v_;
  ShardRange shard_;
  bool sharded_ = false;
  int64_t embed_numel_ = 0, block_numel_ = 0;
  std::vector<Segment> segments_;
  InFlight<MicroBatch> live_;
  lesson10::TPScratch scratch_;
  int64_t scratch_b_ = 0, scratch_t_ = 0;
  int64_t t_ = 0;
};

}  // namespace sgpt::lesson12
