#pragma once
// Shared by the public and hidden tests of lesson 10: a small f64 model in a "dirty" state (every
// parameter, bias and LayerNorm gain perturbed, so a bias added t times or a missing sum shows),
// the single-device reference of one block or a stack of blocks, the slice of a full tensor that a
// rank must hold (written out here, independently of the student's code), and a helper that runs
// a check on in-process groups of several sizes and then on the MPI world of the test run.

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "comm/testing/mpi_test.hpp"
#include "core/rng.hpp"
#include "core/testing.hpp"
#include "kernels/ops.hpp"
#include "tensor_parallel.hpp"

namespace lesson10_test {

using namespace sgpt;
using namespace sgpt::lesson10;

// A tiny model whose heads (12) and MLP width (96) divide by 1, 2, 3 and 4.
inline GPTConfig config(int C = 24, int NH = 12, int L = 2) {
  GPTConfig cfg;
  cfg.name = "lesson10-test";
  cfg.max_seq_len = 16;
  cfg.set_vocab(32);
  cfg.n_layer = L;
  cfg.n_head = NH;
  cfg.n_embd = C;
  cfg.validate();
  return cfg;
}

// Values of a pure function of (seed, stream, index): normal * scale + shift.
inline Tensor noise(const Shape& s, uint64_t seed, const std::string& stream, double scale, double shift = 0.0) {
  std::vector<double> v(shape_numel(s));
  const uint64_t key = rng::stream_key(seed, stream);
  for (size_t i = 0; i < v.size(); ++i) v[i] = shift + scale * rng::normal(key, i);
  return Tensor::from(v, s);
}

// The full flat parameters of `cfg` (f64), initialised from `seed` and then perturbed everywhere.
inline Tensor dirty_params(const GPTConfig& cfg, const ParameterLayout& layout, uint64_t seed) {
  Tensor p = Tensor::empty({layout.numel()}, DType::F64, Device::CPU, MemCategory::Parameters);
  init_parameters(p, layout, seed);
  axpy_(p, 1.0, noise({layout.numel()}, seed, "dirty-params", 0.1));
  return p;
}

// Rank r's slice of one block's full tensors `full` (weights, gradients or optimizer moments):
// qkv rows of r's heads in Q, K and V; attproj columns; fc rows; fcproj columns; the vectors whole.
// Written out independently of the student's init_block_shard.
inline Tensor shard_of(const BlockParams& full, const GPTConfig& cfg, int t, int r) {
  const int64_t C = cfg.n_embd, Cs = C / t, Fs = 4 * C / t;  // per rank: channels of the heads, MLP units
  std::vector<double> out;
  auto all = [&](const Tensor& x) {
    std::vector<double> v = x.to_vector();
    out.insert(out.end(), v.begin(), v.end());
  };
  auto rows = [&](const Tensor& x, int64_t row0, int64_t n) {  // rows [row0, row0 + n) of a [R,K] or [R]
    const int64_t K = x.dim() == 2 ? x.size(1) : 1;
    std::vector<double> v = x.to_vector();
    out.insert(out.end(), v.begin() + row0 * K, v.begin() + (row0 + n) * K);
  };
  auto cols = [&](const Tensor& x, int64_t col0, int64_t n) {  // columns [col0, col0 + n) of [R,K]
    const int64_t R = x.size(0), K = x.size(1);
    std::vector<double> v = x.to_vector();
    for (int64_t i = 0; i < R; ++i) out.insert(out.end(), v.begin() + i * K + col0, v.begin() + i * K + col0 + n);
  };
  all(full.ln1_w);
  all(full.ln1_b);
  for (int j = 0; j < 3; ++j) rows(full.qkv_w, j * C + r * Cs, Cs);
  for (int j = 0; j < 3; ++j) rows(full.qkv_b, j * C + r * Cs, Cs);
  cols(full.attproj_w, r * Cs, Cs);
  all(full.attproj_b);
  all(full.ln2_w);
  all(full.ln2_b);
  rows(full.fc_w, r * Fs, Fs);
  rows(full.fc_b, r * Fs, Fs);
  cols(full.fcproj_w, r * Fs, Fs);
  all(full.fcproj_b);
  Tensor s = Tensor::from(out, {int64_t(out.size())});
  EXPECT_EQ(s.numel(), tp_block_numel(cfg, t));
  return s;
}

// Largest |a - b| / (1 + |b|) over the elements; the sizes must agree.
inline double max_rel_diff(const Tensor& a, const Tensor& b) {
  if (a.numel() != b.numel()) return INFINITY;
  std::vector<double> x = a.to_vector(), y = b.to_vector();
  double m = 0;
  for (size_t i = 0; i < x.size(); ++i) m = std::max(m, std::abs(x[i] - y[i]) / (1.0 + std::abs(y[i])));
  return m;
}

// f64 results of different summation orders agree to ~1e-15; a wrong algorithm misses by > 1e-3.
constexpr double kTol = 1e-10;

// Checks every named tensor of a rank's shard against the slice of the full tensors.
inline void expect_shard_eq(const BlockParams& got, const Tensor& want_flat, const GPTConfig& cfg, int t,
                            const std::string& at) {
  const BlockParams w = tp_block_views(want_flat, cfg, t);
  const char* names[] = {"ln1_w", "ln1_b", "qkv_w",     "qkv_b", "attproj_w", "attproj_b",
                         "ln2_w", "ln2_b", "fc_w", "fc_b", "fcproj_w",  "fcproj_b"};
  const Tensor* g[] = {&got.ln1_w, &got.ln1_b, &got.qkv_w, &got.qkv_b, &got.attproj_w, &got.attproj_b,
                       &got.ln2_w, &got.ln2_b, &got.fc_w,  &got.fc_b,  &got.fcproj_w,  &got.fcproj_b};
  const Tensor* e[] = {&w.ln1_w, &w.ln1_b, &w.qkv_w, &w.qkv_b, &w.attproj_w, &w.attproj_b,
                       &w.ln2_w, &w.ln2_b, &w.fc_w,  &w.fc_b,  &w.fcproj_w,  &w.fcproj_b};
  for (int i = 0; i < 12; ++i) EXPECT_LT(max_rel_diff(*g[i], *e[i]), kTol) << at << " " << names[i];
}

// The single-device run of one block (layer 1 of a two-layer model, so layer names matter) from
// dirty parameters and dirty gradients: out, dx and the gradients after one backward.
struct BlockRef {
  GPTConfig cfg;
  ParameterLayout layout;
  int64_t B, T;
  int layer = 1;
  Tensor params, grads0, grads, x, dout, out, dx0, dx;
  BlockRef(const GPTConfig& c, int64_t B_, int64_t T_, uint64_t seed) : cfg(c), layout(c), B(B_), T(T_) {
    const int64_t C = cfg.n_embd;
    params = dirty_params(cfg, layout, seed);
    grads0 = noise({layout.numel()}, seed, "dirty-grads", 0.5);
    grads = Tensor::zeros({layout.numel()}, DType::F64);
    grads.copy_from(grads0);
    x = noise({B, T, C}, seed, "x", 1.0);
    dout = noise({B, T, C}, seed, "dout", 1.0);
    dx0 = noise({B, T, C}, seed, "dirty-dx", 0.5);
    dx = Tensor::zeros({B, T, C}, DType::F64);
    dx.copy_from(dx0);
    BlockCache cache = make_block_cache(cfg, B, T, DType::F64, Device::CPU);
    BlockGradScratch s = make_block_grad_scratch(cfg, B, T, DType::F64, Device::CPU);
    const BlockParams p = block_views(params, layout, layer);
    BlockParams g = block_views(grads, layout, layer);
    block_forward(cfg, p, cache, x);
    out = Tensor::from(cache.out.to_vector(), cache.out.shape());
    block_backward(cfg, p, g, cache, x, dout, dx, s);
  }
  // Rank r's slice of the block's parameters, starting gradients and final gradients.
  Tensor param_shard(int t, int r) const { return shard_of(block_views(params, layout, layer), cfg, t, r); }
  Tensor grad0_shard(int t, int r) const { return shard_of(block_views(grads0, layout, layer), cfg, t, r); }
  Tensor grad_shard(int t, int r) const { return shard_of(block_views(grads, layout, layer), cfg, t, r); }
};

// Runs fn on in-process groups (threads backend) of each size in `ranks`, then on the MPI world of
// this run (one rank when the binary runs alone, N under `mpirun -np N`).
inline void on_groups(const std::vector<int>& ranks, const std::function<void(Communicator&)>& fn) {
  for (int p : ranks) {
    SCOPED_TRACE("threads group of " + std::to_string(p) + " ranks");
    run_threads(p, fn);
  }
  SCOPED_TRACE("MPI world of " + std::to_string(sgpt::testing::world().size()) + " ranks");
  fn(sgpt::testing::world());
}

// Label for failures.
inline std::string where(const Communicator& c) {
  return "[t=" + std::to_string(c.size()) + " rank " + std::to_string(c.rank()) + "]";
}

// A rank's shard buffer (f64) with its views.
struct Shard {
  Tensor flat;
  BlockParams v;
  Shard(const GPTConfig& cfg, int t, const Tensor& values = Tensor()) {
    flat = Tensor::zeros({tp_block_numel(cfg, t)}, DType::F64);
    if (values.defined()) flat.copy_from(values);
    v = tp_block_views(flat, cfg, t);
  }
};

// Expects exactly `calls` calls of `bytes` in total of kind k, and none of the kinds in `none`.
inline void expect_calls(const Communicator& c, OpKind k, int64_t calls, int64_t bytes, const std::string& at) {
  EXPECT_EQ(c.stats()[k].calls, calls) << at << " " << op_name(k) << " calls";
  EXPECT_EQ(c.stats()[k].bytes, bytes) << at << " " << op_name(k) << " bytes";
}

// A stack of L blocks trained with AdamW on the loss 0.5·mean((out - y)^2), from dirty gradients
// and dirty optimizer moments; the single-device version, and what one rank of a TP group holds.
struct StackRun {
  GPTConfig cfg;
  ParameterLayout layout;
  int64_t B, T;
  uint64_t seed;
  Tensor params, grads, m, v, x, y;
  StackRun(const GPTConfig& c, int64_t B_, int64_t T_, uint64_t s) : cfg(c), layout(c), B(B_), T(T_), seed(s) {
    params = dirty_params(cfg, layout, seed);
    grads = noise({layout.numel()}, seed, "dirty-grads", 0.1);
    m = noise({layout.numel()}, seed, "dirty-m", 0.01);
    std::vector<double> vv = noise({layout.numel()}, seed, "dirty-v", 1e-3).to_vector();  // v >= 0
    for (double& e : vv) e = e * e;
    v = Tensor::from(vv, {layout.numel()});
    x = noise({B, T, cfg.n_embd}, seed, "x", 1.0);
    y = noise({B, T, cfg.n_embd}, seed, "y", 1.0);
  }
};

inline AdamWConfig adamw() {
  AdamWConfig a;
  a.lr = 1e-2;
  a.weight_decay = 0.1;
  return a;
}

// AdamW on each tensor of a block (the same update on every layout: it is element-wise).
inline void adamw_block(BlockParams& p, BlockParams& g, BlockParams& m, BlockParams& v, int64_t step) {
  Tensor* P[] = {&p.ln1_w, &p.ln1_b, &p.qkv_w, &p.qkv_b, &p.attproj_w, &p.attproj_b,
                 &p.ln2_w, &p.ln2_b, &p.fc_w,  &p.fc_b,  &p.fcproj_w,  &p.fcproj_b};
  Tensor* G[] = {&g.ln1_w, &g.ln1_b, &g.qkv_w, &g.qkv_b, &g.attproj_w, &g.attproj_b,
                 &g.ln2_w, &g.ln2_b, &g.fc_w,  &g.fc_b,  &g.fcproj_w,  &g.fcproj_b};
  Tensor* M[] = {&m.ln1_w, &m.ln1_b, &m.qkv_w, &m.qkv_b, &m.attproj_w, &m.attproj_b,
                 &m.ln2_w, &m.ln2_b, &m.fc_w,  &m.fc_b,  &m.fcproj_w,  &m.fcproj_b};
  Tensor* V[] = {&v.ln1_w, &v.ln1_b, &v.qkv_w, &v.qkv_b, &v.attproj_w, &v.attproj_b,
                 &v.ln2_w, &v.ln2_b, &v.fc_w,  &v.fc_b,  &v.fcproj_w,  &v.fcproj_b};
  for (int i = 0; i < 12; ++i) adamw_update(*P[i], *G[i], *M[i], *V[i], adamw(), step, i % 2 == 0);
}

// dout = (out - y) / numel(all positions) for the loss 0.5·mean((out - y)^2); returns the loss
// contribution of these positions.
inline double mse_grad(Tensor& dout, const Tensor& out, const Tensor& y, double total_numel) {
  std::vector<double> o = out.to_vector(), t = y.to_vector(), d(o.size());
  double loss = 0;
  for (size_t i = 0; i < o.size(); ++i) {
    d[i] = (o[i] - t[i]) / total_numel;
    loss += 0.5 * (o[i] - t[i]) * (o[i] - t[i]) / total_numel;
  }
  dout.copy_from(Tensor::from(d, out.shape()));
  return loss;
}

// The single-device run: `steps` AdamW steps of the stack; returns the losses and leaves the
// final parameters in r.params.
inline std::vector<double> train_single(StackRun& r, int steps) {
  const GPTConfig& cfg = r.cfg;
  const int L = cfg.n_layer;
  std::vector<BlockCache> caches;
  for (int l = 0; l < L; ++l) caches.push_back(make_block_cache(cfg, r.B, r.T, DType::F64, Device::CPU));
  BlockGradScratch s = make_block_grad_scratch(cfg, r.B, r.T, DType::F64, Device::CPU);
  Tensor dout = Tensor::zeros({r.B, r.T, cfg.n_embd}, DType::F64), dx = Tensor::zeros(dout.shape(), DType::F64);
  std::vector<double> losses;
  for (int step = 0; step < steps; ++step) {
    const Tensor* in = &r.x;
    for (int l = 0; l < L; ++l) {
      block_forward(cfg, block_views(r.params, r.layout, l), caches[l], *in);
      in = &caches[l].out;
    }
    losses.push_back(mse_grad(dout, caches[L - 1].out, r.y, double(r.B * r.T * cfg.n_embd)));
    for (int l = L - 1; l >= 0; --l) {
      BlockParams g = block_views(r.grads, r.layout, l);
      dx.zero_();
      block_backward(cfg, block_views(r.params, r.layout, l), g, caches[l], l == 0 ? r.x : caches[l - 1].out, dout,
                     dx, s);
      dout.copy_from(dx);
    }
    for (int l = 0; l < L; ++l) {
      BlockParams p = block_views(r.params, r.layout, l), g = block_views(r.grads, r.layout, l);
      BlockParams m = block_views(r.m, r.layout, l), v = block_views(r.v, r.layout, l);
      adamw_block(p, g, m, v, 4 + step);
    }
    r.grads.zero_();
  }
  return losses;
}

// The same run on rank c.rank() of a TP group, with or without sequence parallelism; returns the
// losses (summed over the group) and leaves this rank's final parameter shards in `final_shards`.
inline std::vector<double> train_tp(const StackRun& r0, Communicator& c, bool sp, int steps,
                                    std::vector<Tensor>& final_shards) {
  const GPTConfig& cfg = r0.cfg;
  const int L = cfg.n_layer, t = c.size(), rank = c.rank();
  const int64_t C = cfg.n_embd, Tl = sp ? r0.T / t : r0.T;
  std::vector<Shard> P, G, M, V;
  for (int l = 0; l < L; ++l) {
    P.emplace_back(cfg, t, shard_of(block_views(r0.params, r0.layout, l), cfg, t, rank));
    G.emplace_back(cfg, t, shard_of(block_views(r0.grads, r0.layout, l), cfg, t, rank));
    M.emplace_back(cfg, t, shard_of(block_views(r0.m, r0.layout, l), cfg, t, rank));
    V.emplace_back(cfg, t, shard_of(block_views(r0.v, r0.layout, l), cfg, t, rank));
  }
  const Tensor x = sp ? seq_shard(r0.x, t, rank) : r0.x;
  const Tensor y = sp ? seq_shard(r0.y, t, rank) : r0.y;
  std::vector<BlockCache> caches;
  for (int l = 0; l < L; ++l) caches.push_back(make_tp_block_cache(cfg, r0.B, r0.T, t, sp, DType::F64));
  TPScratch s = make_tp_scratch(cfg, r0.B, r0.T, t, sp, DType::F64);
  Tensor dout = Tensor::zeros({r0.B, Tl, C}, DType::F64), dx = Tensor::zeros(dout.shape(), DType::F64);
  std::vector<double> losses;
  for (int step = 0; step < steps; ++step) {
    const Tensor* in = &x;
    for (int l = 0; l < L; ++l) {
      if (sp)
        sp_block_forward(c, cfg, P[l].v, caches[l], *in, s);
      else
        tp_block_forward(c, cfg, P[l].v, caches[l], *in);
      in = &caches[l].out;
    }
    double loss = mse_grad(dout, caches[L - 1].out, y, double(r0.B * r0.T * C));
    Tensor lt = Tensor::from(std::vector<double>{sp ? loss : loss / t}, {1});
    c.all_reduce(lt);
    losses.push_back(lt.to_vector()[0]);
    for (int l = L - 1; l >= 0; --l) {
      dx.zero_();
      const Tensor& xin = l == 0 ? x : caches[l - 1].out;
      if (sp)
        sp_block_backward(c, cfg, P[l].v, G[l].v, caches[l], xin, dout, dx, s);
      else
        tp_block_backward(c, cfg, P[l].v, G[l].v, caches[l], xin, dout, dx, s);
      dout.copy_from(dx);
    }
    for (int l = 0; l < L; ++l) {
      adamw_block(P[l].v, G[l].v, M[l].v, V[l].v, 4 + step);
      G[l].flat.zero_();
    }
  }
  final_shards.clear();
  for (int l = 0; l < L; ++l) final_shards.push_back(P[l].flat);
  return losses;
}

}  // namespace lesson10_test
