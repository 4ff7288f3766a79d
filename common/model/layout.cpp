#include "model/layout.hpp"

#include <algorithm>
#include <cmath>

#include "core/rng.hpp"

namespace sgpt {

ParameterLayout::ParameterLayout(const GPTConfig& cfg) {
  cfg.validate();
  const int64_t C = cfg.n_embd, Vp = cfg.padded_vocab_size, V = cfg.vocab_size;
  // GPT-2 initialisation (Radford et al. 2019): N(0, 0.02) weights, zero biases, unit LayerNorm
  // gains; the projections into the residual stream are scaled by 1/sqrt(2L).
  const double std = 0.02, proj_std = 0.02 / std::sqrt(2.0 * cfg.n_layer);
  auto add = [&](const std::string& name, Shape shape, int layer, InitKind init, double s, bool decay,
                 int64_t rows = -1) {
    int64_t n = shape_numel(shape);
    params_.push_back({name, shape, numel_, n, layer, init, s, rows < 0 ? shape[0] : rows, decay});
    numel_ += n;
  };
  add("transformer.wte.weight", {Vp, C}, -1, InitKind::Normal, std, true, V);
  add("transformer.wpe.weight", {cfg.max_seq_len, C}, -1, InitKind::Normal, std, true);
  for (int l = 0; l < cfg.n_layer; ++l) {
    const std::string p = "transformer.h." + std::to_string(l) + ".";
    int64_t begin = numel_;
    add(p + "ln_1.weight", {C}, l, InitKind::Ones, 0, false);
    add(p + "ln_1.bias", {C}, l, InitKind::Zeros, 0, false);
    add(p + "attn.c_attn.weight", {3 * C, C}, l, InitKind::Normal, std, true);
    add(p + "attn.c_attn.bias", {3 * C}, l, InitKind::Zeros, 0, false);
    add(p + "attn.c_proj.weight", {C, C}, l, InitKind::Normal, proj_std, true);
    add(p + "attn.c_proj.bias", {C}, l, InitKind::Zeros, 0, false);
    add(p + "ln_2.weight", {C}, l, InitKind::Ones, 0, false);
    add(p + "ln_2.bias", {C}, l, InitKind::Zeros, 0, false);
    add(p + "mlp.c_fc.weight", {4 * C, C}, l, InitKind::Normal, std, true);
    add(p + "mlp.c_fc.bias", {4 * C}, l, InitKind::Zeros, 0, false);
    add(p + "mlp.c_proj.weight", {C, 4 * C}, l, InitKind::Normal, proj_std, true);
    add(p + "mlp.c_proj.bias", {C}, l, InitKind::Zeros, 0, false);
    layer_ranges_.push_back({begin, numel_});
  }
  add("transformer.ln_f.weight", {C}, -1, InitKind::Ones, 0, false);
  add("transformer.ln_f.bias", {C}, -1, InitKind::Zeros, 0, false);
  if (!cfg.tied_embeddings) add("lm_head.weight", {Vp, C}, -1, InitKind::Normal, std, true, V);
}

const ParamInfo& ParameterLayout::find(const std::string& name) const {
  for (const ParamInfo& p : params_)
    if (p.name == name) return p;
  SGPT_FAIL("no parameter named '", name, "' in this model");
}

std::pair<int64_t, int64_t> ParameterLayout::layer_range(int layer) const {
  SGPT_CHECK(layer >= 0 && layer < static_cast<int>(layer_ranges_.size()), "layer ", layer, " out of range [0, ",
             layer_ranges_.size(), ")");
  return layer_ranges_[layer];
}

// Element i of parameter p under the stream key of (seed, p.name); elements from init_end on
// (vocabulary padding rows) stay zero.
template <class T>
static T init_value(const ParamInfo& p, uint64_t key, int64_t init_end, int64_t i) {
  if (p.init == InitKind::Ones) return T(1);
  if (p.init == InitKind::Normal && i < init_end) return static_cast<T>(p.init_std * rng::normal(key, i));
  return T(0);
}

template <class T>
static void init_range(T* out, const ParameterLayout& layout, uint64_t seed, int64_t begin, int64_t end) {
  for (const ParamInfo& p : layout.params()) {
    int64_t lo = std::max(begin, p.offset), hi = std::min(end, p.offset + p.numel);
    if (lo >= hi) continue;
    const uint64_t key = rng::stream_key(seed, p.name);
    const int64_t init_end = p.init_rows * (p.numel / p.shape[0]);
#pragma omp parallel for schedule(static)
    for (int64_t g = lo; g < hi; ++g) out[g - begin] = init_value<T>(p, key, init_end, g - p.offset);
  }
}

// out[i*K + j] = element (row0 + i, col0 + j) of p, viewed as [rows, cols].
template <class T>
static void init_block(T* out, const ParamInfo& p, uint64_t seed, int64_t R, int64_t K, int64_t row0, int64_t col0) {
  const uint64_t key = rng::stream_key(seed, p.name);
  const int64_t cols = p.numel / p.shape[0], init_end = p.init_rows * cols;
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < R; ++i)
    for (int64_t j = 0; j < K; ++j) out[i * K + j] = init_value<T>(p, key, init_end, (row0 + i) * cols + col0 + j);
}

