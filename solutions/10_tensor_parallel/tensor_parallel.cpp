// Lesson 10: tensor parallelism (Shoeybi et al. 2019) and sequence parallelism (Korthikanti et al.
// 2022) of one GPT-2 block. The first half of the file is given: sizes, shard views, caches and
// small helpers. Tasks 1-8 follow.

#include "tensor_parallel.hpp"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "core/check.hpp"
#include "kernels/ops.hpp"

namespace sgpt::lesson10 {

// ---- given --------------------------------------------------------------------------------------------

void check_tp_sizes(const GPTConfig& cfg, int t, int64_t T, bool sp) {
  SGPT_CHECK(t >= 1, "tensor parallelism: the group size t must be >= 1, got ", t);
  SGPT_CHECK(cfg.n_head % t == 0, "tensor parallelism: t = ", t, " does not divide the ", cfg.n_head,
             " attention heads (each rank holds whole heads)");
  SGPT_CHECK((4 * cfg.n_embd) % t == 0, "tensor parallelism: t = ", t, " does not divide the MLP width 4C = ",
             4 * cfg.n_embd);
  SGPT_CHECK(!sp || T % t == 0, "sequence parallelism: t = ", t, " does not divide the sequence length T = ", T);
}

int64_t tp_block_numel(const GPTConfig& cfg, int t) {
  check_tp_sizes(cfg, t, 0, false);
  const int64_t C = cfg.n_embd;
  // 4 LayerNorm vectors and 2 replicated biases, then the sharded matrices and biases.
  return 6 * C + (3 * C / t) * C + 3 * C / t + C * (C / t) + (4 * C / t) * C + 4 * C / t + C * (4 * C / t);
}

BlockParams tp_block_views(const Tensor& flat, const GPTConfig& cfg, int t) {
  SGPT_CHECK(flat.numel() == tp_block_numel(cfg, t), "tp_block_views: the shard buffer has ", flat.numel(),
             " elements, a block's shard at t = ", t, " has ", tp_block_numel(cfg, t));
  const int64_t C = cfg.n_embd;
  int64_t at = 0;
  auto v = [&](Shape s) {
    Tensor x = flat.view(at, s);
    at += shape_numel(s);
    return x;
  };
  BlockParams p;
  p.ln1_w = v({C});
  p.ln1_b = v({C});
  p.qkv_w = v({3 * C / t, C});
  p.qkv_b = v({3 * C / t});
  p.attproj_w = v({C, C / t});
  p.attproj_b = v({C});
  p.ln2_w = v({C});
  p.ln2_b = v({C});
  p.fc_w = v({4 * C / t, C});
  p.fc_b = v({4 * C / t});
  p.fcproj_w = v({C, 4 * C / t});
  p.fcproj_b = v({C});
  return p;
}

BlockCache make_tp_block_cache(const GPTConfig& cfg, int64_t B, int64_t T, int t, bool sp, DType dt) {
  check_tp_sizes(cfg, t, T, sp);
  const int64_t C = cfg.n_embd, Ts = sp ? T / t : T;  // Ts: positions of the [B,T,C] tensors kept here
  auto a = [&](Shape s) { return Tensor::empty(s, dt, Device::CPU, MemCategory::Activations); };
  return {a({B, Ts, C}),         a({B, Ts}),       a({B, Ts}),           a({B, T, 3 * C / t}),
          a({B, cfg.n_head / t, T, T}), a({B, T, C / t}), a({B, Ts, C}), a({B, Ts, C}),
          a({B, Ts}),            a({B, Ts}),       a({B, T, 4 * C / t}), a({B, T, 4 * C / t}),
          a({B, Ts, C}),         Tensor()};  // no lse: TP attention keeps its probabilities
}

TPScratch make_tp_scratch(const GPTConfig& cfg, int64_t B, int64_t T, int t, bool sp, DType dt) {
  check_tp_sizes(cfg, t, T, sp);
  const int64_t C = cfg.n_embd, Ts = sp ? T / t : T;
  auto a = [&](Shape s) { return Tensor::empty(s, dt, Device::CPU, MemCategory::Activations); };
  TPScratch s;
  s.grad = {a({B, Ts, C}),         a({B, Ts, C}),         a({B, T, C / t}),    a({B, Ts, C}),
            a({B, T, 4 * C / t}), a({B, T, 4 * C / t}), a({B, T, 3 * C / t})};
  s.full_a = a({B, T, C});
  s.full_b = a({B, T, C});
  s.replicated = a({6 * C});
  return s;
}

namespace {
template <class T>
void add_bias_impl(T* y, const T* b, int64_t rows, int64_t C) {
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < C; ++j) y[i * C + j] += b[j];
}
template <class T>
void bias_backward_impl(T* db, const T* dy, int64_t rows, int64_t C) {
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < C; ++j) db[j] += dy[i * C + j];
}
// Copies [B, T, C] <-> [t, B, T/t, C]; to_full says which way.
template <class T>
void permute_impl(T* full, T* rank_major, int64_t B, int64_t Tn, int64_t C, int t, bool to_full) {
  const int64_t Ts = Tn / t;
  for (int r = 0; r < t; ++r)
    for (int64_t b = 0; b < B; ++b)
      for (int64_t s = 0; s < Ts; ++s) {
        T* f = full + (b * Tn + r * Ts + s) * C;
        T* m = rank_major + ((int64_t(r) * B + b) * Ts + s) * C;
        for (int64_t j = 0; j < C; ++j) {
          if (to_full)
            f[j] = m[j];
          else
            m[j] = f[j];
        }
      }
}
void check_rows(const Tensor& y, const Tensor& v, const char* op) {
  SGPT_CHECK(y.device() == Device::CPU && v.device() == Device::CPU && y.dtype() == v.dtype() && v.dim() == 1 &&
                 y.dim() >= 1 && y.size(y.dim() - 1) == v.numel(),
             op, ": needs CPU tensors of one dtype, [..., C] and [C]; got ", shape_str(y.shape()), " and ",
             shape_str(v.shape()));
}
void permute(const Tensor& full, const Tensor& rank_major, int t, bool to_full) {
  SGPT_CHECK(full.dim() == 3 && full.size(1) % t == 0 && rank_major.numel() == full.numel() &&
                 full.dtype() == rank_major.dtype(),
             "sequence reordering: full must be [B,T,C] with t = ", t, " dividing T and rank_major must have as ",
             "many elements; got ", shape_str(full.shape()), " and ", shape_str(rank_major.shape()));
  const int64_t B = full.size(0), T = full.size(1), C = full.size(2);
  if (full.dtype() == DType::F64)
    permute_impl(full.data<double>(), rank_major.data<double>(), B, T, C, t, to_full);
  else
    permute_impl(full.data<float>(), rank_major.data<float>(), B, T, C, t, to_full);
}
}  // namespace

