// The GPT's forward and backward (model/gpt.cpp) cut at unit boundaries, with the parameters and
// gradients of each unit passed in: the same pure functions in the same order, so a run through
// the units computes exactly what GPT::forward / GPT::backward compute.

#include "parallel/unit_runner.hpp"

#include <algorithm>
#include <utility>

#include "core/check.hpp"

namespace sgpt {

UnitRunner::UnitRunner(const GPTConfig& cfg, DType dtype, Device device)
    : cfg_(cfg), layout_(cfg), dtype_(dtype), device_(device) {
  SGPT_CHECK(!cfg.tied_embeddings, "UnitRunner: tied embeddings put wte in the first and the last unit; "
             "build the model with tied_embeddings = false");
}

std::pair<int64_t, int64_t> UnitRunner::unit_range(int u) const {
  const int L = cfg_.n_layer;
  SGPT_CHECK(u >= 0 && u < L + 2, "UnitRunner: unit ", u, " out of range [0, ", L + 2, ")");
  if (u == 0) return {0, layout_.layer_range(0).first};
  if (u <= L) return layout_.layer_range(u - 1);
  return {layout_.layer_range(L - 1).second, layout_.numel()};
}

int64_t UnitRunner::largest_unit() const {
  int64_t m = 0;
  for (int u = 0; u < num_units(); ++u) m = std::max(m, unit_range(u).second - unit_range(u).first);
  return m;
}

void UnitRunner::check_unit(int u, const Tensor& t, const char* what) const {
  const auto [b, e] = unit_range(u);
  SGPT_CHECK(t.defined() && t.numel() == e - b && t.dtype() == dtype_, "UnitRunner: the ", what, " of unit ", u,
             " must hold its ", e - b, " elements (", dtype_name(dtype_), "), got ",
             t.defined() ? t.numel() : 0);
}

OuterParams UnitRunner::outer(int u, const Tensor& flat) const {
  const int64_t base = unit_range(u).first;
  auto v = [&](const char* name) { return param_view(flat, layout_.find(name), base); };
  OuterParams o;
  if (u == 0) {
    o.wte = v("transformer.wte.weight");
    o.wpe = v("transformer.wpe.weight");
  } else {
    o.lnf_w = v("transformer.ln_f.weight");
    o.lnf_b = v("transformer.ln_f.bias");
    o.lm_head = v("lm_head.weight");
  }
  return o;
}

void UnitRunner::start(const Tensor& tokens, const Tensor& targets) {
  SGPT_CHECK(tokens.defined() && tokens.dim() == 2 && tokens.dtype() == DType::I32 && targets.shape() == tokens.shape() &&
                 targets.dtype() == DType::I32,
             "UnitRunner::start: tokens and targets must be i32 [B,T] of the same shape");
  const int64_t B = tokens.size(0), T = tokens.size(1);
  SGPT_CHECK(T <= cfg_.max_seq_len, "UnitRunner::start: sequence length ", T, " exceeds the context ", cfg_.max_seq_len);
  act_.ensure(cfg_, B, T, dtype_, device_);
  act_.tokens.copy_from(tokens);
  act_.targets.copy_from(targets);
  next_forward_ = 0;
  next_backward_ = -1;
}

void UnitRunner::forward(int u, const Tensor& params) {
  SGPT_CHECK(act_.B > 0 && u == next_forward_, "UnitRunner::forward: unit ", u, " out of order (expected ", next_forward_,
             "; call start() first)");
  check_unit(u, params, "parameters");
  const int L = cfg_.n_layer;
  if (u == 0) {
    embed_forward(act_.encoded, act_.tokens, outer(0, params));
  } else if (u <= L) {
    const Tensor& x = u == 1 ? act_.encoded : act_.blocks[u - 2].out;
    block_forward(cfg_, block_views(params, layout_, u - 1, unit_range(u).first), act_.blocks[u - 1], x);
  } else {
    loss_ = head_forward(cfg_, outer(u, params), act_.head, act_.blocks[L - 1].out, act_.targets);
    next_backward_ = L + 1;
  }
  ++next_forward_;
}

void UnitRunner::backward(int u, const Tensor& params, Tensor& grads, double loss_scale) {
  SGPT_CHECK(u == next_backward_, "UnitRunner::backward: unit ", u, " out of order (expected ", next_backward_,
             "; run the forward of every unit first)");
  check_unit(u, params, "parameters");
  check_unit(u, grads, "gradients");
  const int L = cfg_.n_layer;
  // act_.dresid_a always holds the gradient flowing into the unit being processed from above.
  if (u == L + 1) {
    act_.dresid_a.zero_();
    OuterParams g = outer(u, grads);
    head_backward(cfg_, outer(u, params), g, act_.head, act_.blocks[L - 1].out, act_.targets,
                  loss_scale / double(act_.B * act_.T), act_.dresid_a);
  } else if (u >= 1) {
    const Tensor& x = u == 1 ? act_.encoded : act_.blocks[u - 2].out;
    const int64_t base = unit_range(u).first;
    BlockParams g = block_views(grads, layout_, u - 1, base);
    act_.dresid_b.zero_();
    block_backward(cfg_, block_views(params, layout_, u - 1, base), g, act_.blocks[u - 1], x, act_.dresid_a,
                   act_.dresid_b, act_.scratch);
    std::swap(act_.dresid_a, act_.dresid_b);
  } else {
    OuterParams g = outer(0, grads);
    embed_backward(g, act_.dresid_a, act_.tokens);
  }
  --next_backward_;
}

void UnitRunner::free_activations() { act_.clear(); }

}  // namespace sgpt
