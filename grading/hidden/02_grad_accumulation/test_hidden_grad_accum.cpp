// Lesson 02 hidden tests: other shapes, seeds and data-parallel sizes.

#include <gtest/gtest.h>

#include <cmath>

#include "grad_accum.hpp"
#include "tests/test_util.hpp"

using namespace sgpt;
using namespace sgpt::lesson02;
using lesson02_test::current;
using lesson02_test::peak;
using lesson02_test::random_tokens;

namespace {
GPTConfig small() {
  GPTConfig c = gpt_config("nano");
  c.n_layer = 3;
  c.n_head = 2;
  c.n_embd = 16;
  return c;
}
}  // namespace

TEST(HiddenGradAccumSteps, DataParallelSizes) {
  EXPECT_EQ(grad_accum_steps(96, 3, 8), 4);
  EXPECT_EQ(grad_accum_steps(7, 7, 1), 1);
  for (auto [g, m, d] : {std::tuple<int64_t, int64_t, int64_t>{96, 5, 2}, {12, 4, 2}, {-8, 2, 1}, {8, 2, 0}}) {
    try {
      grad_accum_steps(g, m, d);
      ADD_FAILURE() << g << " " << m << " " << d << " should be an error";
    } catch (const NotImplemented& e) {
      ADD_FAILURE() << e.what();
    } catch (const Error&) {
    }
  }
}

TEST(HiddenAccumulate, OddShapesF64) {
  const GPTConfig cfg = small();
  for (auto [b, k, T] : {std::tuple<int64_t, int64_t, int64_t>{3, 5, 7}, {1, 6, 11}}) {
    Tensor x = random_tokens(b * k, T, cfg.vocab_size, 90 + k), y = random_tokens(b * k, T, cfg.vocab_size, 91 + k);
    GPT ref(cfg, 17, Device::CPU, DType::F64), m(cfg, 17, Device::CPU, DType::F64);
    const double rl = ref.forward(x, y);
    ref.backward();
    const double l = accumulate_gradients(m, x, y, b);
    EXPECT_NEAR(l, rl, 1e-12);
    const auto g = m.grads().to_vector(), r = ref.grads().to_vector();
    double worst = 0, scale = 0;
    for (size_t i = 0; i < g.size(); ++i) {
      worst = std::max(worst, std::abs(g[i] - r[i]));
      scale = std::max(scale, std::abs(r[i]));
    }
    EXPECT_LE(worst, 1e-12 * scale) << "b=" << b << " k=" << k;
  }
}

TEST(HiddenAccumulate, MemoryIndependentOfKOtherShape) {
  const GPTConfig cfg = small();
  auto peak_of = [&](int64_t b, int64_t k) {
    Tensor x = random_tokens(b * k, 24, cfg.vocab_size, 1), y = random_tokens(b * k, 24, cfg.vocab_size, 2);
    GPT m(cfg, 1);
    const int64_t base = current(MemCategory::Activations);
    MemoryTracker::instance().reset_peak();
    accumulate_gradients(m, x, y, b);
    return peak(MemCategory::Activations) - base;
  };
  EXPECT_EQ(peak_of(3, 1), peak_of(3, 5));
  EXPECT_LT(peak_of(3, 1), peak_of(15, 1));
}

TEST(HiddenTrainStep, FiveStepsNoClip) {
  const GPTConfig cfg = small();
  GPT mine(cfg, 5, Device::CPU, DType::F64), ref(cfg, 5, Device::CPU, DType::F64);
  AdamWConfig ac;
  ac.weight_decay = 0.2;
  AdamW opt(mine.layout(), ac, DType::F64, Device::CPU), ref_opt(ref.layout(), ac, DType::F64, Device::CPU);
  sgpt::testing::make_dirty(mine.grads(), 3.0, 7);  // a previous step's gradient: the step zeroes it
  for (int step = 0; step < 5; ++step) {
    Tensor x = random_tokens(6, 9, cfg.vocab_size, 60 + step), y = random_tokens(6, 9, cfg.vocab_size, 70 + step);
    train_step(mine, opt, x, y, 3, 1e-2, 0.0);
    ref.zero_grad();
    ref.forward(x, y);
    ref.backward();
    ref_opt.step(ref.params(), ref.grads(), 1e-2);
  }
  const auto a = mine.params().to_vector(), b = ref.params().to_vector();
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::abs(a[i] - b[i]));
  EXPECT_LT(worst, 1e-10);
}
