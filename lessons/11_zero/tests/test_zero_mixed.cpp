// Lesson 11 in mixed precision (lesson 05's recipe): the same stage functions, run with a bf16
// working model (parameters and gradients in bf16) and, for this rank's pieces only, f32 master
// weights and f32 AdamW moments. At 1, 2, 3 and 4 ranks, on the tiny untied model (Ψ = 6902,
// divided by neither 3 nor 4), from dirty gradients and a warmed-up optimizer, three steps with
// clipping active:
//   - every stage follows lesson 05's single-device bf16 recipe (written with the library in
//     test_util.hpp): bit for bit at d = 1 (see below for the one exception), within the bf16
//     tolerance derived below at d > 1; the working copy is always exactly the rounding of the
//     master;
//   - a mixed checkpoint holds the f32 master and resumes at another d and stage;
//   - the memory tracker's peak per category, over the steps, is exactly this rank's shard:
//     parameters 2Ψ (stage 3: 2 x its pieces + one gathered unit), gradients 2Ψ (stages 2, 3:
//     2 x its pieces + one unit), optimizer state 12 x its pieces (master + m + v): the paper's
//     2 + 2 + 12 bytes, measured; and category Other, where the library's f32 copies of 16-bit
//     operands go, peaks at the largest copy one op makes (about 4Ψ/d; see expect_mixed_peaks).
//
// Tolerance at d > 1. The single device sums the whole batch's gradient in f32 inside each kernel
// and rounds it to bf16 once. ZeRO rounds each rank's partial gradient to bf16, then the bf16
// reduce-scatter rounds once per combine of two ranks (communicator.hpp): up to d more roundings,
// each at most 2^-8 relative (bf16 keeps 8 significant bits). A relative gradient error of
// e ~ d·2^-8 changes AdamW's update by at most about lr·e·(1 − β1)·|g| / ((1 − β1^t)·sqrt(v̂))
// through m (and less through v), which with the warmed-up moments here is far below lr·e; over
// three steps the master weights may differ by 3·lr·e ≈ 3 · 3e-3 · 4·2^-8 ≈ 1.4e-4 at d = 4. We
// allow 0.25·lr per step (2.25e-3 after three steps: comfortably above that, yet below one step
// of a wrong update, which moves the master by about lr) on the master, plus one bf16 ulp of the
// value on the working copy (where a master that moved across a rounding boundary rounds the other
// way); the mean loss, computed from the same bf16 working copy as the single device up to those
// differences, within 1e-3 relative; the norm within d·2^-8 relative.
//
// The exception at d = 1: with several micro-batches, stages 2 and 3 round each micro-batch's unit
// gradient to bf16 before adding it to the packed shard (two roundings per micro-batch), where the
// single device adds it to its bf16 gradient in one rounding; those runs get the d > 1 tolerance.

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <unistd.h>

#include "test_util.hpp"

using namespace sgpt;
using namespace sgpt::lesson11;
using namespace lesson11_test;

