#pragma once
// Shared by the public and hidden tests of lesson 11: the tiny model (its parameter count and its
// units divide by neither 3 nor 4, so shards are uneven at d = 3 and 4), the data-parallel
// reference written with the library (lesson 06's step: one all-reduce of the whole gradient),
// dirty starting state, and the per-rank accounting helpers.

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "comm/testing/dp_testing.hpp"
#include "comm/testing/groups.hpp"
#include "comm/testing/mpi_test.hpp"
#include "core/testing.hpp"
#include "zero.hpp"

namespace lesson11_test {

using namespace sgpt;
using namespace sgpt::lesson11;
using sgpt::testing::identical_on_all_ranks;
using sgpt::testing::where;

// C = 14 (2 mod 4, not a multiple of 3), T = 7, V = Vp = 61, L = 2: psi = 14 * 493 = 6902, which
// d = 3 and d = 4 do not divide (6902 = 4 * 1725 + 2 = 3 * 2300 + 2); the block units (2534) do
// not either.
inline GPTConfig tiny_config(int n_layer = 2) {
  GPTConfig c;
  c.name = "zero-tiny";
  c.max_seq_len = 7;
  c.vocab_size = c.padded_vocab_size = 61;
  c.n_layer = n_layer;
  c.n_head = 2;
  c.n_embd = 14;
  c.tied_embeddings = false;
  return c;
}
constexpr int64_t kT = 7;

// The groups a check runs on: thread groups of 1-4 ranks under -np 1, the MPI world under -np 2..4.
inline void on_groups(const std::function<void(Communicator&)>& fn) { sgpt::testing::on_groups({1, 2, 3, 4}, fn); }
// Memory is per process: one rank per process only (the world under -np N, one thread under -np 1).
inline void on_processes(const std::function<void(Communicator&)>& fn) { sgpt::testing::on_groups({1}, fn); }

inline std::pair<Tensor, Tensor> global_batch(int64_t gbs, int V, uint64_t seed) {
  return {sgpt::testing::random_tokens(gbs, kT, V, seed, "lesson11-x"),
          sgpt::testing::random_tokens(gbs, kT, V, seed, "lesson11-y")};
}

using sgpt::testing::max_diff;
using sgpt::testing::rows_of;

using sgpt::testing::data_parallel_step;

// A warmed-up optimizer: moments m[i] = 0.01 sin(i), v[i] = 1e-4 (1 + cos(i)^2) at global index i,
// step counter 3, so a solution that starts its moments from zero or reads another piece's fails.
inline Tensor dirty_moment(int64_t begin, int64_t n, bool second, DType dt) {
  std::vector<double> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const double g = double(begin + i);
    v[size_t(i)] = second ? 1e-4 * (1 + std::cos(g) * std::cos(g)) : 0.01 * std::sin(g);
  }
  return Tensor::from(v, {n}).cast(dt);
}
inline void dirty_optimizer(AdamW& opt, int64_t begin) {
  opt.m().copy_from(dirty_moment(begin, opt.m().numel(), false, opt.m().dtype()));
  opt.v().copy_from(dirty_moment(begin, opt.v().numel(), true, opt.v().dtype()));
  opt.set_t(3);
}
inline void dirty_zero(ZeroState& z) {
  for (size_t i = 0; i < z.opts.size(); ++i) dirty_optimizer(z.opts[i], z.pieces[i].begin);
  for (Tensor* t : {&z.full_grads, &z.shard_grads, &z.unit_grads})
    if (t->defined() && t->numel() > 0) sgpt::testing::make_dirty(*t, 0.5, 7);
}


// This rank's pieces, computed here from the rule (independently of owned_pieces).
inline int64_t owned_elements(const std::vector<ShardRange>& units, int d, int r) {
  int64_t n = 0;
  for (const ShardRange& u : units) n += u.count / d + (r < u.count % d ? 1 : 0);
  return n;
}

using sgpt::testing::expect_clear_error;

// The whole buffer from a tensor that holds this rank's pieces packed (shard_params, or the f32
// master of the mixed recipe): one all_gather per unit, counted in the accounting.
inline Tensor gather_packed(const ZeroState& z, Communicator& c, const Tensor& packed, int64_t numel) {
  Tensor full = Tensor::empty({numel}, packed.dtype());
  int64_t at = 0;
  for (std::size_t u = 0; u < z.units.size(); ++u) {
    Tensor out = full.view(z.units[u].begin, {z.units[u].count});
    c.all_gather(out, packed.view(at, {z.pieces[u].count}));
    at += z.pieces[u].count;
  }
  return full;
}

