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
  // Contract: the comment of this function in the header. Hints: README.md, section "Hints", task 1.
  SGPT_TODO(10, 1, "initialise this rank's shard as its slice of the single-device weights");
}

// ---- task 2: f and g ------------------------------------------------------------------------------

void f_forward(Communicator& tp, Tensor& x) {
  // TODO(lesson 10, task 2): the conjugate operators f and g
  // (identity)
  // Contract: the comment of this function in the header. Hints: README.md, section "Hints", task 2.
  SGPT_TODO(10, 2, "the conjugate operators f and g");
}

void f_backward(Communicator& tp, Tensor& dx) {
  // TODO(lesson 10, task 2): the conjugate operators f and g
  // Contract: the comment of this function in the header. Hints: README.md, section "Hints", task 2.
  SGPT_TODO(10, 2, "the conjugate operators f and g");
}

void g_forward(Communicator& tp, Tensor& y) {
  // TODO(lesson 10, task 2): the conjugate operators f and g
  // Contract: the comment of this function in the header. Hints: README.md, section "Hints", task 2.
  SGPT_TODO(10, 2, "the conjugate operators f and g");
}

void g_backward(Communicator& tp, Tensor& dy) {
  // TODO(lesson 10, task 2): the conjugate operators f and g
  // (identity)
  // Contract: the comment of this function in the header. Hints: README.md, section "Hints", task 2.
  SGPT_TODO(10, 2, "the conjugate operators f and g");
}

// ---- task 3: the tensor-parallel block forward --------------------------------------------------------

void tp_block_forward(Communicator& tp, const GPTConfig& cfg, const BlockParams& p, BlockCache& c,
                      const Tensor& x) {
  // TODO(lesson 10, task 3): the tensor-parallel block forward
  // Contract: the comment of this function in the header. Hints: README.md, section "Hints", task 3.
  SGPT_TODO(10, 3, "the tensor-parallel block forward");
}

// ---- task 4: the tensor-parallel block backward -------------------------------------------------------

void tp_block_backward(Communicator& tp, const GPTConfig& cfg, const BlockParams& p, BlockParams& g,
                       const BlockCache& c, const Tensor& x, const Tensor& dout, Tensor& dx, TPScratch& s) {
  // TODO(lesson 10, task 4): the tensor-parallel block backward
  // Contract: the comment of this function in the header. Hints: README.md, section "Hints", task 4.
  SGPT_TODO(10, 4, "the tensor-parallel block backward");
}

// ---- task 5: sequence-parallel communication --------------------------------------------------------

void sp_all_gather(Communicator& tp, Tensor& full, const Tensor& shard) {
  // TODO(lesson 10, task 5): all-gather and reduce-scatter along the sequence
  // Contract: the comment of this function in the header. Hints: README.md, section "Hints", task 5.
  SGPT_TODO(10, 5, "all-gather and reduce-scatter along the sequence");
}

void sp_reduce_scatter(Communicator& tp, Tensor& shard, const Tensor& full) {
  // TODO(lesson 10, task 5): all-gather and reduce-scatter along the sequence
  // Contract: the comment of this function in the header. Hints: README.md, section "Hints", task 5.
  SGPT_TODO(10, 5, "all-gather and reduce-scatter along the sequence");
}

// ---- task 6: the sequence-parallel block forward ----------------------------------------------------

void sp_block_forward(Communicator& tp, const GPTConfig& cfg, const BlockParams& p, BlockCache& c, const Tensor& x,
                      TPScratch& s) {
  // TODO(lesson 10, task 6): the sequence-parallel block forward
  // Contract: the comment of this function in the header. Hints: README.md, section "Hints", task 6.
  SGPT_TODO(10, 6, "the sequence-parallel block forward");
}

// ---- task 7: the sequence-parallel block backward ----------------------------------------------------

void sp_block_backward(Communicator& tp, const GPTConfig& cfg, const BlockParams& p, BlockParams& g,
                       const BlockCache& c, const Tensor& x, const Tensor& dout, Tensor& dx, TPScratch& s) {
  // TODO(lesson 10, task 7): the sequence-parallel block backward
  // Contract: the comment of this function in the header. Hints: README.md, section "Hints", task 7.
  SGPT_TODO(10, 7, "the sequence-parallel block backward");
}

// ---- task 8: the memory formula --------------------------------------------------------------------

int64_t tp_block_cache_numel(const GPTConfig& cfg, int64_t B, int64_t T, int t, bool sp) {
  // TODO(lesson 10, task 8): the activation memory of one rank's block
  // Contract: the comment of this function in the header. Hints: README.md, section "Hints", task 8.
  SGPT_TODO(10, 8, "the activation memory of one rank's block");
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
  // Contract: the comment of this function in the header. Hints: README.md, section "Hints", task 9.
  SGPT_TODO(10, 9, "vocabulary-parallel embedding and cross-entropy");
}

void vp_embed_backward(Communicator& tp, Tensor& dwte_shard, Tensor& dwpe, const Tensor& dencoded,
                       const Tensor& tokens) {
  // TODO(lesson 10, task 9): vocabulary-parallel embedding and cross-entropy
  // Contract: the comment of this function in the header. Hints: README.md, section "Hints", task 9.
  SGPT_TODO(10, 9, "vocabulary-parallel embedding and cross-entropy");
}

double vp_crossentropy_forward(Communicator& tp, Tensor& losses, Tensor& probs_shard, const Tensor& logits_shard,
                               const Tensor& targets, int vocab_size) {
  // TODO(lesson 10, task 9): vocabulary-parallel embedding and cross-entropy
  // Contract: the comment of this function in the header. Hints: README.md, section "Hints", task 9.
  SGPT_TODO(10, 9, "vocabulary-parallel embedding and cross-entropy");
}

void vp_crossentropy_backward(Communicator& tp, Tensor& dlogits_shard, const Tensor& probs_shard,
                              const Tensor& targets, double dloss, int vocab_size) {
  // TODO(lesson 10, task 9): vocabulary-parallel embedding and cross-entropy
  // Contract: the comment of this function in the header. Hints: README.md, section "Hints", task 9.
  SGPT_TODO(10, 9, "vocabulary-parallel embedding and cross-entropy");
}

}  // namespace sgpt::lesson10
