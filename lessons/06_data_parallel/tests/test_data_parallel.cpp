// Lesson 06 public tests, at 1, 2, 3 and 4 ranks (threads backend under -np 1, MPI processes under
// -np 2..4; see test_util.hpp), in f64:
//   - each rank's rows are exactly its part of the global batch the README defines (so the union
//     over ranks is the one-rank batch), across an epoch boundary;
//   - p ranks x b rows train like 1 rank x p*b rows: losses, averaged gradients, gradient norms and
//     parameters after several AdamW steps with clipping, from dirty gradients and optimizer state;
//   - parameters are bit-identical across ranks after every step;
//   - the accounting shows one all-reduce of the gradient buffer per optimizer step, whatever k is;
//   - an indivisible global batch or too little data is a clear error on every rank.
//
// Tolerances: the data-parallel run adds the same per-row terms as the one-rank run, in another
// order (per rank, then across ranks; per micro-batch with k > 1). In f64 that moves losses and
// gradients by a few ulps: |loss diff| <= 1e-12 * loss, |grad diff| <= 1e-12 * max|g|. After four
// AdamW steps parameters agree to 1e-10 (an update is lr * m / (sqrt(v) + eps): ulp-level changes in
// small gradients are amplified by at most about 1/eps relative to the gradient's size).

#include <gtest/gtest.h>

#include "test_util.hpp"

using namespace sgpt;
using namespace sgpt::lesson06;
using namespace lesson06_test;

namespace {
constexpr int64_t kT = 8;
constexpr uint64_t kDataSeed = 5;
}  // namespace

// ---- task 1: sharded data loading ----------------------------------------------------------------

TEST(LoadShard, EachRankReadsItsRowsOfTheGlobalBatch) {
  // 30 windows of 8 + 1 tokens, global batch 12: 2 steps per epoch, so steps 0..6 visit four epochs
  // (each in its own order) and skip 6 windows at the end of each.
  const TokenFile tokens = token_stream(30 * kT + 3, 256, 1);
  on_groups([&](Communicator& c) {
    const int p = c.size(), r = c.rank();
    const int64_t gbs = 12;
    Tensor x = Tensor::zeros({gbs / p, kT}, DType::I32), y = Tensor::zeros({gbs / p, kT}, DType::I32);
    for (int64_t step = 0; step < 7; ++step) {
      load_shard(tokens, step, gbs, kT, kDataSeed, r, p, x, y);
      auto [gx, gy] = global_batch(tokens, step, gbs, kT, kDataSeed);
      EXPECT_EQ(values(x), values(rows_of(gx, r, p))) << where(c) << " step " << step << ": inputs";
      EXPECT_EQ(values(y), values(rows_of(gy, r, p))) << where(c) << " step " << step << ": targets";
    }
    Tensor ux, uy;  // undefined: allocated by load_shard
    load_shard(tokens, 3, gbs, kT, kDataSeed, r, p, ux, uy);
    ASSERT_EQ(ux.shape(), (Shape{gbs / p, kT})) << where(c);
    EXPECT_EQ(values(ux), values(rows_of(global_batch(tokens, 3, gbs, kT, kDataSeed).first, r, p))) << where(c);
  });
}

TEST(LoadShard, IndivisibleOrTooSmallIsAClearErrorOnEveryRank) {
  const TokenFile tokens = token_stream(30 * kT + 3, 256, 2);
  on_groups([&](Communicator& c) {
    const int p = c.size(), r = c.rank();
    Tensor x, y;
    if (p > 1)  // 4p + 1 rows cannot be split over p ranks
      expect_clear_error([&] { load_shard(tokens, 0, 4 * p + 1, kT, kDataSeed, r, p, x, y); }, {4 * p + 1, p},
                         where(c) + " indivisible global batch:");
    // 30 windows cannot fill a global batch of 32 rows
    expect_clear_error([&] { load_shard(tokens, 0, 32, kT, kDataSeed, r, p, x, y); }, {32},
                       where(c) + " too little data:");
    c.barrier();  // every rank got here: nobody is left waiting
  });
}

// ---- task 2: the replicated start ----------------------------------------------------------------