namespace {

// Runs stage `stage` with one and with three micro-batches per rank and checks the differences:
// exact where the rounding is the single device's, else the tolerance of the file comment.
void expect_follows_lesson05(Communicator& c, int stage) {
  const int d = c.size();
  for (int64_t k : {1, 3}) {
    const std::string at = where(c) + " k=" + std::to_string(k);
    const MixedDiff w = mixed_vs_one_device(c, stage, 3, 12, k, 21 + uint64_t(k), tiny_config(), at);
    const int64_t k_run = (12 / d) % k == 0 ? k : 1;  // micro-batches per rank actually run
    expect_mixed_close(w, d == 1 && (stage == 1 || k_run == 1), d, 3, at + " stage " + std::to_string(stage));
    if (c.rank() == 0)
      std::printf("[ mixed    ] %s stage %d: worst master diff %.3g (%.3g lr), working %.3g (%.3g past 1 ulp), "
                  "loss %.3g, norm %.3g (relative)\n",
                  at.c_str(), stage, w.master, w.master / kMixedLr, w.working, w.working_excess, w.loss, w.norm);
  }
}

// The peak of category Other while `runner` runs one forward and backward of (x, y) in bf16, over
// a parameter and a gradient buffer of its own: the f32 copies the CPU kernels make of their
// 16-bit operands (kernels/half_stage.hpp). They depend on the micro-batch and on one unit's
// matrices, not on how the model state is sharded, and a ZeRO step makes the same ones.
int64_t runner_staging(UnitRunner& runner, const Tensor& x, const Tensor& y) {
  using sgpt::testing::current;
  using sgpt::testing::peak;
  const int64_t n = runner.layout().numel();
  Tensor params = Tensor::empty({n}, DType::BF16, Device::CPU, MemCategory::Parameters);
  init_parameters(params, runner.layout(), 4);
  Tensor grads = Tensor::zeros({n}, DType::BF16, Device::CPU, MemCategory::Gradients);
  runner.start(x, y);  // the activations, outside the window
  const int64_t before = current(MemCategory::Other);
  MemoryTracker::instance().reset_peak();
  for (int u = 0; u < runner.num_units(); ++u) {
    const auto [b, e] = runner.unit_range(u);
    runner.forward(u, params.view(b, {e - b}));
  }
  for (int u = runner.num_units() - 1; u >= 0; --u) {
    const auto [b, e] = runner.unit_range(u);
    Tensor g = grads.view(b, {e - b});
    runner.backward(u, params.view(b, {e - b}), g, 1.0);
  }
  return peak(MemCategory::Other) - before;
}

// Per category, the tracker's bytes for this rank's mixed state: after make_zero_state and at the
// peak over two steps (which start from dirty buffers; micro-batches of one row), exactly this
// rank's pieces in the recipe's bytes, and the formula within 1 %. And category Other, where the library puts the f32 copies of
// 16-bit operands (kernels/half_stage.hpp: one per 16-bit operand of an op, freed when the op
// returns): its peak over the steps is at most the largest staging one op makes, which is
//   - the runner's, measured by runner_staging on the same micro-batch, or
//   - 4 x this rank's owned elements: one f32 copy of its whole bf16 shard (the norm's sum of
//     squares, AdamW reading a bf16 gradient piece, the master rounded into the working piece; at
//     stage 1 the shard is one piece), or
//   - at stages 2 and 3, 8 x its largest piece: an op on two bf16 pieces (a reduced unit shard
//     added into the packed gradient),
// plus 64 bytes for the f64 scalars the loss and norm all-reduces carry. With one-row micro-batches
// the runner's term is small, so the bound is about 4Ψ/d: a solution that keeps (or makes) an f32
// copy of the whole buffer, 4Ψ, fails at d > 1, and at d = 1 too when the copy is made by an op.
void expect_mixed_peaks(Communicator& c, int stage) {
  const GPTConfig cfg = tiny_config(3);
  const int d = c.size(), r = c.rank();
  UnitRunner runner(cfg, DType::BF16);
  const int64_t psi = runner.layout().numel(), big = runner.largest_unit();
  const MemCategory cats[3] = {MemCategory::Parameters, MemCategory::Gradients, MemCategory::OptimizerState};
  using sgpt::testing::current;
  using sgpt::testing::peak;
  auto [gx, gy] = global_batch(12, cfg.vocab_size, 5);
  const Tensor x = rows_of(gx, r, d), y = rows_of(gy, r, d);
  const int64_t staged_by_runner = runner_staging(runner, x.slice(0, 1), y.slice(0, 1));
  const int64_t before[3] = {current(cats[0]), current(cats[1]), current(cats[2])};
  const int64_t other_before = current(MemCategory::Other);
  const std::string at = where(c) + " stage " + std::to_string(stage) + " (mixed)";
  AdamWConfig ac;
  ZeroState z = make_zero_state(runner, c, stage, 4, ac, DType::BF16);
  const int64_t owned = owned_elements(stage_units(runner, stage), d, r);
  const int64_t want[3] = {stage == 3 ? 2 * owned + 2 * big : 2 * psi, stage >= 2 ? 2 * owned + 2 * big : 2 * psi,
                           12 * owned};
  const char* what[3] = {"bf16 parameters", "bf16 gradients", "f32 master + m + v of this rank's pieces"};
  const StateBytes f = predicted_bytes(stage, Recipe::Mixed, double(psi), d, stage >= 2 ? big : 0);
  const double formula[3] = {f.params, f.grads, f.optimizer};
  for (int i = 0; i < 3; ++i)
    EXPECT_EQ(current(cats[i]) - before[i], want[i]) << at << " " << category_name(cats[i]) << " after make_zero_state: "
                                                     << what[i] << " (" << owned << " elements owned)";
  dirty_zero(z);
  MemoryTracker::instance().reset_peak();
  for (int step = 0; step < 2; ++step) zero_step(z, runner, c, x, y, 1, 1e-3, 0.05);  // micro-batches of one row
  for (int i = 0; i < 3; ++i) {
    const int64_t got = peak(cats[i]) - before[i];
    EXPECT_EQ(got, want[i]) << at << " " << category_name(cats[i]) << " peak over two steps: " << what[i];
    EXPECT_NEAR(double(got), formula[i], 0.01 * formula[i]) << at << " " << category_name(cats[i]) << " vs the formula";
    if (r == 0)
      std::printf("[ mixed    ] %s %-16s peak %7lld B, this rank's shard %7lld B, formula %9.1f B\n", at.c_str(),
                  category_name(cats[i]), (long long)got, (long long)want[i], formula[i]);
  }
  int64_t largest_piece = 0;
  for (const ShardRange& p : owned_pieces(stage_units(runner, stage), d, r)) largest_piece = std::max(largest_piece, p.count);
  const int64_t staging = std::max({staged_by_runner, 4 * owned, stage >= 2 ? 8 * largest_piece : 0}) + 64;
  const int64_t other = peak(MemCategory::Other) - other_before;
  EXPECT_LE(other, staging) << at << " Other peak over two steps: more than the library's f32 copies of one op's "
                            << "16-bit operands (runner " << staged_by_runner << " B, 4 x " << owned << " owned"
                            << (stage >= 2 ? ", 8 x " + std::to_string(largest_piece) + " largest piece" : "")
                            << "); keep no whole-buffer f32 copy";
  if (r == 0)
    std::printf("[ mixed    ] %s %-16s peak %7lld B, bound %7lld B (runner %lld B, 4Ψ/d = %.0f B)\n", at.c_str(),
                category_name(MemCategory::Other), (long long)other, (long long)staging, (long long)staged_by_runner,
                4.0 * double(psi) / d);
}

}  // namespace

