#pragma once
/// @file gpt.hpp
/// @brief The GPT-2 model: parameter views, activation caches, and explicit forward/backward.
///
/// The model is built from pure functions on views of the flat buffers, so lessons can run one
/// block, a range of blocks (a pipeline stage), or recompute a block during the backward pass:
///
///     embed_forward -> block_forward x L -> head_forward (final LayerNorm, logits, loss)
///     head_backward -> block_backward x L (reverse) -> embed_backward
///
/// Every function that ends in _backward accumulates into parameter gradients (+=).

#include <cstdint>
#include <functional>
#include <vector>

#include "core/tensor.hpp"
#include "model/config.hpp"
#include "model/layout.hpp"

namespace sgpt {

/// Views of one block's parameters (or of their gradients) inside a flat buffer.
struct BlockParams {
  /// LayerNorm 1 gain [C].
  Tensor ln1_w, ln1_b;        ///< LayerNorm 1 bias [C]
  /// Fused query/key/value projection weight [3C,C].
  Tensor qkv_w, qkv_b;        ///< query/key/value projection bias [3C]
  /// Attention output projection weight [C,C].
  Tensor attproj_w, attproj_b;  ///< attention output projection bias [C]
  /// LayerNorm 2 gain [C].
  Tensor ln2_w, ln2_b;        ///< LayerNorm 2 bias [C]
  /// MLP expansion weight [4C,C].
  Tensor fc_w, fc_b;          ///< MLP expansion bias [4C]
  /// MLP contraction (output projection) weight [C,4C].
  Tensor fcproj_w, fcproj_b;  ///< MLP contraction bias [C]
};

/// Views of the parameters outside the blocks.
struct OuterParams {
  Tensor wte;      ///< [Vp,C] token embedding
  Tensor wpe;      ///< [maxT,C] position embedding
  /// Final LayerNorm gain [C].
  Tensor lnf_w, lnf_b;  ///< final LayerNorm bias [C]
  Tensor lm_head;  ///< [Vp,C]: wte itself when embeddings are tied
};

/// The view of parameter `p` inside `flat`, which holds elements [base, base + flat.numel()) of
/// the flat buffer (throws sgpt::Error naming the parameter when it is not inside).
Tensor param_view(const Tensor& flat, const ParamInfo& p, int64_t base = 0);
/// Views of block `layer`'s parameters inside `flat` (parameters or gradients). `flat` holds
/// elements [base, base + flat.numel()) of the buffer `layout` describes (a pipeline stage passes
/// the first element it owns; the whole model 0).
BlockParams block_views(const Tensor& flat, const ParameterLayout& layout, int layer, int64_t base = 0);
/// Views of the parameters outside the blocks inside `flat` (parameters or gradients), which holds
/// elements [base, base + flat.numel()) of the buffer; lm_head is the wte view itself when
/// `cfg.tied_embeddings`. Every one of them must lie inside `flat`.
OuterParams outer_views(const Tensor& flat, const ParameterLayout& layout, const GPTConfig& cfg, int64_t base = 0);

/// What one block's forward keeps for its backward (all [B,T,...] activations).
struct BlockCache {
  /// LayerNorm 1 output [B,T,C].
  Tensor ln1, ln1_mean, ln1_rstd;  ///< LayerNorm 1 reciprocal standard deviation [B,T]
  /// @var ln1_mean
  /// LayerNorm 1 mean of each row [B,T].
  Tensor qkv;                      ///< [B,T,3C]
  Tensor att;                      ///< softmax probabilities [B,NH,T,T] (undefined with fused attention)
  Tensor atty;                     ///< attention output before the projection [B,T,C]
  Tensor resid2;                   ///< input + attention branch [B,T,C]
  /// LayerNorm 2 output [B,T,C].
  Tensor ln2, ln2_mean, ln2_rstd;  ///< LayerNorm 2 reciprocal standard deviation [B,T]
  /// @var ln2_mean
  /// LayerNorm 2 mean of each row [B,T].
  Tensor fch;                      ///< MLP hidden pre-activation [B,T,4C]
  /// gelu(fch) [B,T,4C], the input of the MLP's output projection. Kept for the backward,
  /// unless `gelu_recomputed`: then it is a buffer other blocks share (the forward of each block
  /// overwrites it) and block_backward writes gelu(fch) into it again before reading it.
  Tensor fch_gelu;
  Tensor out;                      ///< block output = resid2 + MLP branch [B,T,C]
  /// Log-sum-exp of each attention row [B,NH,T], kept instead of att when the fused attention
  /// runs (attention_fused_available); undefined otherwise.
  Tensor lse;
  /// True when fch_gelu is shared (see make_block_cache): block_backward recomputes it from fch,
  /// which gives the same values bit for bit (the same kernel on the same input).
  bool gelu_recomputed = false;
};

/// Scratch for one block's backward: gradients of its intermediate activations.
struct BlockGradScratch {
  /// Gradient w.r.t. BlockCache::resid2 [B,T,C].
  Tensor dresid2, dln2, datty, dln1;  ///< gradient w.r.t. BlockCache::ln1 [B,T,C]
  /// @var dln2
  /// Gradient w.r.t. BlockCache::ln2 [B,T,C].
  /// @var datty
  /// Gradient w.r.t. BlockCache::atty [B,T,C].

