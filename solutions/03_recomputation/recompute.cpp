// Lesson 03: activation recomputation. Same ops, same order, same inputs: the gradients are
// bitwise equal to the run that keeps everything; only the memory and the compute change.

#include "recompute.hpp"

#include "kernels/ops.hpp"

namespace sgpt::lesson03 {

const char* recompute_name(Recompute mode) {
  switch (mode) {
    case Recompute::None: return "none";
    case Recompute::Selective: return "selective";
    case Recompute::Full: return "full";
  }
  return "?";
}

RecomputeGPT::RecomputeGPT(GPT& model, Recompute mode) : model_(&model), cfg_(model.config()), mode_(mode) {}

// ---- given: counting wrappers, allocation, the reference path -----------------------------------

void RecomputeGPT::forward_block(int l, BlockCache& c, const Tensor& x) {
  ++block_forwards_;
  block_forward(cfg_, block_views(model_->params(), model_->layout(), l), c, x);
}

void RecomputeGPT::recompute_attention(BlockCache& c) {
  ++attention_recomputes_;
  attention_forward(c.atty, c.att, c.qkv, cfg_.n_head);
}

void RecomputeGPT::free_activations() {
  B_ = T_ = 0;
  encoded_ = dresid_a_ = dresid_b_ = att_ = Tensor();
  head_ = HeadCache();
  scratch_ = BlockGradScratch();
  caches_.clear();
  outputs_.clear();
  work_ = BlockCache();
}

void RecomputeGPT::allocate(int64_t B, int64_t T) {
  if (B == B_ && T == T_) return;
  free_activations();
  B_ = B;
  T_ = T;
  const DType dt = model_->dtype();
  const Device dev = model_->device();
  auto act = [&](Shape s) { return Tensor::empty(s, dt, dev, MemCategory::Activations); };
  encoded_ = act({B, T, cfg_.n_embd});
  head_ = make_head_cache(cfg_, B, T, dt, dev);
  scratch_ = make_block_grad_scratch(cfg_, B, T, dt, dev);
  dresid_a_ = act({B, T, cfg_.n_embd});
  dresid_b_ = act({B, T, cfg_.n_embd});
  switch (mode_) {
    case Recompute::None:
      for (int l = 0; l < cfg_.n_layer; ++l) caches_.push_back(make_block_cache(cfg_, B, T, dt, dev));
      break;
    case Recompute::Full: allocate_full(); break;
    case Recompute::Selective: allocate_selective(); break;
  }
}

double RecomputeGPT::forward(const Tensor& tokens, const Tensor& targets) {
  SGPT_CHECK(tokens.dim() == 2 && tokens.dtype() == DType::I32 && targets.shape() == tokens.shape(),
             "RecomputeGPT::forward: tokens and targets must be i32 [B,T]");
  allocate(tokens.size(0), tokens.size(1));
  tokens_ = tokens;
  targets_ = targets;
  const OuterParams p = outer_views(model_->params(), model_->layout(), cfg_);
  embed_forward(encoded_, tokens_, p);
  switch (mode_) {
    case Recompute::None: return forward_none();
    case Recompute::Full: return forward_full();
    case Recompute::Selective: return forward_selective();
  }
  return 0.0;
}

void RecomputeGPT::backward() {
  SGPT_CHECK(B_ > 0, "RecomputeGPT::backward: call forward first");
  const Tensor* dencoded = nullptr;
  switch (mode_) {
    case Recompute::None: dencoded = &backward_none(); break;
    case Recompute::Full: dencoded = &backward_full(); break;
    case Recompute::Selective: dencoded = &backward_selective(); break;
  }
  OuterParams g = outer_views(model_->grads(), model_->layout(), cfg_);
  embed_backward(g, *dencoded, tokens_);
}

double RecomputeGPT::head_forward_(const Tensor& x) {
  return head_forward(cfg_, outer_views(model_->params(), model_->layout(), cfg_), head_, x, targets_);
}

void RecomputeGPT::head_backward_(const Tensor& x) {
  const OuterParams p = outer_views(model_->params(), model_->layout(), cfg_);
  OuterParams g = outer_views(model_->grads(), model_->layout(), cfg_);
  dresid_a_.zero_();
  head_backward(cfg_, p, g, head_, x, targets_, 1.0 / double(B_ * T_), dresid_a_);
}

double RecomputeGPT::forward_none() {
  const Tensor* x = &encoded_;
  for (int l = 0; l < cfg_.n_layer; ++l) {
    forward_block(l, caches_[l], *x);
    x = &caches_[l].out;
  }
  return head_forward_(*x);
}

const Tensor& RecomputeGPT::backward_none() {
  const int L = cfg_.n_layer;
  head_backward_(caches_[L - 1].out);
  Tensor* dout = &dresid_a_;
  Tensor* dx = &dresid_b_;
  for (int l = L - 1; l >= 0; --l) {
    const Tensor& x = l == 0 ? encoded_ : caches_[l - 1].out;
    BlockParams g = block_views(model_->grads(), model_->layout(), l);
    dx->zero_();
    block_backward(cfg_, block_views(model_->params(), model_->layout(), l), g, caches_[l], x, *dout, *dx, scratch_);
    std::swap(dout, dx);
  }
  return *dout;  // the gradient w.r.t. the input of block 0
}

// ---- task 1: full recomputation -------------------------------------------------------------------

void RecomputeGPT::allocate_full() {
  // TODO(lesson 03, task 1): allocate what full recomputation keeps
  const DType dt = model_->dtype();
  const Device dev = model_->device();
  for (int l = 0; l < cfg_.n_layer; ++l)
    outputs_.push_back(Tensor::empty({B_, T_, cfg_.n_embd}, dt, dev, MemCategory::Activations));
  work_ = make_block_cache(cfg_, B_, T_, dt, dev);
  // END TODO
}

double RecomputeGPT::forward_full() {
  // TODO(lesson 03, task 1): forward that keeps only each block's output
  const Tensor* x = &encoded_;
  for (int l = 0; l < cfg_.n_layer; ++l) {
    forward_block(l, work_, *x);
    outputs_[l].copy_from(work_.out);
    x = &outputs_[l];
  }
  return head_forward_(*x);
  // END TODO
}

const Tensor& RecomputeGPT::backward_full() {
  // TODO(lesson 03, task 1): backward that recomputes each block before its backward
  const int L = cfg_.n_layer;
  head_backward_(outputs_[L - 1]);
  Tensor* dout = &dresid_a_;
  Tensor* dx = &dresid_b_;
  for (int l = L - 1; l >= 0; --l) {
    const Tensor& x = l == 0 ? encoded_ : outputs_[l - 1];
    forward_block(l, work_, x);  // the recomputation: the same op on the same input
    BlockParams g = block_views(model_->grads(), model_->layout(), l);
    dx->zero_();
    block_backward(cfg_, block_views(model_->params(), model_->layout(), l), g, work_, x, *dout, *dx, scratch_);
    std::swap(dout, dx);
  }
  return *dout;
  // END TODO
}

// ---- task 2: selective recomputation ----------------------------------------------------------------

void RecomputeGPT::allocate_selective() {
  // TODO(lesson 03, task 2): allocate every cache except att, and one shared att
  const DType dt = model_->dtype();
  const Device dev = model_->device();
  const int64_t B = B_, T = T_, C = cfg_.n_embd;
  auto a = [&](Shape s) { return Tensor::empty(s, dt, dev, MemCategory::Activations); };
  att_ = a({B, cfg_.n_head, T, T});
  for (int l = 0; l < cfg_.n_layer; ++l) {
    BlockCache c;
    c.ln1 = a({B, T, C});
    c.ln1_mean = a({B, T});
    c.ln1_rstd = a({B, T});
    c.qkv = a({B, T, 3 * C});
    c.att = att_;
    c.atty = a({B, T, C});
    c.resid2 = a({B, T, C});
    c.ln2 = a({B, T, C});
    c.ln2_mean = a({B, T});
    c.ln2_rstd = a({B, T});
    c.fch = a({B, T, 4 * C});
    c.fch_gelu = a({B, T, 4 * C});
    c.out = a({B, T, C});
    caches_.push_back(c);
  }
  // END TODO
}

double RecomputeGPT::forward_selective() {
  // TODO(lesson 03, task 2): forward with a shared att buffer
  const Tensor* x = &encoded_;
  for (int l = 0; l < cfg_.n_layer; ++l) {
    forward_block(l, caches_[l], *x);
    x = &caches_[l].out;
  }
  return head_forward_(*x);
  // END TODO
}

const Tensor& RecomputeGPT::backward_selective() {
  // TODO(lesson 03, task 2): backward that recomputes att before each block's backward
  const int L = cfg_.n_layer;
  head_backward_(caches_[L - 1].out);
  Tensor* dout = &dresid_a_;
  Tensor* dx = &dresid_b_;
  for (int l = L - 1; l >= 0; --l) {
    const Tensor& x = l == 0 ? encoded_ : caches_[l - 1].out;
    recompute_attention(caches_[l]);
    BlockParams g = block_views(model_->grads(), model_->layout(), l);
    dx->zero_();
    block_backward(cfg_, block_views(model_->params(), model_->layout(), l), g, caches_[l], x, *dout, *dx, scratch_);
    std::swap(dout, dx);
  }
  return *dout;
  // END TODO
}

// ---- task 3: the memory formula -------------------------------------------------------------------------

int64_t predicted_activation_bytes(const GPTConfig& cfg, int64_t B, int64_t T, Recompute mode, DType dtype) {
  // TODO(lesson 03, task 3): peak activation bytes of each mode
  const int64_t s = static_cast<int64_t>(dtype_size(dtype));
  const int64_t C = cfg.n_embd, NH = cfg.n_head, L = cfg.n_layer, Vp = cfg.padded_vocab_size, BT = B * T;
  const int64_t att = NH * B * T * T;
  const int64_t cache = 16 * BT * C + 4 * BT + att;  // block_cache_numel
  const int64_t head = 2 * BT * C + 3 * BT + BT * Vp;
  const int64_t common = BT * C /*encoded*/ + head + 15 * BT * C /*scratch*/ + 2 * BT * C /*dresid*/;
  int64_t blocks = 0;
  switch (mode) {
    case Recompute::None: blocks = L * cache; break;
    case Recompute::Selective: blocks = L * (cache - att) + att; break;
    case Recompute::Full: blocks = L * BT * C + cache; break;
  }
  return (common + blocks) * s;
  // END TODO
}

}  // namespace sgpt::lesson03
