// Lesson 12 (given): a pipeline stage of tensor-parallel blocks. It is PipelineStage
// (common/model/pipeline_stage.cpp) with lesson 10's block in place of the single-device one; the
// embedding and the head run whole on every rank of the tensor-parallel group.

#include "tp_stage.hpp"

#include <algorithm>
#include <string>

#include "core/check.hpp"
#include "core/trace.hpp"
#include "pipeline_gpipe.hpp"

namespace sgpt::lesson12 {

int64_t tp_stage_numel(const GPTConfig& cfg, const StageSpec& spec, int t) {
  const int64_t C = cfg.n_embd, Vp = cfg.padded_vocab_size;
  int64_t n = spec.num_layers() * lesson10::tp_block_numel(cfg, t);
  if (spec.is_first()) n += Vp * C + int64_t(cfg.max_seq_len) * C;  // wte, wpe
  if (spec.is_last()) n += 2 * C + Vp * C;                           // ln_f, lm_head
  return n;
}

StageActivationParts stage_activation_parts(const GPTConfig& cfg, const StageSpec& spec, int t, int64_t b, int64_t T,
                                            int64_t act_bytes) {
  lesson10::check_tp_sizes(cfg, t, T, false);
  const int64_t C = cfg.n_embd, Vp = cfg.padded_vocab_size;
  StageActivationParts a;
  a.layers = spec.num_layers();
  a.block_cache = lesson10::tp_block_cache_numel(cfg, b, T, t, false) * act_bytes;
  a.block_input = b * T * C * act_bytes;
  a.outer = b * T * C * act_bytes;                    // the stage input (embedding output or received x)
  if (spec.is_first()) a.outer += b * T * 4;          // the tokens, i32
  if (spec.is_last())                                 // targets; ln_f out and its gradient, mean, rstd,
    a.outer += b * T * 4 + (2 * b * T * C + 3 * b * T + b * T * Vp) * act_bytes;  // losses; logits
  // lesson 10's TPScratch: dresid2, dln2, dln1, full_a, full_b [b,T,C]; datty [b,T,C/t]; dfch,
  // dfch_gelu [b,T,4C/t]; dqkv [b,T,3C/t]; replicated [6C]; plus dcur and dnext [b,T,C].
  a.backward = (b * T * (5 * C + C / t + 8 * C / t + 3 * C / t) + 6 * C + 2 * b * T * C) * act_bytes;
  return a;
}

TPStage::TPStage(const GPTConfig& cfg, int num_stages, int stage, Communicator& tp, uint64_t seed, DType dtype,
                 const AdamWConfig& opt, std::optional<ShardRange> optimizer_shard)
    : cfg_(cfg), tp_(&tp), t_size_(tp.size()), layout_(cfg), dtype_(dtype), opt_(opt), live_(str("TPStage ", stage)) {
  SGPT_CHECK(!cfg.tied_embeddings, "TPStage: tied embeddings would need wte on the first stage and on the last; "
                                   "build the model with tied_embeddings = false");
  SGPT_CHECK(dtype == DType::F32 || dtype == DType::F64, "TPStage: f32 or f64 only, got ", dtype_name(dtype));
  spec_ = lesson08::stage_spec(cfg, num_stages, stage);
  const int t = t_size_, r = tp.rank();
  const int64_t C = cfg.n_embd, Vp = cfg.padded_vocab_size, maxT = cfg.max_seq_len;
  block_numel_ = lesson10::tp_block_numel(cfg, t);  // checks that t divides the heads and 4C
  embed_numel_ = spec_.is_first() ? Vp * C + maxT * C : 0;
  const int64_t n = tp_stage_numel(cfg, spec_, t);
  sharded_ = optimizer_shard.has_value();
  shard_ = optimizer_shard.value_or(ShardRange{0, n});
  SGPT_CHECK(shard_.begin >= 0 && shard_.count >= 0 && shard_.begin + shard_.count <= n, "TPStage ", spec_.stage,
             ": the optimizer shard [", shard_.begin, ", ", shard_.begin + shard_.count,
             ") is not inside this rank's buffer of ", n, " elements");
  params_ = Tensor::empty({n}, dtype, Device::CPU, MemCategory::Parameters);
  grads_ = Tensor::zeros({n}, dtype, Device::CPU, MemCategory::Gradients);
  m_ = Tensor::zeros({shard_.count}, dtype, Device::CPU, MemCategory::OptimizerState);
  v_ = Tensor::zeros({shard_.count}, dtype, Device::CPU, MemCategory::OptimizerState);
  // Initialise: the outer tensors are whole single-device tensors; each block is lesson 10's shard.
  auto init_whole = [&](const Tensor& view, const char* name) {
    Tensor v = view;
    init_parameter_slice(v, layout_, seed, name, 0);
  };
  OuterParams o = outer_of(params_);
  if (spec_.is_first()) {
    init_whole(o.wte, "transformer.wte.weight");
    init_whole(o.wpe, "transformer.wpe.weight");
  }
  if (spec_.is_last()) {
    init_whole(o.lnf_w, "transformer.ln_f.weight");
    init_whole(o.lnf_b, "transformer.ln_f.bias");
    init_whole(o.lm_head, "lm_head.weight");
  }
  for (int i = 0; i < spec_.num_layers(); ++i) {
    BlockParams b = block_of(params_, i);
    lesson10::init_block_shard(b, cfg, layout_, seed, spec_.first_layer + i, t, r);
  }
  // AdamW decays matrices and embeddings: the 2-D tensors, in buffer order.
  int64_t at = 0;  // the views are consecutive in the buffer, in this order
  auto add = [&](const Tensor& v) {
    segments_.push_back({at, v.numel(), v.dim() == 2});
    at += v.numel();
  };
  if (spec_.is_first()) {
    add(o.wte);
    add(o.wpe);
  }
  for (int i = 0; i < spec_.num_layers(); ++i) {
    BlockParams b = block_of(params_, i);
    for (const Tensor* x : {&b.ln1_w, &b.ln1_b, &b.qkv_w, &b.qkv_b, &b.attproj_w, &b.attproj_b, &b.ln2_w, &b.ln2_b,
                            &b.fc_w, &b.fc_b, &b.fcproj_w, &b.fcproj_b})
      add(*x);
  }
  if (spec_.is_last()) {
    add(o.lnf_w);
    add(o.lnf_b);
    add(o.lm_head);
  }
  SGPT_CHECK(at == n, "TPStage: the AdamW segments cover ", at, " of ", n, " elements");
}

BlockParams TPStage::block_of(const Tensor& flat, int i) const {
  return lesson10::tp_block_views(flat.view(embed_numel_ + i * block_numel_, {block_numel_}), cfg_, t_size_);
}

OuterParams TPStage::outer_of(const Tensor& flat) const {
  const int64_t C = cfg_.n_embd, Vp = cfg_.padded_vocab_size, maxT = cfg_.max_seq_len;
  OuterParams o;
  if (spec_.is_first()) {
    o.wte = flat.view(0, {Vp, C});
    o.wpe = flat.view(Vp * C, {maxT, C});
  }
  if (spec_.is_last()) {
    const int64_t at = embed_numel_ + spec_.num_layers() * block_numel_;
    o.lnf_w = flat.view(at, {C});
    o.lnf_b = flat.view(at + C, {C});
    o.lm_head = flat.view(at + 2 * C, {Vp, C});
  }
  return o;
}

void TPStage::load_from_full(Tensor& dst, const Tensor& full) const {
  SGPT_CHECK(full.numel() == layout_.numel() && dst.numel() == params_.numel(),
             "TPStage::load_from_full: needs a single-device buffer of ", layout_.numel(), " elements and a stage buffer of ",
             params_.numel(), "; got ", full.numel(), " and ", dst.numel());
  const int t = t_size_, r = tp_->rank();
  const int64_t C = cfg_.n_embd, Cs = C / t, Fs = 4 * C / t;
  OuterParams to = outer_of(dst), from = outer_views(full, layout_, cfg_);
  if (spec_.is_first()) {
    to.wte.copy_from(from.wte);
    to.wpe.copy_from(from.wpe);
  }
  if (spec_.is_last()) {
    to.lnf_w.copy_from(from.lnf_w);
    to.lnf_b.copy_from(from.lnf_b);
    to.lm_head.copy_from(from.lm_head);
  }
  // A block's shard: rows of its heads in each of Q, K, V; the matching columns of the output
  // projection; rows and columns of its MLP units; the vectors whole.
  auto rows = [](Tensor& d, const Tensor& s, int64_t row0) {  // d [R,...] = s[row0 .. row0 + R)
    d.copy_from(s.slice(row0, row0 + d.size(0)));
  };
  auto cols = [](Tensor& d, const Tensor& s, int64_t col0) {  // d [R,K] = s[:, col0 .. col0 + K)
    const int64_t R = d.size(0), K = d.size(1), N = s.size(1);
    for (int64_t i = 0; i < R; ++i) d.view(i * K, {K}).copy_from(s.view(i * N + col0, {K}));
  };
  for (int i = 0; i < spec_.num_layers(); ++i) {
    BlockParams d = block_of(dst, i), s = block_views(full, layout_, spec_.first_layer + i);
    d.ln1_w.copy_from(s.ln1_w);
    d.ln1_b.copy_from(s.ln1_b);
    for (int j = 0; j < 3; ++j) {
      Tensor dw = d.qkv_w.view(j * Cs * C, {Cs, C}), db = d.qkv_b.view(j * Cs, {Cs});
      rows(dw, s.qkv_w, j * C + r * Cs);
      rows(db, s.qkv_b, j * C + r * Cs);
    }
    cols(d.attproj_w, s.attproj_w, r * Cs);
    d.attproj_b.copy_from(s.attproj_b);
    d.ln2_w.copy_from(s.ln2_w);
    d.ln2_b.copy_from(s.ln2_b);
    rows(d.fc_w, s.fc_w, r * Fs);
    rows(d.fc_b, s.fc_b, r * Fs);
    cols(d.fcproj_w, s.fcproj_w, r * Fs);
    d.fcproj_b.copy_from(s.fcproj_b);
  }
}

void TPStage::load_moments_from_full(const Tensor& full_m, const Tensor& full_v) {
  Tensor whole = Tensor::empty({params_.numel()}, dtype_);  // scratch (Other), freed on return
  load_from_full(whole, full_m);
  m_.copy_from(whole.view(shard_.begin, {shard_.count}));
  load_from_full(whole, full_v);
  v_.copy_from(whole.view(shard_.begin, {shard_.count}));
}

void TPStage::optimizer_step(double lr) {
  TraceScope span("optimizer_step", TraceCategory::Compute);
  ++t_;
  AdamWConfig c = opt_;
  c.lr = lr;
  // Each tensor's part inside the shard (all of it, unsharded); the moments start at the shard.
  const int64_t lo = shard_.begin, hi = shard_.begin + shard_.count;
  for (const Segment& s : segments_) {
    const int64_t b = std::max(s.begin, lo), e = std::min(s.begin + s.numel, hi);
    if (b >= e) continue;
    Tensor p = params_.view(b, {e - b}), m = m_.view(b - lo, {e - b}), v = v_.view(b - lo, {e - b});
    adamw_update(p, grads_.view(b, {e - b}), m, v, c, t_, s.decay);
  }
}

Tensor TPStage::forward(int mb, const Tensor& x, const Tensor& targets) {
  live_.check_free(mb);
  SGPT_CHECK(x.defined() && x.dim() >= 2, "TPStage ", spec_.stage, ": forward needs an input");
  const int64_t b = x.size(0), T = x.size(1), C = cfg_.n_embd;
  TraceScope span = microbatch_span("forward", mb, spec_.stage);
  auto act = [&](Shape s) { return Tensor::empty(s, dtype_, Device::CPU, MemCategory::Activations); };
  MicroBatch a;
  a.input = act({b, T, C});
  if (spec_.is_first()) {
    SGPT_CHECK(x.dim() == 2 && x.dtype() == DType::I32, "TPStage 0: forward takes the tokens, i32 [b,T]");
    SGPT_CHECK(T <= cfg_.max_seq_len, "TPStage 0: sequence length ", T, " is longer than the context ",
               cfg_.max_seq_len);
    a.tokens = Tensor::empty({b, T}, DType::I32, Device::CPU, MemCategory::Activations);
    a.tokens.copy_from(x);
    embed_forward(a.input, a.tokens, outer_of(params_));
  } else {
    SGPT_CHECK(x.dim() == 3 && x.size(2) == C && x.dtype() == dtype_, "TPStage ", spec_.stage,
               ": forward takes the previous stage's output, ", dtype_name(dtype_), " [b,T,", C, "]; got ",
               dtype_name(x.dtype()), " ", shape_str(x.shape()));
    a.input.copy_from(x);
  }
  for (int i = 0; i < spec_.num_layers(); ++i) {
    a.blocks.push_back(lesson10::make_tp_block_cache(cfg_, b, T, t_size_, false, dtype_));
    lesson10::tp_block_forward(*tp_, cfg_, block_of(params_, i), a.blocks[i], i == 0 ? a.input : a.blocks[i - 1].out);
  }
  Tensor out;
  if (spec_.is_last()) {
    SGPT_CHECK(targets.defined() && targets.dtype() == DType::I32 && targets.dim() == 2 && targets.size(0) == b &&
                   targets.size(1) == T,
               "TPStage ", spec_.stage, " (the last): forward needs the targets, i32 [", b, ",", T, "]");
    a.targets = Tensor::empty({b, T}, DType::I32, Device::CPU, MemCategory::Activations);
    a.targets.copy_from(targets);
    a.head = make_head_cache(cfg_, b, T, dtype_, Device::CPU);
    a.loss = head_forward(cfg_, outer_of(params_), a.head, a.blocks.back().out, a.targets);
  } else {
    out = a.blocks.back().out;
  }
  live_.add(mb, std::move(a));
  return out;
}

double TPStage::loss(int mb) const {
  SGPT_CHECK(spec_.is_last(), "TPStage ", spec_.stage, ": only the last stage has the loss");
  return live_.at(mb).loss;
}

Tensor TPStage::backward(int mb, const Tensor& dout, double loss_scale) {
  MicroBatch& a = live_.for_backward(mb);
  TraceScope span = microbatch_span("backward", mb, spec_.stage);
  const int64_t b = a.input.size(0), T = a.input.size(1), C = cfg_.n_embd;
  if (b != scratch_b_ || T != scratch_t_) {
    scratch_ = lesson10::TPScratch();
    scratch_ = lesson10::make_tp_scratch(cfg_, b, T, t_size_, false, dtype_);
    scratch_b_ = b;
    scratch_t_ = T;
  }
  Tensor dcur = Tensor::zeros({b, T, C}, dtype_, Device::CPU, MemCategory::Activations);
  Tensor dnext = Tensor::zeros({b, T, C}, dtype_, Device::CPU, MemCategory::Activations);
  if (spec_.is_last()) {
    OuterParams g = outer_of(grads_);
    head_backward(cfg_, outer_of(params_), g, a.head, a.blocks.back().out, a.targets, loss_scale / double(b * T), dcur);
  } else {
    SGPT_CHECK(dout.defined() && dout.dtype() == dtype_ && dout.shape() == Shape({b, T, C}), "TPStage ", spec_.stage,
               ": backward of micro-batch ", mb, " needs d(output), ", dtype_name(dtype_), " [", b, ",", T, ",", C, "]");
    dcur.copy_from(dout);
  }
  for (int i = spec_.num_layers() - 1; i >= 0; --i) {
    BlockParams g = block_of(grads_, i);
    dnext.zero_();
    lesson10::tp_block_backward(*tp_, cfg_, block_of(params_, i), g, a.blocks[i], i == 0 ? a.input : a.blocks[i - 1].out,
                                dcur, dnext, scratch_);
    std::swap(dcur, dnext);
  }
  Tensor dx;
  if (spec_.is_first()) {
    OuterParams g = outer_of(grads_);
    embed_backward(g, dcur, a.tokens);
  } else {
    dx = Tensor::empty({b, T, C}, dtype_, Device::CPU, MemCategory::Communication);
    dx.copy_from(dcur);
  }
  live_.erase(mb);
  return dx;
}

}  // namespace sgpt::lesson12