// Every parameter of a ZeRO state (gathered: one all_gather per unit at stage 3), counted in the
// accounting, so call it outside a counted window.
inline Tensor gathered_params(ZeroState& z, Communicator& c, int64_t numel) {
  return z.stage < 3 ? z.full_params : gather_packed(z, c, z.shard_params, numel);
}

// Lesson 05's bf16 recipe on one device, written with the library (the reference of the mixed
// tests): a bf16 GPT is the working copy (its parameters and gradients), an f32 buffer the master
// weights, one AdamW with f32 moments over the master; the norm of the bf16 gradient; clipping as
// AdamW's grad_scale (16-bit gradients are not rescaled in place); after the update the working
// copy is the master rounded to bf16.
struct MixedOneDevice {
  GPT model;
  Tensor master;
  AdamW opt;
  MixedOneDevice(const GPTConfig& cfg, uint64_t seed, const AdamWConfig& ac)
      : model(cfg, seed, Device::CPU, DType::BF16),
        master(Tensor::empty({model.layout().numel()}, DType::F32, Device::CPU, MemCategory::OptimizerState)),
        opt(model.layout(), ac, DType::F32, Device::CPU) {
    init_parameters(master, model.layout(), seed);
  }
  // One step on (x, y) in micro-batches of `mbs` rows; returns {mean loss, norm before clipping}.
  std::pair<double, double> step(const Tensor& x, const Tensor& y, int64_t mbs, double lr, double clip) {
    const double loss = sgpt::testing::accumulate_gradients(model, x, y, mbs);
    const double g = grad_norm(model.grads());
    const double clip_scale = (clip <= 0 || g <= clip) ? 1.0 : clip / (g + 1e-6);
    opt.step(master, model.grads(), lr, clip_scale);
    model.params().copy_from(master.cast(DType::BF16));
    return {loss, g};
  }
};

// Trains `steps` steps of stage `stage` next to data parallelism on the same rows, from dirty
// gradients and a warmed-up optimizer, and checks losses, norms and parameters after every step.
inline void expect_matches_dp(Communicator& c, int stage, int steps, int64_t gbs, int64_t mbs_of_b_div, uint64_t seed,
                              const GPTConfig& cfg, const std::string& at) {
  const int p = c.size(), r = c.rank();
  const int64_t b = gbs / p;
  const int64_t mbs = b % mbs_of_b_div == 0 ? b / mbs_of_b_div : b;
  AdamWConfig ac;
  ac.weight_decay = 0.1;
  const double lr = 3e-3, clip = 0.05;  // clipping active: norms here are ~1
  UnitRunner runner(cfg, DType::F64);
  ZeroState z = make_zero_state(runner, c, stage, seed, ac, DType::F64);
  GPT ref(cfg, seed, Device::CPU, DType::F64);
  AdamW ref_opt(ref.layout(), ac, DType::F64, Device::CPU);
  dirty_optimizer(ref_opt, 0);
  dirty_zero(z);
  sgpt::testing::make_dirty(ref.grads(), 0.5, 7);
  for (int step = 0; step < steps; ++step) {
    auto [gx, gy] = global_batch(gbs, cfg.vocab_size, 40 + uint64_t(step));
    const Tensor x = rows_of(gx, r, p), y = rows_of(gy, r, p);
    const StepStats s = zero_step(z, runner, c, x, y, mbs, lr, clip);
    const auto [loss, norm] = data_parallel_step(ref, ref_opt, c, x, y, mbs, lr, clip);
    const std::string st = at + " stage " + std::to_string(stage) + " step " + std::to_string(step) + " micro-batch " +
                           std::to_string(mbs);
    EXPECT_NEAR(s.loss, loss, 1e-12 * loss) << st << " loss";
    EXPECT_NEAR(s.grad_norm, norm, 1e-11 * norm) << st << " gradient norm (over the whole gradient, all ranks)";
    const Tensor full = gathered_params(z, c, ref.layout().numel());
    EXPECT_LE(max_diff(full.to_vector(), ref.params().to_vector()), 1e-10) << st << " parameters vs data parallelism";
    if (stage < 3) {
      EXPECT_TRUE(identical_on_all_ranks(c, z.full_params)) << st << " replicas drifted apart";
    }
  }
}

// The learning rate and clipping limit of the mixed tests (clipping active: norms here are ~1).
constexpr double kMixedLr = 3e-3, kMixedClip = 0.05;

// The worst differences of one run against the single-device recipe (over all steps).
struct MixedDiff {
  double master = 0;   // f32 master weights, absolute
  double working = 0;  // bf16 working copy, absolute
  double working_excess = 0;  // bf16 working copy, beyond one bf16 ulp of the reference value
  double loss = 0;     // relative
  double norm = 0;     // relative
};

