#pragma once
// Lesson 12's test helpers: the tiny f64 model, the grids each world size runs, and one 3D run
// from a dirty state next to the single-device run (the pipeline lessons' Reference).

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "comm/testing/mpi_test.hpp"
#include "core/memory.hpp"
#include "grid.hpp"
#include "pipeline_gpipe.hpp"
#include "parallel/pipeline_testing.hpp"
#include "parallel3d.hpp"
#include "planner.hpp"

namespace lesson12_test {

using namespace sgpt;
using namespace sgpt::lesson12;
using namespace sgpt::testing;

// 5 blocks (stages of 2 and 1 block: uneven splits), 8 heads of 2 channels (tp = 1, 2, 4, 8 divide the heads and 4C), T = 8, V = 19 padded
// to 24, untied.
inline GPTConfig config() {
  GPTConfig c;
  c.name = "3d-test";
  c.n_layer = 5;
  c.n_head = 8;
  c.n_embd = 16;
  c.max_seq_len = 8;
  c.vocab_size = 19;
  c.padded_vocab_size = 24;
  c.tied_embeddings = false;
  return c;
}

// ZeRO-1's model (task 4): 6 heads of 3 channels (tp = 1, 2, 3, 6), so that the stage buffers have
// odd sizes and D = 2 or 4 replicas do not split them evenly (shard_range's first ranks get one
// element more).
inline GPTConfig zero_config() {
  GPTConfig c = config();
  c.name = "3d-zero-test";
  c.n_head = 6;
  c.n_embd = 18;
  return c;
}

// The grids ZeRO-1's tests run (task 4), by world size: every one has data parallelism, and with
// zero_config() each has a stage that D does not divide.
inline std::vector<GridShape> zero_grids_of(int n) {
  if (n == 8) return {{2, 2, 2}, {4, 2, 1}, {4, 1, 2}};
  if (n == 4) return {{4, 1, 1}, {2, 1, 2}, {2, 2, 1}};
  if (n == 2) return {{2, 1, 1}};
  return {{1, 1, 1}};
}

// The grids of up to 8 ranks the tests run, by world size.
inline std::vector<GridShape> grids_of(int n) {
  if (n == 8) return {{2, 2, 2}, {1, 2, 4}, {4, 2, 1}, {2, 1, 4}, {1, 4, 2}};
  if (n == 4) return {{2, 2, 1}, {1, 2, 2}, {2, 1, 2}, {1, 1, 4}};
  if (n == 2) return {{2, 1, 1}, {1, 2, 1}, {1, 1, 2}};
  return {{1, 1, 1}};
}

// Runs fn on n ranks: thread ranks when the test runs as one process, else the MPI world (only
// when it has n ranks). Sends are synchronous, as on NCCL.
inline void on_ranks(int n, const std::function<void(Communicator&)>& fn, double seconds = 60) {
  if (world().size() == 1)
    on_threads(n, fn, seconds);
  else if (world().size() == n)
    on_world(fn, seconds);
}

// Dirty values for a buffer: a pure function of (seed, stream, index), so every rank can slice
// the same full buffer.
inline Tensor dirty(int64_t n, uint64_t seed, const std::string& stream, double scale, bool positive = false) {
  std::vector<double> v(static_cast<size_t>(n));
  const uint64_t key = rng::stream_key(seed, stream);
  for (int64_t i = 0; i < n; ++i) {
    const double x = scale * rng::normal(key, uint64_t(i));
    v[i] = positive ? x * x : x;
  }
  return Tensor::from(v, {n});
}

// A single-device run and a 3D run of `steps` steps on the same batches, from the same dirty
// parameters, gradients and AdamW moments; with zero1, each stage keeps ZeRO-1's optimizer shard
// (task 4).
struct Run3D {
  GPTConfig cfg = config();
  int64_t B = 8, T = 8, mb = 1;
  int steps = 3;
  uint64_t seed = 7;
  double lr = 1e-2;
  bool zero1 = false;
  std::vector<double> ref_losses;  // single device, per step
  Tensor ref_params, ref_m, ref_v; // single device, after the last step

