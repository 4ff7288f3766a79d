#pragma once
/// @file tp_gpt.hpp
/// @brief Given: a whole GPT-2 whose blocks run lesson 10's tensor-parallel (or sequence-parallel)
/// code, with its optimizer, for scalegpt-train --tp T [--sequence-parallel].
///
/// Built on your tasks (init_block_shard, tp_block_forward/backward, sp_block_forward/backward);
/// nothing here is a task. One rank of a group of t keeps:
///
///   the embeddings wte, wpe, the final LayerNorm and lm_head   replicated (whole on every rank)
///   every block                                                its shard (tp_block_views)
///
/// The embedding and the head run whole on every rank. Without sequence parallelism they see the
/// same [B,T,C] tensors on every rank, so their gradients are the same everywhere and need no
/// communication. With sequence parallelism the head runs on the rank's positions [B,T/t,C] (its
/// loss is the sum over ranks of the local means / t) and the embedding's gradient comes from the
/// rank's positions only: their gradients are partial sums, added over the group by one
/// all-reduce at the end of backward.
///
/// The local flat buffers (params, grads, AdamW moments) hold the replicated outer tensors (wte,
/// wpe, lnf_w, lnf_b, then lm_head when untied) followed by the L block shards.

#include <cstdint>
#include <vector>

#include "comm/communicator.hpp"
#include "model/gpt.hpp"
#include "model/layout.hpp"
#include "optim/optim.hpp"
#include "tensor_parallel.hpp"

namespace sgpt::lesson10 {

/// One rank's part of a tensor-parallel GPT-2 (CPU, f32 or f64).
class TPGPT {
 public:
  /// This rank's shard of GPT(cfg, seed): the outer tensors initialised as the single-device model
  /// does, each block by init_block_shard. Throws sgpt::Error (check_tp_sizes) unless tp.size()
  /// divides the heads and the MLP width.
  TPGPT(Communicator& tp, const GPTConfig& cfg, uint64_t seed, bool sequence_parallel, DType dtype = DType::F32);

  /// The single-device configuration.
  const GPTConfig& config() const { return cfg_; }
  /// The group size t.
  int group_size() const { return t_; }
  /// Whether the blocks run with sequence parallelism.
  bool sequence_parallel() const { return sp_; }
  /// This rank's parameters (local flat buffer, see the file comment).
  Tensor& params() { return params_; }
  /// This rank's gradients, same layout as params().
  Tensor& grads() { return grads_; }
  /// Sets every gradient to zero.
  void zero_grad() { grads_.zero_(); }

  /// Forward on the whole batch (tokens, targets: i32 [B,T], the same on every rank): the mean loss
  /// over the batch, the same on every rank. Allocates the caches for [B,T] when the shape changes;
  /// throws (check_tp_sizes) when sequence parallelism is on and t does not divide T.
  double forward(const Tensor& tokens, const Tensor& targets);
  /// grads() += this rank's part of the gradient of the mean loss of the last forward.
  void backward();

  /// The L2 norm of the whole model's gradient (each parameter counted once). Collective.
  double grad_norm();
  /// The norm (grad_norm), then grads scaled by max_norm / (norm + 1e-6) when max_norm > 0 and the
  /// norm exceeds it (clip_grad_norm of the single-device model). Collective.
  double clip_grad_norm(double max_norm);
  /// One AdamW step of this rank's parameters at learning rate `lr` (element-wise, so each shard
  /// is updated exactly as its slice of the single-device model would be; weight decay on the
  /// matrices and embeddings as the single-device layout says).
  void adamw_step(const AdamWConfig& cfg, double lr);
  /// AdamW's first moments (local layout).
  Tensor& adam_m() { return m_; }
  /// AdamW's second moments (local layout).
  Tensor& adam_v() { return v_; }
  /// AdamW steps taken.
  int64_t adam_t() const { return adam_t_; }
  /// Sets AdamW's step counter (resuming).
  void set_adam_t(int64_t t) { adam_t_ = t; }

  /// local = this rank's elements of `full`, a single-device flat buffer (parameters, gradients or
  /// moments of ParameterLayout(cfg)).
  void shard_from_full(Tensor& local, const Tensor& full) const;
  /// full = the single-device flat buffer assembled from every rank's `local` (one all-gather).
  /// Collective; `full` is filled on every rank.
  void full_from_shards(Tensor& full, const Tensor& local);

 private:
  OuterParams outer_of(const Tensor& local) const;
  BlockParams block_of(const Tensor& local, int layer) const;
  void ensure_caches(int64_t B, int64_t T);

  Communicator& tp_;
  GPTConfig cfg_;
  ParameterLayout layout_;
  int t_, rank_;
  bool sp_;
  DType dtype_;
  int64_t outer_numel_ = 0, block_numel_ = 0;
  Tensor params_, grads_, m_, v_;
  int64_t adam_t_ = 0;
  // The last forward's batch and activations.
  int64_t B_ = 0, T_ = 0;
  Tensor tokens_, targets_local_, encoded_, x0_, dx_, dprev_;
  std::vector<BlockCache> caches_;
  HeadCache head_;
  TPScratch scratch_;
  Tensor outer_scratch_;  // SP: the partial gradients of the outer tensors
};

}  // namespace sgpt::lesson10
