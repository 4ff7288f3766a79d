#pragma once
/// @file tensor_parallel.hpp
/// @brief Lesson 10: Megatron-style tensor parallelism of a transformer block, and sequence
/// parallelism.
///
/// A tensor-parallel group of t ranks (a Communicator, `tp`) holds one block together. Rank r
/// keeps (shapes of its shard; the single-device shapes are in model/gpt.hpp):
///
///   ln1_w, ln1_b, ln2_w, ln2_b   [C]        replicated (every rank the whole vector)
///   qkv_w [3C/t, C], qkv_b [3C/t]           column-parallel: heads r·NH/t .. (r+1)·NH/t - 1,
///                                           their rows of Q, then of K, then of V
///   attproj_w [C, C/t]                      row-parallel: the columns of the same heads
///   attproj_b [C]                           replicated, added once, after the reduction
///   fc_w [4C/t, C], fc_b [4C/t]             column-parallel: rows r·4C/t .. (r+1)·4C/t - 1
///   fcproj_w [C, 4C/t]                      row-parallel: the same columns
///   fcproj_b [C]                            replicated, added once, after the reduction
///
/// The activations of a rank's heads and MLP columns ([B,T,3C/t], [B,NH/t,T,T], [B,T,C/t],
/// [B,T,4C/t]) live in the usual BlockCache, with these smaller shapes. Without sequence
/// parallelism the [B,T,C] tensors (x, ln1, resid2, ln2, out) are whole on every rank; with
/// sequence parallelism (SP) each rank keeps positions r·T/t .. (r+1)·T/t - 1 of every sequence,
/// [B,T/t,C] (seq_shard()).
///
/// Everything here works for f32 and f64 CPU tensors (the tests run in f64) and any t >= 1 that
/// divides NH and 4C (and T with SP); other sizes are an sgpt::Error (check_tp_sizes()).

#include <cstdint>

#include "comm/communicator.hpp"
#include "core/tensor.hpp"
#include "model/config.hpp"
#include "model/gpt.hpp"
#include "model/layout.hpp"

