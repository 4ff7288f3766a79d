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
  // Contract: the comment of this function in the header. Hints: README.md, section "Hints", task 1.
  SGPT_TODO(3, 1, "allocate what full recomputation keeps");
}

double RecomputeGPT::forward_full() {
  // TODO(lesson 03, task 1): forward that keeps only each block's output
  // Contract: the comment of this function in the header. Hints: README.md, section "Hints", task 1.
  SGPT_TODO(3, 1, "forward that keeps only each block's output");
}

const Tensor& RecomputeGPT::backward_full() {
  // TODO(lesson 03, task 1): backward that recomputes each block before its backward
  // Contract: the comment of this function in the header. Hints: README.md, section "Hints", task 1.
  SGPT_TODO(3, 1, "backward that recomputes each block before its backward");
}

// ---- task 2: selective recomputation ----------------------------------------------------------------

void RecomputeGPT::allocate_selective() {
  // TODO(lesson 03, task 2): allocate every cache except att, and one shared att
  // Contract: the comment of this function in the header. Hints: README.md, section "Hints", task 2.
  SGPT_TODO(3, 2, "allocate every cache except att, and one shared att");
}

double RecomputeGPT::forward_selective() {
  // TODO(lesson 03, task 2): forward with a shared att buffer
  // Contract: the comment of this function in the header. Hints: README.md, section "Hints", task 2.
  SGPT_TODO(3, 2, "forward with a shared att buffer");
}

const Tensor& RecomputeGPT::backward_selective() {
  // TODO(lesson 03, task 2): backward that recomputes att before each block's backward
  // Contract: the comment of this function in the header. Hints: README.md, section "Hints", task 2.
  SGPT_TODO(3, 2, "backward that recomputes att before each block's backward");
}

// ---- task 3: the memory formula -------------------------------------------------------------------------

int64_t predicted_activation_bytes(const GPTConfig& cfg, int64_t B, int64_t T, Recompute mode, DType dtype) {
  // TODO(lesson 03, task 3): peak activation bytes of each mode
  // Contract: the comment of this function in the header. Hints: README.md, section "Hints", task 3.
  SGPT_TODO(3, 3, "peak activation bytes of each mode");
}

}  // namespace sgpt::lesson03
