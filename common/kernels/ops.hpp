#pragma once
/// @file ops.hpp
/// @brief The GPT-2 operators: forward/backward pairs, outputs first, device-agnostic.
///
/// Shape letters, used everywhere in ScaleGPT:
///   B  batch size (sequences)         T  sequence length (tokens per sequence)
///   C  channels (model width)         NH number of attention heads, HS = C / NH
///   V  vocabulary size                Vp vocabulary padded for fast matmuls (Vp >= V)
///   L  number of transformer blocks   N  rows of a matmul (usually B*T)
///
/// Every op takes Tensors, checks their shapes, dtypes and devices (a mismatch is an sgpt::Error
/// naming the op and the tensor), and runs the CPU (OpenMP, BLAS; f32 or f64) or the CUDA (f32)
/// implementation according to where the tensors live. On the CPU, bf16 and f16 tensors are
/// storage only: the op computes in f32 and rounds its outputs on store (round to nearest even),
/// and f32 and 16-bit tensors may be mixed in one call (e.g. an f32 accumulator += bf16). Lesson code calls these and never a
/// backend directly.
///
/// Backward conventions: each backward says whether it overwrites its outputs (`=`) or adds to
/// them (`+=`). Parameter gradients always accumulate (+=), so gradient accumulation over
/// micro-batches needs no extra code; zero them once per optimizer step.

#include <cstdint>
#include <vector>

#include "core/tensor.hpp"