namespace sgpt::lesson10 {

// ---- given: sizes, shard buffers, caches ------------------------------------------------------------

/// Throws sgpt::Error naming the problem unless t >= 1 divides NH and 4C and, when `sp`, T.
void check_tp_sizes(const GPTConfig& cfg, int t, int64_t T, bool sp);

/// Elements of one rank's shard of one block.
int64_t tp_block_numel(const GPTConfig& cfg, int t);

/// Views of a rank's shard of one block inside `flat` (tp_block_numel(cfg, t) elements), in the
/// single-device order, with the shard shapes of the file comment.
BlockParams tp_block_views(const Tensor& flat, const GPTConfig& cfg, int t);

/// A BlockCache with the shapes one rank of t keeps (MemCategory::Activations); with `sp` the
/// [B,T,C] fields and the LayerNorm statistics are [B,T/t,...]. Checks the sizes.
BlockCache make_tp_block_cache(const GPTConfig& cfg, int64_t B, int64_t T, int t, bool sp, DType dt);

/// Scratch of a tensor-parallel block's forward and backward (MemCategory::Activations).
struct TPScratch {
  /// Gradients of the intermediate activations, in the cache's shapes (dresid2, dln2 and dln1 are
  /// [B,T/t,C] with SP).
  BlockGradScratch grad;
  /// [B,T,C] buffers for gathered activations and partial sums (used with SP).
  Tensor full_a, full_b;
  /// [6C]: partial gradients of the replicated vectors (ln1_w, ln1_b, attproj_b, ln2_w, ln2_b,
  /// fcproj_b, in this order), summed over the group at the end of an SP backward.
  Tensor replicated;
};
/// Allocates the scratch for one rank of t (checks the sizes).
TPScratch make_tp_scratch(const GPTConfig& cfg, int64_t B, int64_t T, int t, bool sp, DType dt);

/// y[..., C] += bias[C] on every row.
void add_bias_(Tensor& y, const Tensor& bias);
/// dbias[C] += the column sums of dy[..., C].
void bias_backward(Tensor& dbias, const Tensor& dy);

/// Rank r's sequence shard of full [B,T,C]: positions r·T/t .. (r+1)·T/t - 1, [B,T/t,C] (a copy).
Tensor seq_shard(const Tensor& full, int t, int r);
/// The reordering an all-gather needs: rank_major [t, B, T/t, C] (rank r's shard in block r,
/// what Communicator::all_gather returns) -> full [B,T,C].
void from_rank_major(Tensor& full, const Tensor& rank_major, int t);
/// The reverse, for a reduce-scatter: full [B,T,C] -> rank_major [t, B, T/t, C].
void to_rank_major(Tensor& rank_major, const Tensor& full, int t);

// ---- part A: tensor parallelism -----------------------------------------------------------------------

/// Task 1: fills rank `rank`'s shard (views from tp_block_views) of block `layer` exactly as the
/// single-device GPT(cfg, seed) initialises those elements: shard == the slice of the full
/// weights the file comment names. Given: init_parameter_slice() (model/layout.hpp).
void init_block_shard(BlockParams& shard, const GPTConfig& cfg, const ParameterLayout& layout, uint64_t seed,
                      int layer, int t, int rank);

/// Task 2: Megatron's conjugate operators on a [B,T,C] tensor, in place.
/// f: the entry of a column-parallel region: identity forward, all-reduce (sum) backward.
void f_forward(Communicator& tp, Tensor& x);
/// f's backward: dx = sum over the group of the ranks' dx.
void f_backward(Communicator& tp, Tensor& dx);
/// g: the exit of a row-parallel region: all-reduce (sum) forward, identity backward.
void g_forward(Communicator& tp, Tensor& y);
/// g's backward: identity.
void g_backward(Communicator& tp, Tensor& dy);

/// Task 3: the forward of one block on rank tp.rank() of t = tp.size(): fills every field of c
/// (make_tp_block_cache(..., sp = false)); x and c.out are [B,T,C], the same on every rank, and
/// c.out equals the single-device block's output. Exactly two all-reduces of B·T·C elements.
void tp_block_forward(Communicator& tp, const GPTConfig& cfg, const BlockParams& p, BlockCache& c, const Tensor& x);

/// Task 4: the backward: dx += the gradient w.r.t. x (the same on every rank, equal to the
/// single-device one); g (this rank's shard of the gradients) += its slice of the single-device
/// gradients (the replicated vectors: the whole gradient on every rank). Exactly two all-reduces
/// of B·T·C elements. The scratch is overwritten.
void tp_block_backward(Communicator& tp, const GPTConfig& cfg, const BlockParams& p, BlockParams& g,
                       const BlockCache& c, const Tensor& x, const Tensor& dout, Tensor& dx, TPScratch& s);

// ---- part B: sequence parallelism ---------------------------------------------------------------------

/// Task 5: SP's communication operators. sp_all_gather: full [B,T,C] = every rank's shard
/// [B,T/t,C] in sequence order (one Communicator::all_gather of B·T·C elements).
void sp_all_gather(Communicator& tp, Tensor& full, const Tensor& shard);
/// sp_reduce_scatter: shard [B,T/t,C] = this rank's positions of the sum over the group of
/// `full` [B,T,C] (one Communicator::reduce_scatter of B·T·C elements). `full` is not modified.
void sp_reduce_scatter(Communicator& tp, Tensor& shard, const Tensor& full);

/// Task 6: the forward with sequence parallelism: x and c.out are [B,T/t,C] (this rank's
/// positions), c comes from make_tp_block_cache(..., sp = true); c.out equals the rank's shard of
/// the single-device output. Two all-gathers and two reduce-scatters of B·T·C elements, no
/// all-reduce. Uses s.full_a / s.full_b for the gathered and partial [B,T,C] tensors.
void sp_block_forward(Communicator& tp, const GPTConfig& cfg, const BlockParams& p, BlockCache& c, const Tensor& x,
                      TPScratch& s);

/// Task 7: the backward with sequence parallelism: dx [B,T/t,C] += this rank's shard of the
/// single-device dx; g += as in task 4 (the replicated vectors' gradients whole on every rank,
/// summed once over the group through s.replicated). Communication: four all-gathers and two
/// reduce-scatters of B·T·C elements, one all-reduce of 6C elements.
void sp_block_backward(Communicator& tp, const GPTConfig& cfg, const BlockParams& p, BlockParams& g,
                       const BlockCache& c, const Tensor& x, const Tensor& dout, Tensor& dx, TPScratch& s);

// ---- the memory formula --------------------------------------------------------------------------------

/// Task 8: elements that one rank's BlockCache holds for a block of t-way tensor parallelism,
/// with or without sequence parallelism (make_tp_block_cache's buffers, counted by hand).
int64_t tp_block_cache_numel(const GPTConfig& cfg, int64_t B, int64_t T, int t, bool sp);

// ---- stretch: vocabulary parallelism -------------------------------------------------------------------

/// Task 9 (stretch): the token embedding split by vocabulary rows. Rank r holds rows
/// r·Vp/t .. (r+1)·Vp/t - 1 of wte (wte_shard [Vp/t, C]); wpe [maxT, C] is replicated.
/// encoded [B,T,C] = wte[tokens] + wpe[positions], the same on every rank (one all-reduce of
/// B·T·C elements; a token belongs to exactly one rank, the positions are added once).
void vp_embed_forward(Communicator& tp, Tensor& encoded, const Tensor& tokens, const Tensor& wte_shard,
                      const Tensor& wpe);
/// dwte_shard += the rows of this rank's tokens; dwpe += the sum over the batch (whole on every
/// rank). dencoded is the same on every rank. No communication.
void vp_embed_backward(Communicator& tp, Tensor& dwte_shard, Tensor& dwpe, const Tensor& dencoded,
                       const Tensor& tokens);
/// Softmax cross-entropy over logits split by vocabulary columns: logits_shard [B,T,Vp/t] holds
/// columns r·Vp/t .. of the [B,T,Vp] logits, of which only the first `vocab_size` overall are
/// real (padded columns get probability 0). Fills losses [B,T] (the same on every rank) and
/// probs_shard (this rank's columns of the softmax; may alias logits_shard); returns the mean loss.
/// Communication: one all-gather of the t·B·T row maxima, one all-reduce of 2·B·T values.
double vp_crossentropy_forward(Communicator& tp, Tensor& losses, Tensor& probs_shard, const Tensor& logits_shard,
                               const Tensor& targets, int vocab_size);
/// dlogits_shard = (probs - onehot(target)) · dloss on this rank's columns (padded columns 0);
/// may alias probs_shard. No communication.
void vp_crossentropy_backward(Communicator& tp, Tensor& dlogits_shard, const Tensor& probs_shard,
                              const Tensor& targets, double dloss, int vocab_size);

}  // namespace sgpt::lesson10
