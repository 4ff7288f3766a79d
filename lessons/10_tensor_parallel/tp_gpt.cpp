// Given: a whole GPT-2 on lesson 10's tensor-parallel blocks (see tp_gpt.hpp).

#include "tp_gpt.hpp"

#include <algorithm>
#include <cmath>
#include <string>

#include "core/check.hpp"
#include "kernels/ops.hpp"

namespace sgpt::lesson10 {

namespace {

// Copies between a full block (single-device views) and rank r's shard of t, in either direction:
// the replicated vectors whole, the rows of r's heads in each of Q, K and V, the matching columns
// of the output projection, rows of the MLP expansion and the same columns of its contraction.
void copy_block_shard(const BlockParams& full, const BlockParams& shard, const GPTConfig& cfg, int t, int r,
                      bool to_shard) {
  const int64_t C = cfg.n_embd, Cs = C / t, Fs = 4 * C / t;
  auto move = [&](Tensor f, Tensor s) {  // handles on the same storage
    if (to_shard)
      s.copy_from(f);
    else
      f.copy_from(s);
  };
  auto rows = [&](const Tensor& f, const Tensor& s, int64_t f_row, int64_t s_row, int64_t n) {
    const int64_t K = f.dim() == 2 ? f.size(1) : 1;
    move(f.view(f_row * K, {n * K}), s.view(s_row * K, {n * K}));
  };
  auto cols = [&](const Tensor& f, const Tensor& s, int64_t col0, int64_t n) {
    const int64_t R = f.size(0), K = f.size(1);
    for (int64_t i = 0; i < R; ++i) move(f.view(i * K + col0, {n}), s.view(i * n, {n}));
  };
  for (auto m : {&BlockParams::ln1_w, &BlockParams::ln1_b, &BlockParams::attproj_b, &BlockParams::ln2_w,
                 &BlockParams::ln2_b, &BlockParams::fcproj_b})
    move(full.*m, shard.*m);
  for (int64_t j = 0; j < 3; ++j) {
    rows(full.qkv_w, shard.qkv_w, j * C + r * Cs, j * Cs, Cs);
    rows(full.qkv_b, shard.qkv_b, j * C + r * Cs, j * Cs, Cs);
  }
  cols(full.attproj_w, shard.attproj_w, r * Cs, Cs);
  rows(full.fc_w, shard.fc_w, r * Fs, 0, Fs);
  rows(full.fc_b, shard.fc_b, r * Fs, 0, Fs);
  cols(full.fcproj_w, shard.fcproj_w, r * Fs, Fs);
}

// The block tensors that are split across the group (the rest are replicated).
bool is_split(const Tensor BlockParams::*m) {
  return m == &BlockParams::qkv_w || m == &BlockParams::qkv_b || m == &BlockParams::attproj_w ||
         m == &BlockParams::fc_w || m == &BlockParams::fc_b || m == &BlockParams::fcproj_w;
}

constexpr Tensor BlockParams::*kBlockFields[] = {
    &BlockParams::ln1_w, &BlockParams::ln1_b, &BlockParams::qkv_w,    &BlockParams::qkv_b,
    &BlockParams::attproj_w, &BlockParams::attproj_b, &BlockParams::ln2_w, &BlockParams::ln2_b,
    &BlockParams::fc_w,  &BlockParams::fc_b,  &BlockParams::fcproj_w, &BlockParams::fcproj_b};

}  // namespace

TPGPT::TPGPT(Communicator& tp, const GPTConfig& cfg, uint64_t seed, bool sequence_parallel, DType dtype)
    : tp_(tp), cfg_(cfg), layout_(cfg), t_(tp.size()), rank_(tp.rank()), sp_(sequence_parallel), dtype_(dtype) {
  check_tp_sizes(cfg_, t_, 0, false);
  const int64_t C = cfg_.n_embd, Vp = cfg_.padded_vocab_size;
  outer_numel_ = Vp * C + cfg_.max_seq_len * C + 2 * C + (cfg_.tied_embeddings ? 0 : Vp * C);
  block_numel_ = tp_block_numel(cfg_, t_);
  const int64_t n = outer_numel_ + cfg_.n_layer * block_numel_;
  params_ = Tensor::zeros({n}, dtype_, Device::CPU, MemCategory::Parameters);
  grads_ = Tensor::zeros({n}, dtype_, Device::CPU, MemCategory::Gradients);
  m_ = Tensor::zeros({n}, dtype_, Device::CPU, MemCategory::OptimizerState);
  v_ = Tensor::zeros({n}, dtype_, Device::CPU, MemCategory::OptimizerState);
  OuterParams o = outer_of(params_);
  init_parameter_slice(o.wte, layout_, seed, "transformer.wte.weight", 0);
  init_parameter_slice(o.wpe, layout_, seed, "transformer.wpe.weight", 0);
  init_parameter_slice(o.lnf_w, layout_, seed, "transformer.ln_f.weight", 0);
  init_parameter_slice(o.lnf_b, layout_, seed, "transformer.ln_f.bias", 0);
  if (!cfg_.tied_embeddings) init_parameter_slice(o.lm_head, layout_, seed, "lm_head.weight", 0);
  for (int l = 0; l < cfg_.n_layer; ++l) {
    BlockParams b = block_of(params_, l);
    init_block_shard(b, cfg_, layout_, seed, l, t_, rank_);
  }
  // adamw_step decays the tensors of two or more dimensions: that must be the layout's rule.
  for (const ParamInfo& p : layout_.params())
    SGPT_CHECK(p.weight_decay == (p.shape.size() >= 2), "TPGPT: ", p.name,
               " breaks the rule 'weight decay on matrices and embeddings only' that adamw_step assumes");
}

OuterParams TPGPT::outer_of(const Tensor& local) const {
  const int64_t C = cfg_.n_embd, Vp = cfg_.padded_vocab_size;
  OuterParams o;
  int64_t at = 0;
  auto v = [&](Shape s) {
    Tensor x = local.view(at, s);
    at += shape_numel(s);
    return x;
  };
  o.wte = v({Vp, C});
  o.wpe = v({cfg_.max_seq_len, C});
  o.lnf_w = v({C});
  o.lnf_b = v({C});
  o.lm_head = cfg_.tied_embeddings ? o.wte : v({Vp, C});
  return o;
}

BlockParams TPGPT::block_of(const Tensor& local, int layer) const {
  return tp_block_views(local.view(outer_numel_ + layer * block_numel_, {block_numel_}), cfg_, t_);
}

void TPGPT::ensure_caches(int64_t B, int64_t T) {
  if (B == B_ && T == T_) return;
  check_tp_sizes(cfg_, t_, T, sp_);
  const int64_t C = cfg_.n_embd, Tl = sp_ ? T / t_ : T;
  caches_.clear();
  for (int l = 0; l < cfg_.n_layer; ++l) caches_.push_back(make_tp_block_cache(cfg_, B, T, t_, sp_, dtype_));
  head_ = make_head_cache(cfg_, B, Tl, dtype_, Device::CPU);
  scratch_ = make_tp_scratch(cfg_, B, T, t_, sp_, dtype_);
  encoded_ = Tensor::zeros({B, T, C}, dtype_, Device::CPU, MemCategory::Activations);
  dx_ = Tensor::zeros({B, Tl, C}, dtype_, Device::CPU, MemCategory::Activations);
  dprev_ = Tensor::zeros({B, Tl, C}, dtype_, Device::CPU, MemCategory::Activations);
  if (sp_) outer_scratch_ = Tensor::zeros({outer_numel_}, dtype_, Device::CPU, MemCategory::Gradients);
  B_ = B;
  T_ = T;
}

double TPGPT::forward(const Tensor& tokens, const Tensor& targets) {
  SGPT_CHECK(tokens.dim() == 2 && tokens.shape() == targets.shape() && tokens.dtype() == DType::I32 &&
                 targets.dtype() == DType::I32,
             "TPGPT::forward: tokens and targets must be i32 [B,T] of the same shape");
  const int64_t B = tokens.size(0), T = tokens.size(1);
  SGPT_CHECK(T <= cfg_.max_seq_len, "TPGPT::forward: T = ", T, " exceeds the context ", cfg_.max_seq_len);
  ensure_caches(B, T);
  tokens_ = tokens;
  const OuterParams o = outer_of(params_);
  embed_forward(encoded_, tokens, o);
  if (sp_) {
    // This rank's positions of the embedding output and of the targets.
    x0_ = seq_shard(encoded_, t_, rank_);
    const int64_t Tl = T / t_;
    std::vector<int32_t> tl(size_t(B * Tl));
    const int32_t* all = targets.data<int32_t>();
    for (int64_t b = 0; b < B; ++b)
      std::copy(all + b * T + rank_ * Tl, all + b * T + (rank_ + 1) * Tl, tl.begin() + b * Tl);
    targets_local_ = Tensor::from(tl, {B, Tl});
  } else {
    x0_ = encoded_;
    targets_local_ = targets;
  }
  const Tensor* in = &x0_;
  for (int l = 0; l < cfg_.n_layer; ++l) {
    const BlockParams p = block_of(params_, l);
    if (sp_)
      sp_block_forward(tp_, cfg_, p, caches_[l], *in, scratch_);
    else
      tp_block_forward(tp_, cfg_, p, caches_[l], *in);
    in = &caches_[l].out;
  }
  const double loss = head_forward(cfg_, o, head_, *in, targets_local_);
  if (!sp_) return loss;
  // The mean over the batch: every rank holds the mean of an equal share of the positions.
  Tensor l = Tensor::from(std::vector<double>{loss / t_}, {1});
  tp_.all_reduce(l);
  return l.to_vector()[0];
}

void TPGPT::backward() {
  SGPT_CHECK(B_ > 0 && tokens_.defined(), "TPGPT::backward: no forward to differentiate");
  const OuterParams o = outer_of(params_);
  // With SP the outer gradients are partial sums: collect them apart, add them over the group.
  OuterParams go = outer_of(sp_ ? outer_scratch_ : grads_);
  if (sp_) outer_scratch_.zero_();
  const int L = cfg_.n_layer;
  dx_.zero_();
  head_backward(cfg_, o, go, head_, caches_[L - 1].out, targets_local_, 1.0 / double(B_ * T_), dx_);
  for (int l = L - 1; l >= 0; --l) {
    dprev_.zero_();
    const BlockParams p = block_of(params_, l);
    BlockParams g = block_of(grads_, l);
    const Tensor& xin = l == 0 ? x0_ : caches_[l - 1].out;
    if (sp_)
      sp_block_backward(tp_, cfg_, p, g, caches_[l], xin, dx_, dprev_, scratch_);
    else
      tp_block_backward(tp_, cfg_, p, g, caches_[l], xin, dx_, dprev_, scratch_);
    std::swap(dx_, dprev_);
  }
  if (!sp_) {
    embed_backward(go, dx_, tokens_);
    return;
  }
  // The embedding's gradient from this rank's positions: its shard placed in a zero [B,T,C].
  Tensor rank_major = Tensor::zeros({t_, B_, T_ / t_, cfg_.n_embd}, dtype_);
  rank_major.view(rank_ * dx_.numel(), dx_.shape()).copy_from(dx_);
  Tensor full = Tensor::zeros({B_, T_, cfg_.n_embd}, dtype_);
  from_rank_major(full, rank_major, t_);
  embed_backward(go, full, tokens_);
  tp_.all_reduce(outer_scratch_);
  Tensor outer_grads = grads_.view(0, {outer_numel_});
  axpy_(outer_grads, 1.0, outer_scratch_);
}

double TPGPT::grad_norm() {
  // Replicated tensors once (every rank holds them whole), split ones summed over the group.
  double replicated = sum_of_squares(grads_.view(0, {outer_numel_})), split = 0;
  for (int l = 0; l < cfg_.n_layer; ++l) {
    const BlockParams g = block_of(grads_, l);
    for (auto m : kBlockFields) (is_split(m) ? split : replicated) += sum_of_squares(g.*m);
  }
  Tensor s = Tensor::from(std::vector<double>{split}, {1});
  tp_.all_reduce(s);
  return std::sqrt(replicated + s.to_vector()[0]);
}

double TPGPT::clip_grad_norm(double max_norm) {
  const double norm = grad_norm();
  if (max_norm > 0 && norm > max_norm) scale_(grads_, max_norm / (norm + 1e-6));
  return norm;
}

void TPGPT::adamw_step(const AdamWConfig& cfg, double lr) {
  ++adam_t_;
  AdamWConfig c = cfg;
  c.lr = lr;
  auto update = [&](const Tensor& p) {  // p: a view of params_; the same range of the others
    const int64_t off = p.offset() - params_.offset(), n = p.numel();
    Tensor pp = params_.view(off, {n}), m = m_.view(off, {n}), v = v_.view(off, {n});
    adamw_update(pp, grads_.view(off, {n}), m, v, c, adam_t_, p.dim() >= 2);
  };
  const OuterParams o = outer_of(params_);
  update(o.wte);
  update(o.wpe);
  update(o.lnf_w);
  update(o.lnf_b);
  if (!cfg_.tied_embeddings) update(o.lm_head);
  for (int l = 0; l < cfg_.n_layer; ++l) {
    const BlockParams p = block_of(params_, l);
    for (auto m : kBlockFields) update(p.*m);
  }
}

void TPGPT::shard_from_full(Tensor& local, const Tensor& full) const {
  SGPT_CHECK(full.numel() == layout_.numel() && local.numel() == params_.numel(),
             "TPGPT::shard_from_full: expected a full buffer of ", layout_.numel(), " and a local one of ",
             params_.numel(), " elements, got ", full.numel(), " and ", local.numel());
  const OuterParams fo = outer_views(full, layout_, cfg_);
  OuterParams lo = outer_of(local);
  lo.wte.copy_from(fo.wte);
  lo.wpe.copy_from(fo.wpe);
  lo.lnf_w.copy_from(fo.lnf_w);
  lo.lnf_b.copy_from(fo.lnf_b);
  if (!cfg_.tied_embeddings) lo.lm_head.copy_from(fo.lm_head);
  for (int l = 0; l < cfg_.n_layer; ++l)
    copy_block_shard(block_views(full, layout_, l), block_of(local, l), cfg_, t_, rank_, true);
}

void TPGPT::full_from_shards(Tensor& full, const Tensor& local) {
  SGPT_CHECK(full.numel() == layout_.numel() && local.numel() == params_.numel(),
             "TPGPT::full_from_shards: expected a full buffer of ", layout_.numel(), " and a local one of ",
             params_.numel(), " elements, got ", full.numel(), " and ", local.numel());
  Tensor all = Tensor::empty({t_ * local.numel()}, local.dtype(), local.device());
  tp_.all_gather(all, local);
  const Tensor rank0 = all.view(0, {local.numel()});
  OuterParams fo = outer_views(full, layout_, cfg_);
  const OuterParams lo = outer_of(rank0);
  fo.wte.copy_from(lo.wte);
  fo.wpe.copy_from(lo.wpe);
  fo.lnf_w.copy_from(lo.lnf_w);
  fo.lnf_b.copy_from(lo.lnf_b);
  if (!cfg_.tied_embeddings) fo.lm_head.copy_from(lo.lm_head);
  for (int r = 0; r < t_; ++r) {
    const Tensor mine = all.view(r * local.numel(), {local.numel()});
    for (int l = 0; l < cfg_.n_layer; ++l)
      copy_block_shard(block_views(full, layout_, l), block_of(mine, l), cfg_, t_, r, false);
  }
}

}  // namespace sgpt::lesson10