void init_parameters(Tensor& out, const ParameterLayout& layout, uint64_t seed, int64_t begin) {
  SGPT_CHECK(begin >= 0 && begin + out.numel() <= layout.numel(), "init_parameters: range [", begin, ", ",
             begin + out.numel(), ") outside the ", layout.numel(), " parameters");
  if (is_half(out.dtype())) {  // 16-bit parameters: the f32 values, rounded
    Tensor f = Tensor::empty(out.shape(), DType::F32, Device::CPU);
    init_parameters(f, layout, seed, begin);
    Tensor h = f.cast(out.dtype());
    out.copy_from(h);
    return;
  }
  Tensor host = out.device() == Device::CPU ? out : Tensor::empty(out.shape(), out.dtype(), Device::CPU);
  if (host.dtype() == DType::F32)
    init_range(host.data<float>(), layout, seed, begin, begin + out.numel());
  else if (host.dtype() == DType::F64)
    init_range(host.data<double>(), layout, seed, begin, begin + out.numel());
  else
    SGPT_FAIL("init_parameters: dtype ", dtype_name(host.dtype()), " is not supported");
  if (out.device() != Device::CPU) out.copy_from(host);
}

void init_parameter_slice(Tensor& out, const ParameterLayout& layout, uint64_t seed, const std::string& name,
                          int64_t row_begin, int64_t col_begin) {
  const ParamInfo& p = layout.find(name);
  const int64_t rows = p.shape[0], cols = p.numel / rows;  // a 1-D parameter is `rows` rows of one
  SGPT_CHECK(out.dim() == 1 || out.dim() == 2, "init_parameter_slice: out must be [R] or [R,K], got ",
             shape_str(out.shape()));
  const int64_t R = out.size(0), K = out.dim() == 2 ? out.size(1) : 1;
  SGPT_CHECK((out.dim() == 2) == (p.shape.size() == 2), "init_parameter_slice: out ", shape_str(out.shape()),
             " and parameter '", name, "' ", shape_str(p.shape), " differ in rank");
  SGPT_CHECK(row_begin >= 0 && col_begin >= 0 && row_begin + R <= rows && col_begin + K <= cols,
             "init_parameter_slice: rows [", row_begin, ", ", row_begin + R, ") x columns [", col_begin, ", ",
             col_begin + K, ") outside parameter '", name, "' ", shape_str(p.shape));
  Tensor host = out.device() == Device::CPU ? out : Tensor::empty(out.shape(), out.dtype(), Device::CPU);
  if (host.dtype() == DType::F32)
    init_block(host.data<float>(), p, seed, R, K, row_begin, col_begin);
  else if (host.dtype() == DType::F64)
    init_block(host.data<double>(), p, seed, R, K, row_begin, col_begin);
  else
    SGPT_FAIL("init_parameter_slice: dtype ", dtype_name(host.dtype()), " is not supported");
  if (out.device() != Device::CPU) out.copy_from(host);
}

}  // namespace sgpt