void add_bias_(Tensor& y, const Tensor& bias) {
  check_rows(y, bias, "add_bias_");
  const int64_t C = bias.numel(), rows = y.numel() / C;
  if (y.dtype() == DType::F64)
    add_bias_impl(y.data<double>(), bias.data<double>(), rows, C);
  else
    add_bias_impl(y.data<float>(), bias.data<float>(), rows, C);
}

void bias_backward(Tensor& dbias, const Tensor& dy) {
  check_rows(dy, dbias, "bias_backward");
  const int64_t C = dbias.numel(), rows = dy.numel() / C;
  if (dy.dtype() == DType::F64)
    bias_backward_impl(dbias.data<double>(), dy.data<double>(), rows, C);
  else
    bias_backward_impl(dbias.data<float>(), dy.data<float>(), rows, C);
}

Tensor seq_shard(const Tensor& full, int t, int r) {
  SGPT_CHECK(full.dim() == 3 && t >= 1 && full.size(1) % t == 0 && r >= 0 && r < t, "seq_shard: t = ", t,
             " must divide T of ", shape_str(full.shape()), " and 0 <= r < t (r = ", r, ")");
  const int64_t B = full.size(0), T = full.size(1), C = full.size(2), Ts = T / t;
  Tensor out = Tensor::empty({B, Ts, C}, full.dtype(), full.device(), full.category());
  for (int64_t b = 0; b < B; ++b) out.slice(b, b + 1).copy_from(full.view((b * T + r * Ts) * C, {1, Ts, C}));
  return out;
}

void from_rank_major(Tensor& full, const Tensor& rank_major, int t) { permute(full, rank_major, t, true); }
void to_rank_major(Tensor& rank_major, const Tensor& full, int t) { permute(full, rank_major, t, false); }

// ---- task 1: the shard of each rank --------------------------------------------------------------------