namespace sgpt {

// ---- token + position embedding -----------------------------------------------------------------
/// out[B,T,C] = wte[tokens[b,t], :] + wpe[t, :].   tokens: i32 [B,T]; wte [Vp,C]; wpe [maxT,C].
void encoder_forward(Tensor& out, const Tensor& tokens, const Tensor& wte, const Tensor& wpe);
/// dwte += scatter of dout by token; dwpe += sum over the batch of dout.
void encoder_backward(Tensor& dwte, Tensor& dwpe, const Tensor& dout, const Tensor& tokens);

// ---- layer normalisation --------------------------------------------------------------------------
/// Over the last dimension C of inp [..,C]: mean, rstd [rows] are saved for the backward.
/// out = (inp - mean) * rstd * weight + bias, rstd = 1 / sqrt(var + 1e-5) (biased variance).
void layernorm_forward(Tensor& out, Tensor& mean, Tensor& rstd, const Tensor& inp, const Tensor& weight,
                       const Tensor& bias);
/// dinp += ..., dweight += ..., dbias += ...  (all accumulate).
void layernorm_backward(Tensor& dinp, Tensor& dweight, Tensor& dbias, const Tensor& dout, const Tensor& inp,
                        const Tensor& weight, const Tensor& mean, const Tensor& rstd);

// ---- linear layer -----------------------------------------------------------------------------------
/// out[N,OC] = inp[N,C] @ weight[OC,C]^T + bias[OC].  `bias` may be undefined (no bias).
/// inp and out may have any leading shape; N is the product of all but the last dimension.
void matmul_forward(Tensor& out, const Tensor& inp, const Tensor& weight, const Tensor& bias);
/// dinp += dout @ weight; dweight += dout^T @ inp; dbias += column sums of dout.
/// dinp and dbias may be undefined: that gradient is then skipped.
void matmul_backward(Tensor& dinp, Tensor& dweight, Tensor& dbias, const Tensor& dout, const Tensor& inp,
                     const Tensor& weight);

// ---- causal multi-head self-attention ---------------------------------------------------------------
/// qkv [B,T,3C] holds q, k, v side by side (each [B,T,NH,HS]). For each head:
///   att = softmax(q k^T / sqrt(HS) with future positions masked) -> saved in att [B,NH,T,T]
///   out[B,T,C] = att @ v (heads concatenated).
/// Entries of att above the diagonal are written as zero.
void attention_forward(Tensor& out, Tensor& att, const Tensor& qkv, int n_head);
/// dqkv += the gradient through the attention (accumulates); att is the forward's saved softmax.
void attention_backward(Tensor& dqkv, const Tensor& dout, const Tensor& qkv, const Tensor& att, int n_head);

/// The same attention without the [B,NH,T,T] matrix (FlashAttention-2: online softmax, and the
/// probabilities recomputed in the backward). CUDA only (see attention_fused_available).
/// out [B,T,C] as attention_forward; lse [B,NH,T] = log sum_s exp(q_t.k_s / sqrt(HS)) over s <= t,
/// the log-sum-exp of each row of scores, which is all the backward needs to rebuild att.
void attention_fused_forward(Tensor& out, Tensor& lse, const Tensor& qkv, int n_head);
/// dqkv += the gradient through the attention (accumulates), from the fused forward's out and lse.
void attention_fused_backward(Tensor& dqkv, const Tensor& dout, const Tensor& qkv, const Tensor& out,
                              const Tensor& lse, int n_head);
/// True when the fused attention runs for tensors on `dev` with head size `head_size`: on CUDA,
/// with the fused path enabled (cuda::set_fused_attention) and a head size that is a multiple
/// of 4, at most 128. The model stores att [B,NH,T,T] and uses attention_forward otherwise.
bool attention_fused_available(Device dev, int head_size);

// ---- GELU (tanh approximation, as GPT-2) -----------------------------------------------------------
/// out = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).  out may alias inp.
void gelu_forward(Tensor& out, const Tensor& inp);
/// dinp += gelu'(inp) * dout.
void gelu_backward(Tensor& dinp, const Tensor& inp, const Tensor& dout);

// ---- residual connection -----------------------------------------------------------------------------
/// out = a + b (same shapes).
void residual_forward(Tensor& out, const Tensor& a, const Tensor& b);
/// da += dout; db += dout.
void residual_backward(Tensor& da, Tensor& db, const Tensor& dout);

// ---- fused softmax + cross-entropy --------------------------------------------------------------------
/// logits [B,T,Vp] (only the first V columns are real), targets i32 [B,T] in [0,V):
/// probs = softmax over the first V columns (padded columns get 0), losses[b,t] = -log probs[target].
/// probs may be the same tensor as logits (in place).
void softmax_crossentropy_forward(Tensor& losses, Tensor& probs, const Tensor& logits, const Tensor& targets,
                                  int vocab_size);
/// dlogits = (probs - onehot(target)) * dloss  (overwrites; padded columns get 0).
/// dloss is d(total loss)/d(loss at one position), e.g. 1/(B*T) for the mean loss.
/// dlogits may be the same tensor as probs (in place).
void softmax_crossentropy_backward(Tensor& dlogits, const Tensor& probs, const Tensor& targets, double dloss,
                                   int vocab_size);

// ---- element-wise helpers (optimizer, clipping, accumulation) -----------------------------------------
/// y += alpha * x.
void axpy_(Tensor& y, double alpha, const Tensor& x);
/// x *= alpha.
void scale_(Tensor& x, double alpha);
/// Sum of squares of all elements, accumulated in double.
double sum_of_squares(const Tensor& x);
/// The number of elements of x that are +-inf or NaN (f32, f64, bf16 or f16; mixed precision's
/// overflow check). On the GPU it runs there and copies one number back.
int64_t count_nonfinite(const Tensor& x);
/// dst = src converted element by element (same numel and device): f32 -> bf16/f16 rounds to
/// nearest even, bf16/f16 -> f32 is exact, the same dtype copies. The GPU takes f32 and bf16.
void copy_cast(Tensor& dst, const Tensor& src);

/// Hyper-parameters of AdamW (Loshchilov & Hutter, "Decoupled Weight Decay Regularization").
struct AdamWConfig {
  double lr = 6e-4;            ///< learning rate (AdamW::step replaces it with its `lr` argument)
  double beta1 = 0.9;          ///< decay rate b1 of the first-moment (mean) estimate
  double beta2 = 0.95;         ///< decay rate b2 of the second-moment (uncentred variance) estimate
  double eps = 1e-8;           ///< added to sqrt(vhat) in the denominator
  double weight_decay = 0.1;   ///< decoupled weight decay wd, scaled by lr (only where `decay`)
  double grad_scale = 1.0;     ///< the gradient is multiplied by this first (unscaling, clipping)
};
/// One AdamW step (t is 1-based, for the bias correction), in place on param, m and v, with
/// g = grad_scale * grad:
///   m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;  mhat = m/(1-b1^t);  vhat = v/(1-b2^t)
///   param -= lr * (mhat / (sqrt(vhat) + eps) + wd * param)      (wd applied only if `decay`)
void adamw_update(Tensor& param, const Tensor& grad, Tensor& m, Tensor& v, const AdamWConfig& cfg,
                  int64_t t, bool decay);
/// A run [begin, begin + numel) of a flat buffer with one weight-decay flag (adamw_update_segments).
struct AdamWSegment {
  int64_t begin = 0;   ///< first element
  int64_t numel = 0;   ///< number of elements
  bool decay = false;  ///< weight decay applies
};
/// adamw_update on each segment of the flat buffers param, grad, m and v (the same numel; the
/// segments sorted, disjoint and inside them): the same result as one adamw_update call per
/// segment, and on the GPU one kernel launch for all of them (AdamW::step's 98 segments of GPT-2
/// 124M were 98 launches).
void adamw_update_segments(Tensor& param, const Tensor& grad, Tensor& m, Tensor& v, const AdamWConfig& cfg,
                           int64_t t, const std::vector<AdamWSegment>& segments);

}  // namespace sgpt
