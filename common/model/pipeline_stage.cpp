#include "model/pipeline_stage.hpp"

#include <algorithm>
#include <string>

#include "core/check.hpp"
#include "core/trace.hpp"

namespace sgpt {

PipelineStage::PipelineStage(const GPTConfig& cfg, const StageSpec& spec, uint64_t seed, DType dtype, Device device)
    : cfg_(cfg), spec_(spec), layout_(cfg), dtype_(dtype), device_(device), live_(str("pipeline stage ", spec.stage)) {
  const int p = spec.num_stages, r = spec.stage, L = cfg.n_layer;
  const std::string who = "pipeline stage " + std::to_string(r) + " of " + std::to_string(p);
  SGPT_CHECK(p >= 1 && r >= 0 && r < p, who, ": the stage index must lie in [0, ", p, ")");
  SGPT_CHECK(spec.first_layer >= 0 && spec.first_layer < spec.end_layer && spec.end_layer <= L, who, ": blocks [",
             spec.first_layer, ", ", spec.end_layer, ") are not a non-empty range of the model's ", L, " blocks");
  SGPT_CHECK(!spec.is_first() || spec.first_layer == 0, who, ": the first stage must start at block 0, not ",
             spec.first_layer);
  SGPT_CHECK(!spec.is_last() || spec.end_layer == L, who, ": the last stage must end at block ", L, ", not ",
             spec.end_layer);
  SGPT_CHECK(p == 1 || !cfg.tied_embeddings, who,
             ": tied embeddings put wte on the first stage (embedding) and on the last (head); "
             "build the pipelined model with tied_embeddings = false");
  // The parameters this stage reads: its blocks, plus the embeddings (first) and the final
  // LayerNorm and lm_head (last). The layout makes them one contiguous range.
  const int64_t need_begin = spec.is_first() ? 0 : layout_.layer_range(spec.first_layer).first;
  const int64_t need_end = spec.is_last() ? layout_.numel() : layout_.layer_range(spec.end_layer - 1).second;
  SGPT_CHECK(spec.param_begin >= 0 && spec.param_begin <= need_begin && spec.param_end >= need_end &&
                 spec.param_end <= layout_.numel(),
             who, ": the parameter range [", spec.param_begin, ", ", spec.param_end,
             ") must lie inside the model's [0, ", layout_.numel(), ") and hold the stage's parameters [", need_begin,
             ", ", need_end, ")");
  params_ = Tensor::empty({spec.num_params()}, dtype, device, MemCategory::Parameters);
  grads_ = Tensor::zeros({spec.num_params()}, dtype, device, MemCategory::Gradients);
  init_parameters(params_, layout_, seed, spec.param_begin);
}

Tensor PipelineStage::param(const std::string& name) const {
  return param_view(params_, layout_.find(name), spec_.param_begin);
}
Tensor PipelineStage::grad(const std::string& name) const {
  return param_view(grads_, layout_.find(name), spec_.param_begin);
}

int64_t PipelineStage::activation_bytes_per_microbatch(int64_t b, int64_t T) const {
  const int64_t es = static_cast<int64_t>(dtype_size(dtype_)), C = cfg_.n_embd;
  int64_t bytes = b * T * C * es + spec_.num_layers() * block_cache_numel(cfg_, b, T) * es;  // input + blocks
  if (spec_.is_first()) bytes += b * T * 4;                                                 // tokens
  if (spec_.is_last())                                                                      // targets + head
    bytes += b * T * 4 + (2 * b * T * C + 3 * b * T + b * T * int64_t(cfg_.padded_vocab_size)) * es;
  return bytes;
}

void PipelineStage::free_activations() {
  live_.clear();
  scratch_ = BlockGradScratch();
  scratch_b_ = scratch_t_ = 0;
}

OuterParams PipelineStage::outer_of(const Tensor& flat) const {
  auto v = [&](const char* name) { return param_view(flat, layout_.find(name), spec_.param_begin); };
  OuterParams o;
  if (spec_.is_first()) {
    o.wte = v("transformer.wte.weight");
    o.wpe = v("transformer.wpe.weight");
  }
  if (spec_.is_last()) {
    o.lnf_w = v("transformer.ln_f.weight");
    o.lnf_b = v("transformer.ln_f.bias");
    o.lm_head = cfg_.tied_embeddings ? o.wte : v("lm_head.weight");
  }
  return o;
}

Tensor PipelineStage::block_input(const MicroBatch& a, int i) const {
  return i == 0 ? a.input : a.blocks[i - 1].out;
}

Tensor PipelineStage::forward(int mb, const Tensor& x, const Tensor& targets) {
  live_.check_free(mb);
  SGPT_CHECK(x.defined() && x.dim() >= 2, "pipeline stage ", spec_.stage, ": forward needs an input");
  const int64_t b = x.size(0), T = x.size(1), C = cfg_.n_embd;
  TraceScope span = microbatch_span("forward", mb, spec_.stage);
  auto act = [&](Shape s) { return Tensor::empty(s, dtype_, device_, MemCategory::Activations); };
  MicroBatch a;
  a.input = act({b, T, C});
  if (spec_.is_first()) {
    SGPT_CHECK(x.dim() == 2 && x.dtype() == DType::I32, "pipeline stage 0: forward takes the tokens, i32 [b,T]; got ",
               dtype_name(x.dtype()), " ", shape_str(x.shape()));
    SGPT_CHECK(T <= cfg_.max_seq_len, "pipeline stage 0: sequence length ", T, " is longer than the context ",
               cfg_.max_seq_len);
    a.tokens = Tensor::empty({b, T}, DType::I32, device_, MemCategory::Activations);
    a.tokens.copy_from(x);
    embed_forward(a.input, a.tokens, outer_params());
  } else {
    SGPT_CHECK(x.dim() == 3 && x.size(2) == C && x.dtype() == dtype_, "pipeline stage ", spec_.stage,
               ": forward takes the previous stage's output, ", dtype_name(dtype_), " [b,T,", C, "]; got ",
               dtype_name(x.dtype()), " ", shape_str(x.shape()));
    a.input.copy_from(x);
  }
  for (int l = spec_.first_layer; l < spec_.end_layer; ++l) {
    const int i = l - spec_.first_layer;
    a.blocks.push_back(make_block_cache(cfg_, b, T, dtype_, device_));
    block_forward(cfg_, block_views(params_, layout_, l, spec_.param_begin), a.blocks[i], block_input(a, i));
  }
  Tensor out;
  if (spec_.is_last()) {
    SGPT_CHECK(targets.defined() && targets.dtype() == DType::I32 && targets.dim() == 2 && targets.size(0) == b &&
                   targets.size(1) == T,
               "pipeline stage ", spec_.stage, " (the last): forward needs the targets, i32 [", b, ",", T, "]");
    a.targets = Tensor::empty({b, T}, DType::I32, device_, MemCategory::Activations);
    a.targets.copy_from(targets);
    a.head = make_head_cache(cfg_, b, T, dtype_, device_);
    a.loss = head_forward(cfg_, outer_params(), a.head, a.blocks.back().out, a.targets);
  } else {
    out = a.blocks.back().out;
  }
  live_.add(mb, std::move(a));
  ++forwards_;
  return out;
}

Shape PipelineStage::boundary_shape(int mb) const { return live_.at(mb).input.shape(); }

double PipelineStage::loss(int mb) const {
  SGPT_CHECK(spec_.is_last(), "pipeline stage ", spec_.stage, ": only the last stage has the loss");
  return live_.at(mb).loss;
}

Tensor PipelineStage::backward(int mb, const Tensor& dout, double loss_scale) {
  MicroBatch& a = live_.for_backward(mb);
  TraceScope span = microbatch_span("backward", mb, spec_.stage);
  const int64_t b = a.input.size(0), T = a.input.size(1), C = cfg_.n_embd;
  if (b != scratch_b_ || T != scratch_t_) {
    scratch_ = make_block_grad_scratch(cfg_, b, T, dtype_, device_);
    scratch_b_ = b;
    scratch_t_ = T;
  }
  auto act = [&](Shape s) { return Tensor::zeros(s, dtype_, device_, MemCategory::Activations); };
  Tensor dcur = act({b, T, C}), dnext = act({b, T, C});
  const int n = spec_.num_layers();
  if (spec_.is_last()) {
    OuterParams g = outer_grads();
    head_backward(cfg_, outer_params(), g, a.head, a.blocks.back().out, a.targets, loss_scale / double(b * T), dcur);
  } else {
    SGPT_CHECK(dout.defined() && dout.dtype() == dtype_ && dout.shape() == Shape({b, T, C}), "pipeline stage ",
               spec_.stage, ": backward of micro-batch ", mb, " needs d(output), ", dtype_name(dtype_), " [", b, ",",
               T, ",", C, "]");
    dcur.copy_from(dout);
  }
  for (int i = n - 1; i >= 0; --i) {
    const int l = spec_.first_layer + i;
    BlockParams g = block_views(grads_, layout_, l, spec_.param_begin);
    dnext.zero_();
    block_backward(cfg_, block_views(params_, layout_, l, spec_.param_begin), g, a.blocks[i], block_input(a, i), dcur,
                   dnext, scratch_);
    std::swap(dcur, dnext);
  }
  Tensor dx;
  if (spec_.is_first()) {
    OuterParams g = outer_grads();
    embed_backward(g, dcur, a.tokens);
  } else {
    dx = dcur;
  }
  live_.erase(mb);
  ++backwards_;
  return dx;
}

}  // namespace sgpt