void init_block_shard(BlockParams& shard, const GPTConfig& cfg, const ParameterLayout& layout, uint64_t seed,
                      int layer, int t, int rank) {
  // TODO(lesson 10, task 1): initialise this rank's shard as its slice of the single-device weights
  check_tp_sizes(cfg, t, 0, false);
  SGPT_CHECK(rank >= 0 && rank < t, "init_block_shard: rank ", rank, " outside a group of ", t);
  const int64_t C = cfg.n_embd, Cs = C / t, Hs = 4 * C / t;
  const std::string pre = "transformer.h." + std::to_string(layer) + ".";
  auto init = [&](Tensor& out, const char* name, int64_t row, int64_t col) {
    init_parameter_slice(out, layout, seed, pre + name, row, col);
  };
  // Replicated: the whole vector on every rank.
  init(shard.ln1_w, "ln_1.weight", 0, 0);
  init(shard.ln1_b, "ln_1.bias", 0, 0);
  init(shard.attproj_b, "attn.c_proj.bias", 0, 0);
  init(shard.ln2_w, "ln_2.weight", 0, 0);
  init(shard.ln2_b, "ln_2.bias", 0, 0);
  init(shard.fcproj_b, "mlp.c_proj.bias", 0, 0);
  // Column-parallel QKV: this rank's heads are rows [rank*Cs, (rank+1)*Cs) of each of Q, K and V.
  for (int64_t j = 0; j < 3; ++j) {
    Tensor w = shard.qkv_w.slice(j * Cs, (j + 1) * Cs);
    Tensor b = shard.qkv_b.slice(j * Cs, (j + 1) * Cs);
    init(w, "attn.c_attn.weight", j * C + rank * Cs, 0);
    init(b, "attn.c_attn.bias", j * C + rank * Cs, 0);
  }
  // Row-parallel output projection: the columns that multiply this rank's heads.
  init(shard.attproj_w, "attn.c_proj.weight", 0, rank * Cs);
  // MLP: rows of the expansion, the same columns of the contraction.
  init(shard.fc_w, "mlp.c_fc.weight", rank * Hs, 0);
  init(shard.fc_b, "mlp.c_fc.bias", rank * Hs, 0);
  init(shard.fcproj_w, "mlp.c_proj.weight", 0, rank * Hs);
  // END TODO
}

// ---- task 2: f and g ------------------------------------------------------------------------------

void f_forward(Communicator& tp, Tensor& x) {
  // TODO(lesson 10, task 2): the conjugate operators f and g
  // (identity)
  // END TODO
}

void f_backward(Communicator& tp, Tensor& dx) {
  // TODO(lesson 10, task 2): the conjugate operators f and g
  tp.all_reduce(dx);
  // END TODO
}

void g_forward(Communicator& tp, Tensor& y) {
  // TODO(lesson 10, task 2): the conjugate operators f and g
  tp.all_reduce(y);
  // END TODO
}

void g_backward(Communicator& tp, Tensor& dy) {
  // TODO(lesson 10, task 2): the conjugate operators f and g
  // (identity)
  // END TODO
}

// ---- task 3: the tensor-parallel block forward --------------------------------------------------------

void tp_block_forward(Communicator& tp, const GPTConfig& cfg, const BlockParams& p, BlockCache& c,
                      const Tensor& x) {
  // TODO(lesson 10, task 3): the tensor-parallel block forward
  const int t = tp.size();
  check_tp_sizes(cfg, t, x.size(1), false);
  const int local_heads = cfg.n_head / t;
  Tensor no_bias;
  // Attention: LayerNorm (replicated), f, column-parallel QKV of our heads, attention, row-parallel
  // projection (a partial sum), g, then the bias once and the residual.
  layernorm_forward(c.ln1, c.ln1_mean, c.ln1_rstd, x, p.ln1_w, p.ln1_b);
  f_forward(tp, c.ln1);
  matmul_forward(c.qkv, c.ln1, p.qkv_w, p.qkv_b);
  attention_forward(c.atty, c.att, c.qkv, local_heads);
  matmul_forward(c.resid2, c.atty, p.attproj_w, no_bias);
  g_forward(tp, c.resid2);
  add_bias_(c.resid2, p.attproj_b);
  axpy_(c.resid2, 1.0, x);
  // MLP: the same pattern with the expansion split by columns and the contraction by rows.
  layernorm_forward(c.ln2, c.ln2_mean, c.ln2_rstd, c.resid2, p.ln2_w, p.ln2_b);
  f_forward(tp, c.ln2);
  matmul_forward(c.fch, c.ln2, p.fc_w, p.fc_b);
  gelu_forward(c.fch_gelu, c.fch);
  matmul_forward(c.out, c.fch_gelu, p.fcproj_w, no_bias);
  g_forward(tp, c.out);
  add_bias_(c.out, p.fcproj_b);
  axpy_(c.out, 1.0, c.resid2);
  // END TODO
}