// ---- task 3: the mixed state and stage 1 ---------------------------------------------------------

TEST(ZeroMixed, Stage1FollowsLesson05Recipe) {
  on_groups([](Communicator& c) { expect_follows_lesson05(c, 1); });
}

TEST(ZeroMixedMemory, Stage1PeaksAreThisRanksShard) {
  on_processes([](Communicator& c) { expect_mixed_peaks(c, 1); });
}

// ---- task 4 ------------------------------------------------------------------------------------------

TEST(ZeroMixed, Stage2FollowsLesson05Recipe) {
  on_groups([](Communicator& c) { expect_follows_lesson05(c, 2); });
}

TEST(ZeroMixedMemory, Stage2PeaksAreThisRanksShard) {
  on_processes([](Communicator& c) { expect_mixed_peaks(c, 2); });
}

// ---- task 5 ------------------------------------------------------------------------------------------

TEST(ZeroMixed, Stage3FollowsLesson05Recipe) {
  on_groups([](Communicator& c) { expect_follows_lesson05(c, 3); });
}

TEST(ZeroMixedMemory, Stage3PeaksAreThisRanksShard) {
  on_processes([](Communicator& c) { expect_mixed_peaks(c, 3); });
}

// ---- task 6: the mixed state's checkpoint ------------------------------------------------------------

