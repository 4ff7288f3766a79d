#include "model/gpt.hpp"

#include <cmath>
#include <limits>

#include "core/trace.hpp"
#include "kernels/ops.hpp"

namespace sgpt {

// ---- parameter views ------------------------------------------------------------------------------

Tensor param_view(const Tensor& flat, const ParamInfo& p, int64_t base) {
  SGPT_CHECK(p.offset >= base && p.offset + p.numel <= base + flat.numel(), "parameter '", p.name, "' [", p.offset,
             ", ", p.offset + p.numel, ") is not inside the buffer slice [", base, ", ", base + flat.numel(), ")");
  return flat.view(p.offset - base, p.shape);
}

BlockParams block_views(const Tensor& flat, const ParameterLayout& layout, int layer, int64_t base) {
  const std::string pre = "transformer.h." + std::to_string(layer) + ".";
  auto v = [&](const char* name) { return param_view(flat, layout.find(pre + name), base); };
  return {v("ln_1.weight"),     v("ln_1.bias"),       v("attn.c_attn.weight"), v("attn.c_attn.bias"),
          v("attn.c_proj.weight"), v("attn.c_proj.bias"), v("ln_2.weight"),     v("ln_2.bias"),
          v("mlp.c_fc.weight"), v("mlp.c_fc.bias"),   v("mlp.c_proj.weight"), v("mlp.c_proj.bias")};
}

OuterParams outer_views(const Tensor& flat, const ParameterLayout& layout, const GPTConfig& cfg, int64_t base) {
  auto v = [&](const char* name) { return param_view(flat, layout.find(name), base); };
  OuterParams o{v("transformer.wte.weight"), v("transformer.wpe.weight"), v("transformer.ln_f.weight"),
                v("transformer.ln_f.bias"), Tensor()};
  o.lm_head = cfg.tied_embeddings ? o.wte : v("lm_head.weight");
  return o;
}

// ---- caches ---------------------------------------------------------------------------------------

int64_t block_cache_numel(const GPTConfig& cfg, int64_t B, int64_t T, bool fused_attention, bool gelu_recomputed) {
  const int64_t C = cfg.n_embd;
  return (gelu_recomputed ? 12 : 16) * B * T * C + 4 * B * T + cfg.n_head * B * T * (fused_attention ? 1 : T);
}

BlockCache make_block_cache(const GPTConfig& cfg, int64_t B, int64_t T, DType dt, Device dev,
                            const Tensor& shared_fch_gelu) {
  const int64_t C = cfg.n_embd;
  auto a = [&](Shape s) { return Tensor::empty(s, dt, dev, MemCategory::Activations); };
  const bool fused = attention_fused_available(dev, static_cast<int>(C / cfg.n_head));
  const bool shared = shared_fch_gelu.defined();
  if (shared)
    SGPT_CHECK(shared_fch_gelu.shape() == Shape({B, T, 4 * C}) && shared_fch_gelu.dtype() == dt &&
                   shared_fch_gelu.device() == dev,
               "make_block_cache: the shared fch_gelu must be ", shape_str({B, T, 4 * C}), " ", dtype_name(dt), " on ",
               device_name(dev), ", got ", shape_str(shared_fch_gelu.shape()), " ",
               dtype_name(shared_fch_gelu.dtype()), " on ", device_name(shared_fch_gelu.device()));
  BlockCache c{a({B, T, C}),     a({B, T}),        a({B, T}),   a({B, T, 3 * C}), Tensor(),
               a({B, T, C}),     a({B, T, C}),     a({B, T, C}), a({B, T}),        a({B, T}),
               a({B, T, 4 * C}), shared ? shared_fch_gelu : a({B, T, 4 * C}), a({B, T, C}), Tensor()};
  c.gelu_recomputed = shared;
  if (fused)  // f32 whatever dt is: a bf16 log-sum-exp (~10, rounded by up to 2^-5) would scale the
             // backward's recomputed probabilities by up to 3%
    c.lse = Tensor::empty({B, cfg.n_head, T}, DType::F32, dev, MemCategory::Activations);
  else
    c.att = a({B, cfg.n_head, T, T});
  return c;
}

BlockGradScratch make_block_grad_scratch(const GPTConfig& cfg, int64_t B, int64_t T, DType dt, Device dev) {
  const int64_t C = cfg.n_embd;
  auto a = [&](Shape s) { return Tensor::empty(s, dt, dev, MemCategory::Activations); };
  return {a({B, T, C}), a({B, T, C}), a({B, T, C}), a({B, T, C}), a({B, T, 4 * C}), a({B, T, 4 * C}), a({B, T, 3 * C})};
}

HeadCache make_head_cache(const GPTConfig& cfg, int64_t B, int64_t T, DType dt, Device dev) {
  const int64_t C = cfg.n_embd;
  auto a = [&](Shape s) { return Tensor::empty(s, dt, dev, MemCategory::Activations); };
  return {a({B, T, C}), a({B, T}), a({B, T}), a({B, T, cfg.padded_vocab_size}), a({B, T}), a({B, T, C})};
}

// ---- embedding --------------------------------------------------------------------------------------

void embed_forward(Tensor& encoded, const Tensor& tokens, const OuterParams& p) {
  encoder_forward(encoded, tokens, p.wte, p.wpe);
}

void embed_backward(OuterParams& g, const Tensor& dencoded, const Tensor& tokens) {
  encoder_backward(g.wte, g.wpe, dencoded, tokens);
}

// ---- one transformer block -----------------------------------------------------------------------------

void block_forward(const GPTConfig& cfg, const BlockParams& p, BlockCache& c, const Tensor& x) {
  // attention branch: resid2 = x + proj(attn(ln1(x)))
  layernorm_forward(c.ln1, c.ln1_mean, c.ln1_rstd, x, p.ln1_w, p.ln1_b);
  matmul_forward(c.qkv, c.ln1, p.qkv_w, p.qkv_b);
  if (c.att.defined())  // the unfused path (CPU; or a cache with att, as lesson 03 builds)
    attention_forward(c.atty, c.att, c.qkv, cfg.n_head);
  else
    attention_fused_forward(c.atty, c.lse, c.qkv, cfg.n_head);
  matmul_forward(c.resid2, c.atty, p.attproj_w, p.attproj_b);  // the projection, then the residual added in place
  axpy_(c.resid2, 1.0, x);
  // MLP branch: out = resid2 + proj(gelu(fc(ln2(resid2))))
  layernorm_forward(c.ln2, c.ln2_mean, c.ln2_rstd, c.resid2, p.ln2_w, p.ln2_b);
  matmul_forward(c.fch, c.ln2, p.fc_w, p.fc_b);
  gelu_forward(c.fch_gelu, c.fch);
  matmul_forward(c.out, c.fch_gelu, p.fcproj_w, p.fcproj_b);
  axpy_(c.out, 1.0, c.resid2);
}

void block_backward(const GPTConfig& cfg, const BlockParams& p, BlockParams& g, const BlockCache& c, const Tensor& x,
                    const Tensor& dout, Tensor& dx, BlockGradScratch& s) {
  // MLP branch. The residual passes dout straight to resid2 and to the MLP output.
  s.dresid2.copy_from(dout);
  if (c.gelu_recomputed) {  // shared: a later block's forward (or a gradient) has overwritten it
    Tensor fch_gelu = c.fch_gelu;
    gelu_forward(fch_gelu, c.fch);
  }
  s.dfch_gelu.zero_();
  matmul_backward(s.dfch_gelu, g.fcproj_w, g.fcproj_b, dout, c.fch_gelu, p.fcproj_w);
  s.dfch.zero_();  // after the last read of c.fch_gelu, which may be s.dfch itself (GPT::set_recompute_gelu)
  gelu_backward(s.dfch, c.fch, s.dfch_gelu);
  s.dln2.zero_();
  matmul_backward(s.dln2, g.fc_w, g.fc_b, s.dfch, c.ln2, p.fc_w);
  layernorm_backward(s.dresid2, g.ln2_w, g.ln2_b, s.dln2, c.resid2, p.ln2_w, c.ln2_mean, c.ln2_rstd);
  // Attention branch. The residual passes dresid2 to x and to the attention output.
  axpy_(dx, 1.0, s.dresid2);
  s.datty.zero_();
  matmul_backward(s.datty, g.attproj_w, g.attproj_b, s.dresid2, c.atty, p.attproj_w);
  s.dqkv.zero_();
  if (c.att.defined())
    attention_backward(s.dqkv, s.datty, c.qkv, c.att, cfg.n_head);
  else
    attention_fused_backward(s.dqkv, s.datty, c.qkv, c.atty, c.lse, cfg.n_head);
  s.dln1.zero_();
  matmul_backward(s.dln1, g.qkv_w, g.qkv_b, s.dqkv, c.ln1, p.qkv_w);
  layernorm_backward(dx, g.ln1_w, g.ln1_b, s.dln1, x, p.ln1_w, c.ln1_mean, c.ln1_rstd);
}

// ---- head: final LayerNorm, logits, loss ------------------------------------------------------------------

static double mean_of(const Tensor& losses) {
  std::vector<double> v = losses.to_vector();
  double s = 0.0;
  for (double x : v) s += x;
  return s / static_cast<double>(v.size());
}

double head_forward(const GPTConfig& cfg, const OuterParams& p, HeadCache& h, const Tensor& x, const Tensor& targets) {
  layernorm_forward(h.lnf, h.lnf_mean, h.lnf_rstd, x, p.lnf_w, p.lnf_b);
  matmul_forward(h.logits, h.lnf, p.lm_head, Tensor());
  if (!targets.defined()) return std::numeric_limits<double>::quiet_NaN();
  softmax_crossentropy_forward(h.losses, h.logits, h.logits, targets, cfg.vocab_size);
  return mean_of(h.losses);
}

void head_backward(const GPTConfig& cfg, const OuterParams& p, OuterParams& g, HeadCache& h, const Tensor& x,
                   const Tensor& targets, double dloss, Tensor& dx) {
  softmax_crossentropy_backward(h.logits, h.logits, targets, dloss, cfg.vocab_size);
  h.dlnf.zero_();
  Tensor no_bias;
  matmul_backward(h.dlnf, g.lm_head, no_bias, h.logits, h.lnf, p.lm_head);
  layernorm_backward(dx, g.lnf_w, g.lnf_b, h.dlnf, x, p.lnf_w, h.lnf_mean, h.lnf_rstd);
}

// ---- the whole model ----------------------------------------------------------------------------------------

GPT::GPT(const GPTConfig& cfg, uint64_t seed, Device device, DType dtype)
    : cfg_(cfg), layout_(cfg), device_(device), dtype_(dtype) {
  params_ = Tensor::empty({layout_.numel()}, dtype, device, MemCategory::Parameters);
  grads_ = Tensor::zeros({layout_.numel()}, dtype, device, MemCategory::Gradients);
  init_parameters(params_, layout_, seed);
}

Tensor GPT::param(const std::string& name) const { return param_view(params_, layout_.find(name), 0); }
Tensor GPT::grad(const std::string& name) const { return param_view(grads_, layout_.find(name), 0); }

void ModelActivations::ensure(const GPTConfig& cfg, int64_t b, int64_t t, DType dt, Device dev,
                              bool share_gelu) {
  if (b == B && t == T && share_gelu == gelu_shared) return;
  clear();
  auto act = [&](Shape s) { return Tensor::empty(s, dt, dev, MemCategory::Activations); };
  tokens = Tensor::empty({b, t}, DType::I32, dev, MemCategory::Activations);
  targets = Tensor::empty({b, t}, DType::I32, dev, MemCategory::Activations);
  encoded = act({b, t, cfg.n_embd});
  scratch = make_block_grad_scratch(cfg, b, t, dt, dev);
  // Shared GELU output: no one reads the scratch's dfch between a forward and the backward's
  // recomputation (block_backward reads it, then overwrites it with the gradient).
  const Tensor shared_gelu = share_gelu ? scratch.dfch : Tensor();
  for (int l = 0; l < cfg.n_layer; ++l)
    blocks.push_back(make_block_cache(cfg, b, t, dt, dev, shared_gelu));
  head = make_head_cache(cfg, b, t, dt, dev);
  dresid_a = act({b, t, cfg.n_embd});
  dresid_b = act({b, t, cfg.n_embd});
  B = b;
  T = t;
  gelu_shared = share_gelu;
}

void ModelActivations::clear() {
  B = T = 0;
  tokens = targets = encoded = dresid_a = dresid_b = Tensor();
  blocks.clear();
  scratch = BlockGradScratch();
  head = HeadCache();
  gelu_shared = false;
}

void GPT::set_recompute_gelu(bool on) {
  if (on != recompute_gelu_) free_activations();
  recompute_gelu_ = on;
}

double GPT::forward(const Tensor& tokens, const Tensor& targets) {
  TraceScope trace("forward");
  SGPT_CHECK(tokens.defined() && tokens.dim() == 2 && tokens.dtype() == DType::I32,
             "GPT::forward: tokens must be an i32 tensor [B,T]");
  const int64_t B = tokens.size(0), T = tokens.size(1);
  SGPT_CHECK(T >= 1 && T <= cfg_.max_seq_len, "GPT::forward: sequence length ", T, " is longer than the context ",
             cfg_.max_seq_len, " of model '", cfg_.name, "'");
  act_.ensure(cfg_, B, T, dtype_, device_, recompute_gelu_);
  act_.tokens.copy_from(tokens);
  has_targets_ = targets.defined();
  if (has_targets_) {
    SGPT_CHECK(targets.shape() == tokens.shape() && targets.dtype() == DType::I32,
               "GPT::forward: targets must be i32 with the shape of tokens ", shape_str(tokens.shape()));
    act_.targets.copy_from(targets);
  }
  const OuterParams p = outer_views(params_, layout_, cfg_);
  embed_forward(act_.encoded, act_.tokens, p);
  const Tensor* x = &act_.encoded;
  for (int l = 0; l < cfg_.n_layer; ++l) {
    block_forward(cfg_, block_views(params_, layout_, l), act_.blocks[l], *x);
    x = &act_.blocks[l].out;
  }
  return head_forward(cfg_, p, act_.head, *x, has_targets_ ? act_.targets : Tensor());
}

void GPT::backward(double loss_scale) { backward(loss_scale, GradsReadyHook()); }

void GPT::backward(double loss_scale, const GradsReadyHook& on_ready) {
  SGPT_CHECK(act_.B > 0 && has_targets_, "GPT::backward: call forward(tokens, targets) first");
  const OuterParams p = outer_views(params_, layout_, cfg_);
  OuterParams g = outer_views(grads_, layout_, cfg_);
  const int L = cfg_.n_layer;
  // After a stage, everything from its first element to the end of the buffer is final (the head's
  // tensors follow the last block; a tied wte sits at offset 0 and is final only after the embeddings).
  auto ready = [&](int64_t first_final) {
    if (on_ready) on_ready(first_final);
  };
  Tensor* dout = &act_.dresid_a;
  Tensor* dx = &act_.dresid_b;
  dout->zero_();
  {
    TraceScope ts("backward_head");
    head_backward(cfg_, p, g, act_.head, act_.blocks[L - 1].out, act_.targets, loss_scale / double(act_.B * act_.T),
                  *dout);
  }
  ready(layout_.layer_range(L - 1).second);
  for (int l = L - 1; l >= 0; --l) {
    const Tensor& x = l == 0 ? act_.encoded : act_.blocks[l - 1].out;
    BlockParams gl = block_views(grads_, layout_, l);
    dx->zero_();
    {
      TraceScope ts("backward_block", TraceCategory::Compute, {{"layer", std::to_string(l)}});
      block_backward(cfg_, block_views(params_, layout_, l), gl, act_.blocks[l], x, *dout, *dx, act_.scratch);
    }
    std::swap(dout, dx);
    ready(layout_.layer_range(l).first);
  }
  {
    TraceScope ts("backward_embed");
    embed_backward(g, *dout, act_.tokens);
  }
  has_targets_ = false;  // the logits now hold their gradient: a second backward needs a new forward
  ready(0);
}

}  // namespace sgpt