// ---- task 4: the tensor-parallel block backward -------------------------------------------------------

void tp_block_backward(Communicator& tp, const GPTConfig& cfg, const BlockParams& p, BlockParams& g,
                       const BlockCache& c, const Tensor& x, const Tensor& dout, Tensor& dx, TPScratch& s) {
  // TODO(lesson 10, task 4): the tensor-parallel block backward
  const int t = tp.size();
  check_tp_sizes(cfg, t, x.size(1), false);
  const int local_heads = cfg.n_head / t;
  BlockGradScratch& d = s.grad;
  // MLP branch. dout is whole on every rank (g's backward is the identity), so the bias
  // gradient is whole too.
  d.dresid2.copy_from(dout);
  Tensor dy = dout;
  g_backward(tp, dy);
  d.dfch_gelu.zero_();
  matmul_backward(d.dfch_gelu, g.fcproj_w, g.fcproj_b, dy, c.fch_gelu, p.fcproj_w);
  d.dfch.zero_();
  gelu_backward(d.dfch, c.fch, d.dfch_gelu);
  d.dln2.zero_();
  matmul_backward(d.dln2, g.fc_w, g.fc_b, d.dfch, c.ln2, p.fc_w);
  f_backward(tp, d.dln2);  // our columns' share of dln2 -> the whole dln2
  layernorm_backward(d.dresid2, g.ln2_w, g.ln2_b, d.dln2, c.resid2, p.ln2_w, c.ln2_mean, c.ln2_rstd);
  // Attention branch.
  axpy_(dx, 1.0, d.dresid2);
  g_backward(tp, d.dresid2);
  d.datty.zero_();
  matmul_backward(d.datty, g.attproj_w, g.attproj_b, d.dresid2, c.atty, p.attproj_w);
  d.dqkv.zero_();
  attention_backward(d.dqkv, d.datty, c.qkv, c.att, local_heads);
  d.dln1.zero_();
  matmul_backward(d.dln1, g.qkv_w, g.qkv_b, d.dqkv, c.ln1, p.qkv_w);
  f_backward(tp, d.dln1);
  layernorm_backward(dx, g.ln1_w, g.ln1_b, d.dln1, x, p.ln1_w, c.ln1_mean, c.ln1_rstd);
  // END TODO
}

// ---- task 5: sequence-parallel communication --------------------------------------------------------

void sp_all_gather(Communicator& tp, Tensor& full, const Tensor& shard) {
  // TODO(lesson 10, task 5): all-gather and reduce-scatter along the sequence
  const int t = tp.size();
  SGPT_CHECK(full.dim() == 3 && full.size(1) % t == 0 && shard.numel() * t == full.numel(),
             "sp_all_gather: full ", shape_str(full.shape()), " and shard ", shape_str(shard.shape()),
             " do not fit a group of ", t);
  Tensor staging = Tensor::empty({full.numel()}, full.dtype(), Device::CPU, MemCategory::Communication);
  tp.all_gather(staging, shard.reshape({shard.numel()}));
  from_rank_major(full, staging, t);
  // END TODO
}

void sp_reduce_scatter(Communicator& tp, Tensor& shard, const Tensor& full) {
  // TODO(lesson 10, task 5): all-gather and reduce-scatter along the sequence
  const int t = tp.size();
  SGPT_CHECK(full.dim() == 3 && full.size(1) % t == 0 && shard.numel() * t == full.numel(),
             "sp_reduce_scatter: full ", shape_str(full.shape()), " and shard ", shape_str(shard.shape()),
             " do not fit a group of ", t);
  Tensor staging = Tensor::empty({full.numel()}, full.dtype(), Device::CPU, MemCategory::Communication);
  to_rank_major(staging, full, t);
  Tensor out = shard.reshape({shard.numel()});
  tp.reduce_scatter(out, staging);
  // END TODO
}

// ---- task 6: the sequence-parallel block forward ----------------------------------------------------