// A mixed run's checkpoint holds the f32 master (what lesson 05's trainer saves) and the f32 moments;
// resumed at another d and stage it restores the master pieces exactly, the working copy as their
// rounding, and trains on like lesson 05's recipe resumed from the same file.
TEST(ZeroMixedCheckpoint, SavesTheMasterAndResumesAtAnotherWorldSize) {
  on_groups([](Communicator& c) {
    const GPTConfig cfg = tiny_config();
    const int d = c.size();
    AdamWConfig ac;
    for (int stage = 1; stage <= 3; ++stage) {
      const std::string at = where(c) + " stage " + std::to_string(stage) + " (mixed)";
      Tensor pid = Tensor::from(std::vector<int32_t>{int32_t(::getpid())}, {1});
      c.broadcast(pid, 0);
      const std::string path = (std::filesystem::temp_directory_path() /
                                ("sgpt_l11_mixed_" + std::to_string(pid.to_vector()[0]) + "_" + std::to_string(d) + "_" +
                                 std::to_string(stage) + ".safetensors")).string();
      {
        UnitRunner runner(cfg, DType::BF16);
        ZeroState z = make_zero_state(runner, c, stage, 13, ac, DType::BF16);
        dirty_zero(z);
        for (int step = 0; step < 2; ++step) {
          auto [gx, gy] = global_batch(12, cfg.vocab_size, 60 + uint64_t(step));
          zero_step(z, runner, c, rows_of(gx, c.rank(), d), rows_of(gy, c.rank(), d), 12 / d, kMixedLr, kMixedClip);
        }
        ASSERT_TRUE(z.master.defined()) << at;
        const Tensor master = gather_packed(z, c, z.master, runner.layout().numel());
        TrainState st;
        st.step = 2;
        st.seed = 13;
        save_zero_checkpoint(path, z, runner, c, st);
        if (c.rank() == 0) {
          GPT file_model(cfg, 0);
          AdamW file_opt(file_model.layout(), ac, DType::F32, Device::CPU);
          load_checkpoint(path, file_model, file_opt);
          EXPECT_EQ(file_model.params().to_vector(), master.to_vector()) << at << ": the file holds the f32 master";
          EXPECT_EQ(file_opt.t(), 5) << at << ": the warmed-up step 3, plus two";
        }
      }
      const int d2 = d > 1 ? d - 1 : 1, stage2 = stage % 3 + 1;
      auto sub = c.split(c.rank() < d2 ? 0 : -1, c.rank(), "resume");
      if (sub) {
        UnitRunner runner(cfg, DType::BF16);
        ZeroState z = make_zero_state(runner, *sub, stage2, 99, ac, DType::BF16);  // another seed: the file wins
        dirty_zero(z);
        EXPECT_EQ(load_zero_checkpoint(path, z, runner).step, 2) << at;
        MixedOneDevice one(cfg, 0, ac);
        GPT holder(cfg, 0);
        load_checkpoint(path, holder, one.opt);
        one.master.copy_from(holder.params());
        one.model.params().copy_from(one.master.cast(DType::BF16));
        const int64_t n = runner.layout().numel();
        EXPECT_EQ(gather_packed(z, *sub, z.master, n).to_vector(), one.master.to_vector()) << at << " resumed master";
        const Tensor working = stage2 < 3 ? z.full_params : gather_packed(z, *sub, z.shard_params, n);
        EXPECT_EQ(working.to_vector(), one.model.params().to_vector()) << at << " resumed working copy = its rounding";
        auto [gx, gy] = global_batch(12, cfg.vocab_size, 62);
        zero_step(z, runner, *sub, rows_of(gx, sub->rank(), d2), rows_of(gy, sub->rank(), d2), 12 / d2, kMixedLr, kMixedClip);
        one.step(gx, gy, 12 / d2, kMixedLr, kMixedClip);
        const double diff = max_diff(gather_packed(z, *sub, z.master, n).to_vector(), one.master.to_vector());
        if (d2 == 1) {
          EXPECT_EQ(diff, 0.0) << at << " resumed at d=1 stage " << stage2 << ": one step, exactly lesson 05's";
        } else {
          EXPECT_LE(diff, 0.05 * kMixedLr) << at << " resumed at d=" << d2 << " stage " << stage2;
        }
      }
      c.barrier();
      if (c.rank() == 0) std::remove(path.c_str());
    }
  });
}