  // The single-device run (the same on every rank; tiny).
  void run_reference() {
    Reference ref(cfg, seed);
    const int64_t n = ref.model.layout().numel();
    axpy_(ref.model.params(), 1.0, dirty(n, seed, "params", 0.05));
    ref.opt.m().copy_from(dirty(n, seed, "m", 0.01));
    ref.opt.v().copy_from(dirty(n, seed, "v", 0.03, true));
    ref_losses.clear();
    for (int s = 0; s < steps; ++s) {
      axpy_(ref.model.grads(), 1.0, dirty(n, seed + s, "grads", 1.0));  // Reference::step zeroes them
      ref_losses.push_back(ref.step(pipeline_tokens(cfg, B, seed + s), pipeline_targets(cfg, B, seed + s), lr));
    }
    ref_params = Tensor::empty({n}, DType::F64);  // not Parameters: the tracker tests count those
    ref_params.copy_from(ref.model.params());
    ref_m = Tensor::empty({n}, DType::F64);
    ref_m.copy_from(ref.opt.m());
    ref_v = Tensor::empty({n}, DType::F64);
    ref_v.copy_from(ref.opt.v());
  }

  // This rank's stage: plain, or with ZeRO-1's optimizer shard.
  TPStage make_stage(Grid& grid) const {
    std::optional<ShardRange> shard;
    if (zero1) shard = zero1_shard(grid, cfg);
    return TPStage(cfg, grid.shape.pp, grid.coord.pp, *grid.tp, seed, DType::F64, adamw(), shard);
  }

  // Loads the dirty start into a stage (params, moments) from the full buffers.
  void load_dirty(TPStage& st) const {
    GPT full(cfg, seed, Device::CPU, DType::F64);
    const int64_t n = full.layout().numel();
    axpy_(full.params(), 1.0, dirty(n, seed, "params", 0.05));
    st.load_from_full(st.params(), full.params());
    st.load_moments_from_full(dirty(n, seed, "m", 0.01), dirty(n, seed, "v", 0.03, true));
  }

  // max |a - b| / (1 + |b|) between a stage's tensor (a slice of its buffer starting at `begin`)
  // and the stage's slice of a single-device buffer.
  static double worst_rel(TPStage& st, const Tensor& a, const Tensor& full, int64_t begin) {
    Tensor want = Tensor::zeros({st.params().numel()}, DType::F64);
    st.load_from_full(want, full);
    std::vector<double> x = a.to_vector(), y = want.to_vector();
    double worst = 0;
    for (size_t i = 0; i < x.size(); ++i)
      worst = std::max(worst, std::abs(x[i] - y[size_t(begin) + i]) / (1 + std::abs(y[size_t(begin) + i])));
    return worst;
  }

  // The 3D run on this rank of `world`: checks each step's loss and the final shard against the
  // single-device run; `after_step` sees the grid and the stage after each step.
  void run_3d(Communicator& world, const GridShape& g,
              const std::function<void(Grid&, TPStage&, int)>& after_step = nullptr) const {
    Grid grid = make_grid(world, g);
    TPStage st = make_stage(grid);
    load_dirty(st);
    for (int s = 0; s < steps; ++s) {
      st.grads().copy_from(dirty(st.grads().numel(), seed + s + 100, "stage-grads", 1.0));  // must be zeroed
      const double loss =
          train_step_3d(grid, st, pipeline_tokens(cfg, B, seed + s), pipeline_targets(cfg, B, seed + s), mb, lr);
      EXPECT_NEAR(loss, ref_losses[s], 1e-10) << "grid " << g.str() << " rank " << world.rank() << " step " << s;
      if (after_step) after_step(grid, st, s);
    }
    const std::string at = "grid " + g.str() + (zero1 ? " ZeRO-1" : "") + " rank " + std::to_string(world.rank()) +
                           " (dp " + std::to_string(grid.coord.dp) + ", pp " + std::to_string(grid.coord.pp) +
                           ", tp " + std::to_string(grid.coord.tp) + ")";
    EXPECT_LT(worst_rel(st, st.params(), ref_params, 0), 1e-10)
        << at << ": parameters after " << steps << " steps differ from the single device's";
    // The moments this rank keeps: its optimizer shard of the single device's.
    const int64_t b = st.optimizer_shard().begin;
    EXPECT_LT(worst_rel(st, st.adam_m(), ref_m, b), 1e-10) << at << ": AdamW's m after " << steps << " steps";
    EXPECT_LT(worst_rel(st, st.adam_v(), ref_v, b), 1e-10) << at << ": AdamW's v after " << steps << " steps";
  }
};

// A ZeRO-1 run (task 4) of zero_config()'s model.
inline Run3D zero1_run(uint64_t seed = 7, int steps = 3) {
  Run3D run;
  run.cfg = zero_config();
  run.zero1 = true;
  run.seed = seed;
  run.steps = steps;
  return run;
}

// The planner's Job for the test model at the test batch.
inline Job test_job(const Run3D& r) {
  Job j;
  j.cfg = r.cfg;
  j.seq_len = r.T;
  j.global_batch = r.B;
  j.precision = Precision::f64();
  return j;
}

}  // namespace lesson12_test