void sp_block_forward(Communicator& tp, const GPTConfig& cfg, const BlockParams& p, BlockCache& c, const Tensor& x,
                      TPScratch& s) {
  // TODO(lesson 10, task 6): the sequence-parallel block forward
  const int t = tp.size();
  check_tp_sizes(cfg, t, x.size(1) * t, true);
  const int local_heads = cfg.n_head / t;
  Tensor no_bias;
  layernorm_forward(c.ln1, c.ln1_mean, c.ln1_rstd, x, p.ln1_w, p.ln1_b);
  sp_all_gather(tp, s.full_a, c.ln1);  // f becomes an all-gather: attention needs every position
  matmul_forward(c.qkv, s.full_a, p.qkv_w, p.qkv_b);
  attention_forward(c.atty, c.att, c.qkv, local_heads);
  matmul_forward(s.full_b, c.atty, p.attproj_w, no_bias);
  sp_reduce_scatter(tp, c.resid2, s.full_b);  // g becomes a reduce-scatter: sum, keep our positions
  add_bias_(c.resid2, p.attproj_b);
  axpy_(c.resid2, 1.0, x);
  layernorm_forward(c.ln2, c.ln2_mean, c.ln2_rstd, c.resid2, p.ln2_w, p.ln2_b);
  sp_all_gather(tp, s.full_a, c.ln2);
  matmul_forward(c.fch, s.full_a, p.fc_w, p.fc_b);
  gelu_forward(c.fch_gelu, c.fch);
  matmul_forward(s.full_b, c.fch_gelu, p.fcproj_w, no_bias);
  sp_reduce_scatter(tp, c.out, s.full_b);
  add_bias_(c.out, p.fcproj_b);
  axpy_(c.out, 1.0, c.resid2);
  // END TODO
}

// ---- task 7: the sequence-parallel block backward ----------------------------------------------------

void sp_block_backward(Communicator& tp, const GPTConfig& cfg, const BlockParams& p, BlockParams& g,
                       const BlockCache& c, const Tensor& x, const Tensor& dout, Tensor& dx, TPScratch& s) {
  // TODO(lesson 10, task 7): the sequence-parallel block backward
  const int t = tp.size();
  check_tp_sizes(cfg, t, x.size(1) * t, true);
  const int local_heads = cfg.n_head / t;
  const int64_t C = cfg.n_embd;
  BlockGradScratch& d = s.grad;
  Tensor none;
  // Partial gradients of the replicated vectors collect in s.replicated and are summed once at the
  // end: summing g itself would add the other ranks' earlier (dirty) gradients too.
  s.replicated.zero_();
  Tensor r_ln1_w = s.replicated.view(0, {C}), r_ln1_b = s.replicated.view(C, {C});
  Tensor r_attproj_b = s.replicated.view(2 * C, {C}), r_ln2_w = s.replicated.view(3 * C, {C});
  Tensor r_ln2_b = s.replicated.view(4 * C, {C}), r_fcproj_b = s.replicated.view(5 * C, {C});
  // MLP branch: dout's positions -> all of them (the conjugate of the forward's reduce-scatter).
  d.dresid2.copy_from(dout);
  bias_backward(r_fcproj_b, dout);
  sp_all_gather(tp, s.full_a, dout);
  d.dfch_gelu.zero_();
  matmul_backward(d.dfch_gelu, g.fcproj_w, none, s.full_a, c.fch_gelu, p.fcproj_w);
  d.dfch.zero_();
  gelu_backward(d.dfch, c.fch, d.dfch_gelu);
  sp_all_gather(tp, s.full_a, c.ln2);  // the gathered ln2 was not kept: gather it again
  s.full_b.zero_();
  matmul_backward(s.full_b, g.fc_w, g.fc_b, d.dfch, s.full_a, p.fc_w);
  sp_reduce_scatter(tp, d.dln2, s.full_b);  // the conjugate of the forward's all-gather
  layernorm_backward(d.dresid2, r_ln2_w, r_ln2_b, d.dln2, c.resid2, p.ln2_w, c.ln2_mean, c.ln2_rstd);
  // Attention branch.
  axpy_(dx, 1.0, d.dresid2);
  bias_backward(r_attproj_b, d.dresid2);
  sp_all_gather(tp, s.full_a, d.dresid2);
  d.datty.zero_();
  matmul_backward(d.datty, g.attproj_w, none, s.full_a, c.atty, p.attproj_w);
  d.dqkv.zero_();
  attention_backward(d.dqkv, d.datty, c.qkv, c.att, local_heads);
  sp_all_gather(tp, s.full_a, c.ln1);
  s.full_b.zero_();
  matmul_backward(s.full_b, g.qkv_w, g.qkv_b, d.dqkv, s.full_a, p.qkv_w);
  sp_reduce_scatter(tp, d.dln1, s.full_b);
  layernorm_backward(dx, r_ln1_w, r_ln1_b, d.dln1, x, p.ln1_w, c.ln1_mean, c.ln1_rstd);
  // One all-reduce of the 6C partial sums, then into the (replicated) gradients.
  tp.all_reduce(s.replicated);
  axpy_(g.ln1_w, 1.0, r_ln1_w);
  axpy_(g.ln1_b, 1.0, r_ln1_b);
  axpy_(g.attproj_b, 1.0, r_attproj_b);
  axpy_(g.ln2_w, 1.0, r_ln2_w);
  axpy_(g.ln2_b, 1.0, r_ln2_b);
  axpy_(g.fcproj_b, 1.0, r_fcproj_b);
  // END TODO
}

