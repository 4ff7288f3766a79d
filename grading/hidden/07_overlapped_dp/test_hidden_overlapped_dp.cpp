// Lesson 07 hidden tests: an untied output layer (the lm_head is the last parameter, final after the
// head's backward) with odd caps, and five steps of three micro-batches with another seed.

#include <gtest/gtest.h>

#include "tests/test_util.hpp"

using namespace sgpt;
using namespace sgpt::lesson07;
using namespace lesson07_test;

namespace {
GPTConfig untied_nano() {
  GPTConfig cfg = gpt_config("nano");
  cfg.tied_embeddings = false;
  return cfg;
}
}  // namespace

TEST(HiddenMakeBuckets, UntiedHeadAndOddCaps) {
  const ParameterLayout layout(untied_nano());
  for (int64_t es : {int64_t(4), int64_t(8)})
    for (int64_t cap : {int64_t(9), int64_t(1234), int64_t(32768), int64_t(77777), int64_t(200000)}) {
      const std::vector<Bucket> got = make_buckets(layout, cap, es);
      const auto want = expected_buckets(layout, cap, es);
      ASSERT_EQ(got.size(), want.size()) << "cap " << cap << " element " << es;
      for (size_t i = 0; i < got.size(); ++i) {
        EXPECT_EQ(got[i].begin, want[i].first) << "cap " << cap << " bucket " << i;
        EXPECT_EQ(got[i].count, want[i].second) << "cap " << cap << " bucket " << i;
      }
    }
}

TEST(HiddenTrainStep, FiveStepsThreeMicroBatchesOtherSeed) {
  const GPTConfig cfg = untied_nano();
  on_groups([&](Communicator& c) {
    const int p = c.size(), r = c.rank();
    GPT m(cfg, 41, Device::CPU, DType::F64), naive(cfg, 41, Device::CPU, DType::F64);
    AdamW opt(m.layout(), AdamWConfig{}, DType::F64, Device::CPU), nopt(m.layout(), AdamWConfig{}, DType::F64, Device::CPU);
    OverlappedReducer red(c, m.grads(), make_buckets(m.layout(), 5000, 8));
    dirty(m.grads(), 1.5);
    TraceRecorder& rec = TraceRecorder::current();
    for (int step = 0; step < 5; ++step) {
      auto [gx, gy] = global_batch(6 * p, 6, cfg.vocab_size, 60 + uint64_t(step));
      const Tensor x = rows_of(gx, r, p), y = rows_of(gy, r, p);
      rec.set_enabled(true);
      rec.clear();
      const StepStats s = train_step(m, opt, red, c, x, y, 2, 2e-3, 0.1);
      expect_overlapped_schedule(rec.events(), red.buckets(), m, 3, 8, where(c) + " step " + std::to_string(step));
      rec.set_enabled(false);
      const auto [loss, norm] = data_parallel_step(naive, nopt, c, x, y, 2, 2e-3, 0.1);
      EXPECT_NEAR(s.loss, loss, 1e-13 * loss) << where(c) << " step " << step;
      if (same_order(c))
        EXPECT_TRUE(bit_equal(m.params(), naive.params())) << where(c) << " step " << step;
      else
        EXPECT_LE(max_diff(m.params().to_vector(), naive.params().to_vector()), 1e-12) << where(c) << " step " << step;
      EXPECT_TRUE(identical_on_all_ranks(c, m.params())) << where(c) << " step " << step;
    }
  });
}
