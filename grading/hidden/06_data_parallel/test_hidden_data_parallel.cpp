// Lesson 06 hidden tests: other sequence lengths, batch sizes and seeds, many epochs, f32, and five
// steps fed by the student's own load_shard.

#include <gtest/gtest.h>

#include "tests/test_util.hpp"

using namespace sgpt;
using namespace sgpt::lesson06;
using namespace lesson06_test;

TEST(HiddenLoadShard, OtherShapesManyEpochs) {
  // T = 5, 53 windows, global batch 24: 2 steps per epoch and 5 windows skipped each time.
  const TokenFile tokens = token_stream(53 * 5 + 4, 50, 21);
  on_groups([&](Communicator& c) {
    const int p = c.size(), r = c.rank();
    for (int64_t step : {0, 1, 2, 7, 10, 31}) {
      Tensor x, y;
      load_shard(tokens, step, 24, 5, 77, r, p, x, y);
      auto [gx, gy] = global_batch(tokens, step, 24, 5, 77);
      EXPECT_EQ(values(x), values(rows_of(gx, r, p))) << where(c) << " step " << step;
      EXPECT_EQ(values(y), values(rows_of(gy, r, p))) << where(c) << " step " << step;
    }
  });
}

TEST(HiddenAverageGradients, F32DirtyBuffer) {
  const GPTConfig cfg = gpt_config("nano");
  on_groups([&](Communicator& c) {
    GPT m(cfg, 4, Device::CPU, DType::F32);
    Tensor g = m.grads();
    dirty(g, 0.125 * (c.rank() + 1));  // rank r holds (r+1)/8 everywhere: the mean is (p+1)/16
    average_gradients(c, g);
    const double want = 0.125 * (c.size() + 1) / 2.0;
    const std::vector<double> v = values(g);
    double worst = 0;
    for (double x : v) worst = std::max(worst, std::abs(x - want));
    EXPECT_LE(worst, 1e-7) << where(c) << " expected the mean " << want << " everywhere";
    EXPECT_NEAR(global_mean_loss(c, 2.0 * (c.rank() + 1)), double(c.size() + 1), 1e-12) << where(c);
  });
}

TEST(HiddenTrainStep, FiveStepsOtherShapeFromShards) {
  const GPTConfig cfg = gpt_config("nano");
  const TokenFile tokens = token_stream(100 * 12 + 1, cfg.vocab_size, 22);
  AdamWConfig ac;
  ac.beta2 = 0.99;
  const double lr = 2e-3, clip = 0.02;
  on_groups([&](Communicator& c) {
    const int p = c.size(), r = c.rank();
    const int64_t gbs = 24, mbs = p == 3 ? 4 : 2;
    OneRankRun ref(cfg, 31, ac);
    GPT m(cfg, 31, Device::CPU, DType::F64);
    AdamW opt(m.layout(), ac, DType::F64, Device::CPU);
    dirty(m.grads(), 3.0);
    for (int64_t step = 0; step < 5; ++step) {
      auto [gx, gy] = global_batch(tokens, step, gbs, 12, 9);
      const auto [loss, norm] = ref.step(gx, gy, lr, clip);
      Tensor x, y;
      load_shard(tokens, step, gbs, 12, 9, r, p, x, y);
      const StepStats s = train_step(m, opt, c, x, y, mbs, lr, clip);
      EXPECT_NEAR(s.loss, loss, 1e-12 * loss) << where(c) << " step " << step;
      EXPECT_NEAR(s.grad_norm, norm, 1e-10 * norm) << where(c) << " step " << step;
      EXPECT_LE(max_diff(values(m.params()), values(ref.model.params())), 1e-10) << where(c) << " step " << step;
      EXPECT_TRUE(identical_on_all_ranks(c, m.params())) << where(c) << " step " << step;
    }
  });
}