TEST(Replicate, EveryRankEndsWithRankZerosParameters) {
  const GPTConfig cfg = gpt_config("nano");
  on_groups([&](Communicator& c) {
    GPT m(cfg, 100 + uint64_t(c.rank()), Device::CPU, DType::F64);  // a different seed on every rank
    replicate_parameters(c, m.params());
    GPT rank0(cfg, 100, Device::CPU, DType::F64);
    EXPECT_EQ(std::memcmp(m.params().raw(), rank0.params().raw(), m.params().nbytes()), 0)
        << where(c) << " parameters differ from rank 0's";
    EXPECT_TRUE(identical_on_all_ranks(c, m.params())) << where(c);
  });
}

// ---- task 3: averaging gradients and the loss ------------------------------------------------------

TEST(AverageGradients, EqualsTheGlobalBatchGradient) {
  const GPTConfig cfg = gpt_config("nano");
  const TokenFile tokens = token_stream(40 * kT + 1, cfg.vocab_size, 3);
  on_groups([&](Communicator& c) {
    const int p = c.size(), r = c.rank();
    auto [gx, gy] = global_batch(tokens, 0, 12, kT, kDataSeed);
    GPT ref(cfg, 7, Device::CPU, DType::F64);
    const double ref_loss = ref.forward(gx, gy);
    ref.backward();
    const std::vector<double> want = values(ref.grads());

    GPT m(cfg, 7, Device::CPU, DType::F64);
    const double local = m.forward(rows_of(gx, r, p), rows_of(gy, r, p));
    m.backward();
    c.reset_stats();
    average_gradients(c, m.grads());
    EXPECT_EQ(c.stats()[OpKind::AllReduce].calls, 1) << where(c);
    EXPECT_EQ(c.stats()[OpKind::AllReduce].bytes, int64_t(m.grads().nbytes())) << where(c);
    const std::vector<double> got = values(m.grads());
    EXPECT_LE(max_diff(got, want), 1e-12 * max_abs(want))
        << where(c) << " averaged gradient != the gradient of the global batch (max |g| yours " << max_abs(got)
        << ", expected " << max_abs(want) << ")";
    const double loss = global_mean_loss(c, local);
    EXPECT_NEAR(loss, ref_loss, 1e-12 * ref_loss) << where(c) << " the loss of the global batch";
    EXPECT_TRUE(identical_on_all_ranks(c, m.grads())) << where(c);
  });
}

// ---- task 4: the data-parallel step ----------------------------------------------------------------

TEST(TrainStep, MatchesOneRankWithAdamWAndClipping) {
  // 4 steps with AdamW and clipping (the clip bites: the norms are above 0.05), global batch 12,
  // micro-batches of 1 row (k = 12/p) and of all the rank's rows (k = 1), from dirty gradients
  // and a warmed-up optimizer.
  const GPTConfig cfg = gpt_config("nano");
  const TokenFile tokens = token_stream(40 * kT + 1, cfg.vocab_size, 4);
  AdamWConfig ac;
  ac.weight_decay = 0.1;
  const double lr = 3e-3, clip = 0.05;
  const int64_t gbs = 12;
  on_groups([&](Communicator& c) {
    const int p = c.size(), r = c.rank();
    for (int64_t mbs : {int64_t(1), gbs / p}) {
      SCOPED_TRACE("micro-batch " + std::to_string(mbs));
      OneRankRun ref(cfg, 11, ac);
      GPT m(cfg, 11, Device::CPU, DType::F64);
      AdamW opt(m.layout(), ac, DType::F64, Device::CPU);
      // Dirty state: one identical warm-up step on both, then garbage in the gradients.
      auto [wx, wy] = global_batch(tokens, 9, gbs, kT, kDataSeed);
      ref.step(wx, wy, lr, clip);
      m.zero_grad();
      m.forward(wx, wy);
      m.backward();
      clip_grad_norm(m.grads(), clip);
      opt.step(m.params(), m.grads(), lr);
      dirty(m.grads(), 0.5);
      for (int64_t step = 0; step < 4; ++step) {
        auto [gx, gy] = global_batch(tokens, step, gbs, kT, kDataSeed);
        const auto [ref_loss, ref_norm] = ref.step(gx, gy, lr, clip);
        Tensor x, y;
        load_shard(tokens, step, gbs, kT, kDataSeed, r, p, x, y);
        const StepStats s = train_step(m, opt, c, x, y, mbs, lr, clip);
        EXPECT_NEAR(s.loss, ref_loss, 1e-12 * ref_loss) << where(c) << " step " << step << ": loss";
        EXPECT_GT(ref_norm, clip) << "the test needs the clip to bite";
        EXPECT_NEAR(s.grad_norm, ref_norm, 1e-10 * ref_norm) << where(c) << " step " << step << ": gradient norm";
        EXPECT_LE(max_diff(values(m.params()), values(ref.model.params())), 1e-10)
            << where(c) << " step " << step << ": parameters differ from the one-rank run";
        EXPECT_TRUE(identical_on_all_ranks(c, m.params()))
            << where(c) << " step " << step << ": parameters are not bit-identical across ranks";
      }
    }
  });
}