// ---- task 8: the memory formula --------------------------------------------------------------------

int64_t tp_block_cache_numel(const GPTConfig& cfg, int64_t B, int64_t T, int t, bool sp) {
  // TODO(lesson 10, task 8): the activation memory of one rank's block
  check_tp_sizes(cfg, t, T, sp);
  const int64_t C = cfg.n_embd, NH = cfg.n_head;
  // Split over the heads / MLP columns: qkv 3C, atty C, fch and fch_gelu 4C each, att NH*T*T.
  const int64_t split = 12 * B * T * C / t + NH / t * B * T * T;
  // ln1, resid2, ln2, out ([B,T,C]) and four [B,T] LayerNorm statistics: whole, or 1/t with SP.
  const int64_t rows = 4 * B * T * C + 4 * B * T;
  return split + (sp ? rows / t : rows);
  // END TODO
}

// ---- task 9 (stretch): vocabulary parallelism ---------------------------------------------------------

namespace {
// Given: checks of the vocabulary-parallel shapes; returns the rows (columns) per rank.
[[maybe_unused]] int64_t vocab_rows(const Tensor& shard, const Tensor& tokens, const char* op) {
  SGPT_CHECK(shard.device() == Device::CPU && (shard.dtype() == DType::F32 || shard.dtype() == DType::F64) &&
                 tokens.dtype() == DType::I32 && tokens.dim() == 2,
             op, ": needs f32/f64 CPU tensors and i32 tokens [B,T]");
  return shard.size(0);
}
}  // namespace

void vp_embed_forward(Communicator& tp, Tensor& encoded, const Tensor& tokens, const Tensor& wte_shard,
                      const Tensor& wpe) {
  // TODO(lesson 10, task 9): vocabulary-parallel embedding and cross-entropy
  const int64_t Vs = vocab_rows(wte_shard, tokens, "vp_embed_forward"), begin = tp.rank() * Vs;
  const int64_t B = tokens.size(0), T = tokens.size(1), C = wte_shard.size(1);
  const int32_t* tok = tokens.data<int32_t>();
  encoded.zero_();
  for (int64_t i = 0; i < B * T; ++i)
    if (tok[i] >= begin && tok[i] < begin + Vs)
      encoded.view(i * C, {C}).copy_from(wte_shard.view((tok[i] - begin) * C, {C}));
  tp.all_reduce(encoded);
  for (int64_t b = 0; b < B; ++b) {
    Tensor rows = encoded.view(b * T * C, {T, C});
    axpy_(rows, 1.0, wpe.view(0, {T, C}));
  }
  // END TODO
}

void vp_embed_backward(Communicator& tp, Tensor& dwte_shard, Tensor& dwpe, const Tensor& dencoded,
                       const Tensor& tokens) {
  // TODO(lesson 10, task 9): vocabulary-parallel embedding and cross-entropy
  const int64_t Vs = vocab_rows(dwte_shard, tokens, "vp_embed_backward"), begin = tp.rank() * Vs;
  const int64_t B = tokens.size(0), T = tokens.size(1), C = dwte_shard.size(1);
  const int32_t* tok = tokens.data<int32_t>();
  for (int64_t i = 0; i < B * T; ++i)
    if (tok[i] >= begin && tok[i] < begin + Vs) {
      Tensor row = dwte_shard.view((tok[i] - begin) * C, {C});
      axpy_(row, 1.0, dencoded.view(i * C, {C}));
    }
  for (int64_t b = 0; b < B; ++b) {
    Tensor rows = dwpe.view(0, {T, C});
    axpy_(rows, 1.0, dencoded.view(b * T * C, {T, C}));
  }
  // END TODO
}