inline double ulp_bf16(double x) {  // the spacing of bf16 values at |x| (normal range)
  const double a = std::max(std::abs(x), 1e-30);
  return std::ldexp(1.0, std::ilogb(a) - 7);
}

// `steps` steps of `stage` in the mixed recipe next to lesson 05's recipe on one device, from the
// same dirty start; `k` micro-batches per rank (1 when it does not divide). Checks the invariants
// (working copy = rounding of the master; identical replicas) and returns the worst differences.
inline MixedDiff mixed_vs_one_device(Communicator& c, int stage, int steps, int64_t gbs, int64_t k, uint64_t seed,
                              const GPTConfig& cfg, const std::string& at) {
  const int p = c.size(), r = c.rank();
  const int64_t b = gbs / p, mbs = b % k == 0 ? b / k : b;
  AdamWConfig ac;
  ac.weight_decay = 0.1;
  UnitRunner runner(cfg, DType::BF16);
  ZeroState z = make_zero_state(runner, c, stage, seed, ac, DType::BF16);
  MixedOneDevice one(cfg, seed, ac);
  dirty_zero(z);
  dirty_optimizer(one.opt, 0);
  sgpt::testing::make_dirty(one.model.grads(), 0.5, 7);
  const int64_t n = one.model.layout().numel();
  MixedDiff worst;
  for (int step = 0; step < steps; ++step) {
    auto [gx, gy] = global_batch(gbs, cfg.vocab_size, 90 + uint64_t(step));
    const StepStats s = zero_step(z, runner, c, rows_of(gx, r, p), rows_of(gy, r, p), mbs, kMixedLr, kMixedClip);
    const auto [loss, norm] = one.step(gx, gy, mbs, kMixedLr, kMixedClip);
    const std::string st = at + " stage " + std::to_string(stage) + " step " + std::to_string(step) +
                           " micro-batch " + std::to_string(mbs);
    EXPECT_TRUE(z.master.defined() && z.master.dtype() == DType::F32) << st << ": the mixed state keeps an f32 master";
    if (!z.master.defined()) return MixedDiff{INFINITY, INFINITY, INFINITY, INFINITY, INFINITY};
    const Tensor master = gather_packed(z, c, z.master, n);
    const Tensor working = stage < 3 ? z.full_params : gather_packed(z, c, z.shard_params, n);
    EXPECT_EQ(working.dtype(), DType::BF16) << st << ": the working copy is bf16";
    const std::vector<double> zm = master.to_vector(), om = one.master.to_vector(), zw = working.to_vector(),
                              ow = one.model.params().to_vector(), rounded = master.cast(DType::BF16).to_vector();
    EXPECT_EQ(zw, rounded) << st << ": the working copy must be the master rounded to bf16";
    worst.master = std::max(worst.master, max_diff(zm, om));
    worst.working = std::max(worst.working, max_diff(zw, ow));
    for (size_t i = 0; i < zw.size() && i < ow.size(); ++i)
      worst.working_excess = std::max(worst.working_excess, std::abs(zw[i] - ow[i]) - ulp_bf16(ow[i]));
    worst.loss = std::max(worst.loss, std::abs(s.loss - loss) / loss);
    worst.norm = std::max(worst.norm, std::abs(s.grad_norm - norm) / norm);
    if (stage < 3) {
      EXPECT_TRUE(identical_on_all_ranks(c, z.full_params)) << st << " replicas drifted apart";
    }
  }
  return worst;
}

// The checks of the mixed tests (the tolerance is derived in test_zero_mixed.cpp's file comment):
// bit for bit when `exact` (d = 1 where the rounding is the single device's); else, after `steps`
// steps on d ranks, the master within 0.05·lr per step, the working copy within that beyond one
// bf16 ulp, the loss within 1e-3 and the norm within (d + 1)·2^-8, relative.
inline void expect_mixed_close(const MixedDiff& w, bool exact, int d, int steps, const std::string& at) {
  if (exact) {
    EXPECT_EQ(w.master, 0.0) << at << ": at d = 1 the master must equal lesson 05's bit for bit";
    EXPECT_EQ(w.working, 0.0) << at << ": the working copy too";
    EXPECT_LE(w.loss, 1e-15) << at;
    EXPECT_LE(w.norm, 1e-12) << at << " (only the order of the f64 sum of squares differs)";
    return;
  }
  EXPECT_LE(w.master, 0.05 * kMixedLr * steps) << at << ": master weights vs lesson 05's recipe";
  EXPECT_LE(w.working_excess, 0.05 * kMixedLr * steps) << at << ": working copy beyond one bf16 ulp";
  EXPECT_LE(w.loss, 1e-3) << at << " loss";
  EXPECT_LE(w.norm, (d + 1) * std::ldexp(1.0, -8)) << at << " gradient norm";
}

}  // namespace lesson11_test