TEST(TrainStep, OneAllReduceOfTheGradientsPerStepWhateverK) {
  const GPTConfig cfg = gpt_config("nano");
  const TokenFile tokens = token_stream(40 * kT + 1, cfg.vocab_size, 6);
  const int64_t gbs = 12;
  on_groups([&](Communicator& c) {
    const int p = c.size(), r = c.rank();
    GPT m(cfg, 3, Device::CPU, DType::F64);
    AdamW opt(m.layout(), AdamWConfig{}, DType::F64, Device::CPU);
    const int64_t G = int64_t(m.grads().nbytes());
    for (int64_t mbs : {gbs / p, int64_t(1), int64_t(gbs % (2 * p) == 0 ? 2 : 1)}) {
      const int64_t k = gbs / p / mbs;
      SCOPED_TRACE("k = " + std::to_string(k));
      TraceRecorder& rec = TraceRecorder::current();
      rec.set_enabled(true);
      rec.clear();
      c.reset_stats();
      const int steps = 3;
      for (int step = 0; step < steps; ++step) {
        Tensor x, y;
        load_shard(tokens, step, gbs, kT, kDataSeed, r, p, x, y);
        train_step(m, opt, c, x, y, mbs, 1e-3, 1.0);
      }
      const CommStats& st = c.stats();
      EXPECT_EQ(st[OpKind::AllReduce].calls, 2 * steps) << where(c) << " expected 2 all-reduces per step "
                                                        << "(gradients, loss), whatever the number of micro-batches";
      EXPECT_EQ(st[OpKind::AllReduce].bytes, steps * (G + 8)) << where(c) << " bytes all-reduced";
      EXPECT_EQ(st.total().calls, st[OpKind::AllReduce].calls) << where(c) << " other collectives: " << st.report();
      // From the trace: the gradient all-reduce comes after the step's last backward.
      const std::vector<TraceEvent> ev = rec.events();
      rec.set_enabled(false);
      int grad_reduces = 0, backwards = 0;
      for (const TraceEvent& e : ev) {
        if (e.name == "backward_embed") ++backwards;
        if ((e.name == "all_reduce" || e.name == "all_reduce_async") && e.arg_int("bytes") == G) {
          ++grad_reduces;
          EXPECT_EQ(backwards, grad_reduces * k) << where(c) << " the gradients were reduced before the last micro-batch";
        }
      }
      EXPECT_EQ(grad_reduces, steps) << where(c);
    }
  });
}

TEST(TrainStep, IndivisibleMicroBatchIsAClearErrorOnEveryRank) {
  const GPTConfig cfg = gpt_config("nano");
  const TokenFile tokens = token_stream(40 * kT + 1, cfg.vocab_size, 7);
  on_groups([&](Communicator& c) {
    const int p = c.size(), r = c.rank();
    GPT m(cfg, 3, Device::CPU, DType::F64);
    AdamW opt(m.layout(), AdamWConfig{}, DType::F64, Device::CPU);
    Tensor x, y;
    load_shard(tokens, 0, 3 * p, kT, kDataSeed, r, p, x, y);  // 3 rows per rank
    c.reset_stats();
    expect_clear_error([&] { train_step(m, opt, c, x, y, 2, 1e-3, 1.0); }, {2, 3 * p}, where(c));
    EXPECT_EQ(c.stats().total().calls, 0) << where(c) << " check the sizes before communicating";
    c.barrier();
  });
}