double vp_crossentropy_forward(Communicator& tp, Tensor& losses, Tensor& probs_shard, const Tensor& logits_shard,
                               const Tensor& targets, int vocab_size) {
  // TODO(lesson 10, task 9): vocabulary-parallel embedding and cross-entropy
  const int t = tp.size(), r = tp.rank();
  SGPT_CHECK(logits_shard.dim() == 3, "vp_crossentropy_forward: logits_shard must be [B,T,Vp/t]");
  const int64_t B = targets.size(0), T = targets.size(1), N = B * T, Vs = logits_shard.size(2);
  const int64_t begin = int64_t(r) * Vs, real = std::max<int64_t>(0, std::min<int64_t>(Vs, vocab_size - begin));
  const std::vector<double> z = logits_shard.to_vector();
  const int32_t* tgt = targets.data<int32_t>();
  // Row maxima of this rank's real columns, gathered: the global maximum of every row.
  Tensor mine = Tensor::empty({N}, DType::F64, Device::CPU, MemCategory::Communication);
  Tensor maxima = Tensor::empty({int64_t(t) * N}, DType::F64, Device::CPU, MemCategory::Communication);
  double* m = mine.data<double>();
  for (int64_t i = 0; i < N; ++i) {
    m[i] = -1e300;
    for (int64_t j = 0; j < real; ++j) m[i] = std::max(m[i], z[i * Vs + j]);
  }
  tp.all_gather(maxima, mine);
  std::vector<double> M(N, -1e300);
  const double* all = maxima.data<double>();
  for (int q = 0; q < t; ++q)
    for (int64_t i = 0; i < N; ++i) M[i] = std::max(M[i], all[q * N + i]);
  // Sums of exponentials and the target's logit (from the rank that holds it), summed.
  Tensor sums = Tensor::zeros({2 * N}, DType::F64, Device::CPU, MemCategory::Communication);
  double* sz = sums.data<double>();
  for (int64_t i = 0; i < N; ++i) {
    for (int64_t j = 0; j < real; ++j) sz[i] += std::exp(z[i * Vs + j] - M[i]);
    if (tgt[i] >= begin && tgt[i] < begin + real) sz[N + i] = z[i * Vs + (tgt[i] - begin)];
  }
  tp.all_reduce(sums);
  std::vector<double> p(N * Vs, 0.0), loss(N);
  double total = 0;
  for (int64_t i = 0; i < N; ++i) {
    for (int64_t j = 0; j < real; ++j) p[i * Vs + j] = std::exp(z[i * Vs + j] - M[i]) / sz[i];
    loss[i] = std::log(sz[i]) + M[i] - sz[N + i];
    total += loss[i];
  }
  probs_shard.copy_from(Tensor::from(p, probs_shard.shape()).cast(probs_shard.dtype()));
  losses.copy_from(Tensor::from(loss, losses.shape()).cast(losses.dtype()));
  return total / double(N);
  // END TODO
}

void vp_crossentropy_backward(Communicator& tp, Tensor& dlogits_shard, const Tensor& probs_shard,
                              const Tensor& targets, double dloss, int vocab_size) {
  // TODO(lesson 10, task 9): vocabulary-parallel embedding and cross-entropy
  const int64_t N = targets.numel(), Vs = probs_shard.size(2), begin = tp.rank() * Vs;
  const int64_t real = std::max<int64_t>(0, std::min<int64_t>(Vs, vocab_size - begin));
  std::vector<double> d = probs_shard.to_vector();
  const int32_t* tgt = targets.data<int32_t>();
  for (int64_t i = 0; i < N; ++i) {
    for (int64_t j = 0; j < Vs; ++j) d[i * Vs + j] = j < real ? d[i * Vs + j] * dloss : 0.0;
    if (tgt[i] >= begin && tgt[i] < begin + real) d[i * Vs + (tgt[i] - begin)] -= dloss;
  }
  dlogits_shard.copy_from(Tensor::from(d, dlogits_shard.shape()).cast(dlogits_shard.dtype()));
  // END TODO
}

}  // namespace sgpt::lesson10
