#pragma once
/// @file recompute.hpp
/// @brief Lesson 03: activation recomputation (gradient checkpointing), full and selective.
///
/// A training step keeps, for every block, what its backward needs (a BlockCache:
/// 16*B*T*C + 4*B*T + NH*B*T*T elements, see block_cache_numel). Recomputation trades compute
/// for memory:
///   - Full: keep only each block's input; in the backward, run the block's forward again (into
///     one shared cache) right before its backward.
///   - Selective: keep every cache except the attention probabilities `att` [B,NH,T,T], the one
///     term that grows with T^2; in the backward, recompute `att` from the kept `qkv`.
///
/// You write allocate_full, forward_full, backward_full (task 1), allocate_selective,
/// forward_selective, backward_selective (task 2) and predicted_activation_bytes (task 3) in
/// recompute.cpp. The no-recompute path (Recompute::None) is given as the reference.

#include <cstdint>
#include <vector>

#include "core/tensor.hpp"
#include "model/gpt.hpp"

namespace sgpt::lesson03 {

/// Which activations a step keeps.
enum class Recompute { None, Selective, Full };
/// "none", "selective" or "full".
const char* recompute_name(Recompute mode);

/// Task 3: the peak bytes of MemCategory::Activations that a RecomputeGPT in `mode` holds during
/// one forward + backward on a batch [B,T] in element type `dtype` (every buffer it allocates).
int64_t predicted_activation_bytes(const GPTConfig& cfg, int64_t B, int64_t T, Recompute mode, DType dtype);

/// Forward and backward of a GPT model's parameters with a recomputation strategy. Parameters
/// and gradients are the model's own flat buffers (the model's activation caches are not used).
class RecomputeGPT {
 public:
  RecomputeGPT(GPT& model, Recompute mode);

  /// Mean loss over tokens/targets (i32 [B,T]; the tensors must stay unchanged until backward).
  double forward(const Tensor& tokens, const Tensor& targets);
  /// Adds d(mean loss)/d(parameters) into model.grads() (+=).
  void backward();

  /// Block forwards run since construction (or reset_counters): L per step without
  /// recomputation, 2L with full recomputation.
  int64_t block_forwards() const { return block_forwards_; }
  /// Attention softmaxes recomputed in the backward (L per step with selective recomputation).
  int64_t attention_recomputes() const { return attention_recomputes_; }
  void reset_counters() { block_forwards_ = attention_recomputes_ = 0; }
  /// Frees every activation buffer.
  void free_activations();

 private:
  // ---- given ----
  /// Runs block l's forward into cache c from input x, and counts it. Always use this one.
  void forward_block(int l, BlockCache& c, const Tensor& x);
  /// Recomputes c.att (and c.atty, to the same values) from c.qkv, and counts it.
  void recompute_attention(BlockCache& c);
  /// Allocates the buffers every mode needs, then the mode's own (allocate_*), for [B,T].
  void allocate(int64_t B, int64_t T);
  double forward_none();
  /// Each backward_* returns the buffer that holds the gradient w.r.t. the embedding output.
  const Tensor& backward_none();
  /// The head and the embedding, shared by every mode: x is the last block's output.
  double head_forward_(const Tensor& x);
  /// Head backward into dresid_a_ (zeroed first); returns nothing, dout is dresid_a_.
  void head_backward_(const Tensor& x);

  // ---- task 1: full recomputation ----
  /// Allocates what full recomputation keeps for [B_,T_] (MemCategory::Activations): the output
  /// of every block in outputs_ and the one working cache work_. Called once per batch shape.
  void allocate_full();
  /// Forward of every block, keeping only outputs_; returns the mean loss (head_forward_).
  double forward_full();
  /// Head backward, then the blocks from L-1 to 0, each run again (forward_block, counted)
  /// before its block_backward; adds into the model's gradients (+=). Returns the gradient
  /// w.r.t. block 0's input.
  const Tensor& backward_full();
  // ---- task 2: selective recomputation ----
  /// Allocates L block caches whose att fields are all one shared att_ [B,NH,T,T].
  void allocate_selective();
  /// Forward of every block into its cache; returns the mean loss.
  double forward_selective();
  /// As backward_none, with each block's att recomputed (recompute_attention, counted) before
  /// its block_backward. Adds into the model's gradients (+=).
  const Tensor& backward_selective();

  GPT* model_;
  GPTConfig cfg_;
  Recompute mode_;
  int64_t B_ = 0, T_ = 0;
  Tensor tokens_, targets_;          ///< the caller's tensors (handles, not copies)
  Tensor encoded_;                   ///< embedding output = input of block 0 [B,T,C]
  HeadCache head_;                   ///< final LayerNorm, logits, losses
  BlockGradScratch scratch_;         ///< block backward scratch
  Tensor dresid_a_, dresid_b_;       ///< gradients flowing between blocks [B,T,C]
  std::vector<BlockCache> caches_;   ///< None: L full caches. Selective: L caches sharing one att
  std::vector<Tensor> outputs_;      ///< Full: the output of every block [B,T,C] (the next input)
  BlockCache work_;                  ///< Full: the one cache every (re)computed block uses
  Tensor att_;                       ///< Selective: the one att buffer [B,NH,T,T] all caches share
  int64_t block_forwards_ = 0, attention_recomputes_ = 0;
};

}  // namespace sgpt::lesson03