  /// Gradient w.r.t. BlockCache::fch [B,T,4C].
  Tensor dfch, dfch_gelu;             ///< gradient w.r.t. BlockCache::fch_gelu [B,T,4C]
  Tensor dqkv;                        ///< gradient w.r.t. BlockCache::qkv [B,T,3C]
};

/// What the head keeps: final LayerNorm, logits (overwritten in place by the probabilities and
/// then by their gradient), and the per-position losses.
struct HeadCache {
  /// Final LayerNorm output [B,T,C].
  Tensor lnf, lnf_mean, lnf_rstd;  ///< final LayerNorm reciprocal standard deviation [B,T]
  /// @var lnf_mean
  /// Final LayerNorm mean of each row [B,T].
  Tensor logits;                   ///< [B,T,Vp]
  Tensor losses;                   ///< [B,T]
  Tensor dlnf;                     ///< scratch for the backward [B,T,C]
};

/// Elements (not bytes) that one BlockCache holds: 16*B*T*C + 4*B*T + NH*B*T*T, or with the
/// fused attention (`fused_attention`) 16*B*T*C + 4*B*T + NH*B*T (lse instead of att); with
/// `gelu_recomputed` (fch_gelu shared, not owned) 4*B*T*C less.
int64_t block_cache_numel(const GPTConfig& cfg, int64_t B, int64_t T, bool fused_attention = false,
                          bool gelu_recomputed = false);

/// Allocates caches with MemCategory::Activations: lse instead of att where the fused
/// attention runs (attention_fused_available(dev, head size)). Every tensor has dtype `dt`
/// except lse, which is always f32 (the backward rebuilds the probabilities from it).
/// With `shared_fch_gelu` ([B,T,4C], dtype `dt`, on `dev`) the cache allocates no fch_gelu: it
/// uses that buffer and sets gelu_recomputed (the GELU recomputation of llm.c's `-r 1`).
BlockCache make_block_cache(const GPTConfig& cfg, int64_t B, int64_t T, DType dt, Device dev,
                            const Tensor& shared_fch_gelu = Tensor());
/// Allocates one block's backward scratch for batch shape [B,T] (uninitialised,
/// MemCategory::Activations).
BlockGradScratch make_block_grad_scratch(const GPTConfig& cfg, int64_t B, int64_t T, DType dt, Device dev);
/// Allocates the head's cache for batch shape [B,T], logits [B,T,Vp] included (uninitialised,
/// MemCategory::Activations).
HeadCache make_head_cache(const GPTConfig& cfg, int64_t B, int64_t T, DType dt, Device dev);

/// Every activation a whole model keeps for one batch shape [B,T]: what the forward caches for
/// the backward and the backward's scratch. GPT and UnitRunner (parallel/unit_runner.hpp) each
/// own one; all tensors are MemCategory::Activations.
struct ModelActivations {
  int64_t B = 0;                   ///< rows of the batch shape held (0: nothing allocated)
  int64_t T = 0;                   ///< sequence length of the batch shape held
  Tensor tokens;                   ///< copy of the input tokens, i32 [B,T]
  Tensor targets;                  ///< copy of the targets, i32 [B,T]
  Tensor encoded;                  ///< embedding output [B,T,C]
  std::vector<BlockCache> blocks;  ///< one cache per block
  HeadCache head;                  ///< the head's cache (logits included)
  BlockGradScratch scratch;        ///< one block's backward scratch, shared by all blocks
  Tensor dresid_a;                 ///< gradient of the residual stream [B,T,C] flowing in from above
  Tensor dresid_b;                 ///< its partner [B,T,C]: a block writes here, then the two swap
  bool gelu_shared = false;        ///< blocks share one gelu(fch) buffer (GPT::set_recompute_gelu)
  /// Allocates everything for batch shape [b,t] in `dt` on `dev` (tokens and targets i32),
  /// freeing the old set first; does nothing when [b,t] and `share_gelu` are what is held.
  /// With `share_gelu`, every block's fch_gelu is the backward scratch's dfch (one buffer, idle
  /// in the forward) instead of its own. Contents are uninitialised.
  void ensure(const GPTConfig& cfg, int64_t b, int64_t t, DType dt, Device dev,
              bool share_gelu = false);
  /// Frees everything (the tracker shows it gone); B = T = 0.
  void clear();
};

/// encoded[B,T,C] = wte[tokens] + wpe[positions].
void embed_forward(Tensor& encoded, const Tensor& tokens, const OuterParams& p);
/// dwte, dwpe += from dencoded.
void embed_backward(OuterParams& g, const Tensor& dencoded, const Tensor& tokens);

/// One transformer block: c.out = x + attn(ln1(x)); then + mlp(ln2(.)). Fills every field of c.
void block_forward(const GPTConfig& cfg, const BlockParams& p, BlockCache& c, const Tensor& x);
/// dx += gradient w.r.t. the block input; g (parameter gradients) +=. c must hold the forward
/// of the same x. The scratch is overwritten.
void block_backward(const GPTConfig& cfg, const BlockParams& p, BlockParams& g, const BlockCache& c, const Tensor& x,
                    const Tensor& dout, Tensor& dx, BlockGradScratch& s);

/// Final LayerNorm and logits from the last block's output x; with targets (i32 [B,T]) also
/// the losses (and the probabilities, in place of the logits). Returns the mean loss (NaN
/// without targets).
double head_forward(const GPTConfig& cfg, const OuterParams& p, HeadCache& h, const Tensor& x, const Tensor& targets);
/// dx += gradient w.r.t. the last block's output; g (lnf, lm_head/wte) +=. `dloss` is the
/// weight of each position's loss in the total (1/(B*T) for the mean). Overwrites h.logits.
void head_backward(const GPTConfig& cfg, const OuterParams& p, OuterParams& g, HeadCache& h, const Tensor& x,
                   const Tensor& targets, double dloss, Tensor& dx);

/// A whole GPT-2 model on one device: flat parameters and gradients, and activation caches for
/// the last batch shape it ran.
class GPT {
 public:
  /// Allocates parameters and gradients (zero) and initialises the parameters from `seed`.
  GPT(const GPTConfig& cfg, uint64_t seed, Device device = Device::CPU, DType dtype = DType::F32);

  /// The configuration the model was built from.
  const GPTConfig& config() const { return cfg_; }
  /// Where each parameter lives in params() and grads().
  const ParameterLayout& layout() const { return layout_; }
  /// Device of parameters, gradients and activations.
  Device device() const { return device_; }
  /// Element type of parameters, gradients and activations.
  DType dtype() const { return dtype_; }
  /// The flat parameter buffer [layout().numel()] (MemCategory::Parameters), owned by the model.
  Tensor& params() { return params_; }
  /// The flat gradient buffer, same layout as params() (MemCategory::Gradients), owned by the model.
  Tensor& grads() { return grads_; }
  /// The parameter or gradient `name` as a view (e.g. "transformer.h.0.ln_1.weight").
  Tensor param(const std::string& name) const;
  /// The gradient of parameter `name` as a view into grads() (throws for an unknown name).
  Tensor grad(const std::string& name) const;

  /// Runs the forward pass over tokens [B,T] (i32, on any device). With targets, returns the
  /// mean cross-entropy loss and keeps what backward() needs; without, returns NaN and leaves
  /// the logits in logits(). Recorded as a Compute event "forward" when tracing is on.
  double forward(const Tensor& tokens, const Tensor& targets = Tensor());
  /// Accumulates d(mean loss)/d(parameters) into grads() (+=), scaled by `loss_scale`
  /// (gradient accumulation over k micro-batches passes 1/k).
  void backward(double loss_scale = 1.0);
  /// Called by backward() after each of its stages (the head, each block from the last to the
  /// first, the embeddings) with `first_final`: from then on, every gradient at flat offsets
  /// [first_final, numel) holds its final value for this backward. The layout runs embeddings,
  /// block 0..L-1, head, and backward walks it from the end, so `first_final` only decreases and
  /// the last call passes 0. With tied embeddings, wte (at offset 0) is final only then.
  using GradsReadyHook = std::function<void(int64_t first_final)>;
  /// backward(loss_scale), calling `on_ready` after each stage (see GradsReadyHook): data
  /// parallelism starts communicating a gradient bucket as soon as it is final. When tracing is
  /// on, each stage is recorded as a Compute event: "backward_head", "backward_block" (args:
  /// layer) and "backward_embed".
  void backward(double loss_scale, const GradsReadyHook& on_ready);
  /// Sets every gradient to zero.
  void zero_grad() { grads_.zero_(); }
  /// Logits [B,T,Vp] of the last forward without targets.
  const Tensor& logits() const { return act_.head.logits; }
  /// Per-block activation caches of the last forward (for inspection and lessons).
  const std::vector<BlockCache>& block_caches() const { return act_.blocks; }
  /// Frees every activation cache (the tracker shows them gone).
  void free_activations() { act_.clear(); }
  /// On: the blocks keep only the MLP pre-activation fch; gelu(fch) goes to one [B,T,4C] buffer
  /// (the backward scratch's dfch, idle in the forward) and block_backward recomputes it, so the
  /// caches shrink by L*4*B*T*C elements at the cost of one GELU a block in the backward, with
  /// the same losses and gradients bit for bit. Off by default (every block keeps fch_gelu,
  /// as lessons 01 and 05 count). Frees the activations when it changes the setting.
  void set_recompute_gelu(bool on);
  /// Whether the GELU output is recomputed in the backward (set_recompute_gelu).
  bool recompute_gelu() const { return recompute_gelu_; }

 private:
  GPTConfig cfg_;
  ParameterLayout layout_;
  Device device_;
  DType dtype_;
  Tensor params_, grads_;
  bool has_targets_ = false;
  bool recompute_gelu_ = false;
  ModelActivations act_;
};

}  // namespace sgpt
