// Lesson 01 hidden tests: the same tasks on unusual configurations, other hyper-parameters and
// seeds. The expected values come from formulas written out here and from the real model.

#include <gtest/gtest.h>

#include <cmath>

#include "optim/optim.hpp"
#include "tests/test_util.hpp"
#include "training_step.hpp"

using namespace sgpt;
using namespace sgpt::lesson01;
using lesson01_test::current;
using lesson01_test::make_dirty;
using lesson01_test::peak;
using lesson01_test::random_tokens;

namespace {
GPTConfig odd_config(bool tied) {
  GPTConfig c;
  c.name = "odd";
  c.n_layer = 3;
  c.n_head = 3;
  c.n_embd = 24;
  c.max_seq_len = 17;
  c.vocab_size = 50;
  c.padded_vocab_size = 64;
  c.tied_embeddings = tied;
  return c;
}
}  // namespace

TEST(HiddenParameterCount, UnusualConfigs) {
  for (bool tied : {true, false}) {
    const GPTConfig cfg = odd_config(tied);
    const ParameterCount n = count_parameters(cfg);
    EXPECT_EQ(n.total, ParameterLayout(cfg).numel());
    // by hand: C = 24: block 12*576 + 13*24 = 7224; wte 64*24, wpe 17*24
    EXPECT_EQ(n.per_block, 7224);
    EXPECT_EQ(n.embeddings, 64 * 24 + 17 * 24);
    EXPECT_EQ(n.total, 64 * 24 + 17 * 24 + 3 * 7224 + 48 + (tied ? 0 : 64 * 24));
  }
  EXPECT_EQ(count_parameters(gpt_config("d48")).total, ParameterLayout(gpt_config("d48")).numel());
}

TEST(HiddenFlops, UnusualConfigAndMfu) {
  const GPTConfig cfg = odd_config(false);
  const double N = 64 * 24 + 17 * 24 + 3 * 7224 + 48 + 64 * 24;
  EXPECT_NEAR(flops_per_token(cfg, 5), 6 * N + 12.0 * 3 * 24 * 5, 1e-6);
  EXPECT_NEAR(mfu(cfg, 3, 5, 0.25, 2e6), (6 * N + 12.0 * 3 * 24 * 5) * 15 / 0.25 / 2e6, 1e-12);
  // GPT-2 XL, T = 1024: 6 * 1557686400 + 12 * 48 * 1600 * 1024
  EXPECT_NEAR(flops_per_token(gpt_config("d48"), 1024), 6.0 * 1557686400 + 12.0 * 48 * 1600 * 1024, 1.0);
}

TEST(HiddenMemory, UntiedF64AndOddShapes) {
  for (bool tied : {false, true}) {
    const GPTConfig cfg = odd_config(tied);
    const int64_t B = 5, T = 7;
    const int64_t a0 = current(MemCategory::Activations), p0 = current(MemCategory::Parameters),
                  o0 = current(MemCategory::OptimizerState);
    const MemoryEstimate e = estimate_memory(cfg, B, T, DType::F64);
    {
      GPT m(cfg, 3, Device::CPU, DType::F64);
      Optimizer opt(m.layout(), AdamWConfig{}, DType::F64);
      Tensor x = random_tokens(B, T, cfg.vocab_size, 8), y = random_tokens(B, T, cfg.vocab_size, 9);
      MemoryTracker::instance().reset_peak();
      m.forward(x, y);
      m.backward();
      EXPECT_EQ(e.parameters, current(MemCategory::Parameters) - p0);
      EXPECT_EQ(e.optimizer_state, current(MemCategory::OptimizerState) - o0);
      EXPECT_EQ(e.activations, peak(MemCategory::Activations) - a0);
      EXPECT_EQ(e.gradients, e.parameters);
    }
  }
}

TEST(HiddenAdamW, OtherBetasLaterStep) {
  // Start from given moments at t = 3 with other betas: one step, by hand.
  AdamWConfig c;
  c.beta1 = 0.8;
  c.beta2 = 0.99;
  c.eps = 1e-6;
  c.weight_decay = 0.05;
  Tensor p = Tensor::from(std::vector<double>{0.5, -1.0}, {2}), g = Tensor::from(std::vector<double>{0.2, 0.4}, {2});
  Tensor m = Tensor::from(std::vector<double>{0.1, -0.1}, {2}), v = Tensor::from(std::vector<double>{0.01, 0.02}, {2});
  adamw_step(p, g, m, v, c, 3, 0.1, true);
  const double pv[2] = {0.5, -1.0}, gv[2] = {0.2, 0.4}, mv[2] = {0.1, -0.1}, vv[2] = {0.01, 0.02};
  for (int i = 0; i < 2; ++i) {
    const double mi = 0.8 * mv[i] + 0.2 * gv[i], vi = 0.99 * vv[i] + 0.01 * gv[i] * gv[i];
    const double mh = mi / (1 - std::pow(0.8, 3)), vh = vi / (1 - std::pow(0.99, 3));
    EXPECT_NEAR(p.to_vector()[i], pv[i] - 0.1 * (mh / (std::sqrt(vh) + 1e-6) + 0.05 * pv[i]), 1e-13) << i;
    EXPECT_NEAR(m.to_vector()[i], mi, 1e-15);
    EXPECT_NEAR(v.to_vector()[i], vi, 1e-15);
  }
}

TEST(HiddenTrainStep, NoClipOtherSeed) {
  // Six steps without clipping from dirty gradients, against the tests' own AdamW loop.
  const GPTConfig cfg = odd_config(false);
  TrainConfig tc;
  tc.max_lr = 1e-2;
  tc.min_lr = 1e-3;
  tc.warmup = 3;
  tc.total_steps = 5;
  tc.clip = 0.0;
  AdamWConfig ac;
  ac.beta2 = 0.99;
  GPT mine(cfg, 77, Device::CPU, DType::F64), ref(cfg, 77, Device::CPU, DType::F64);
  Optimizer opt(mine.layout(), ac, DType::F64);
  lesson01_test::ReferenceAdamW ref_opt;
  make_dirty(mine, 2.5);
  for (int64_t step = 0; step < 6; ++step) {
    Tensor x = random_tokens(2, 9, cfg.vocab_size, 300 + step), y = random_tokens(2, 9, cfg.vocab_size, 400 + step);
    const StepStats s = train_step(mine, opt, x, y, step, tc);
    ref.zero_grad();
    const double loss = ref.forward(x, y);
    ref.backward();
    const double norm = clip_grad_norm(ref.grads(), 0.0);
    const double lr = lr_at(step, tc.warmup, tc.total_steps, tc.max_lr, tc.min_lr);
    std::vector<double> p = ref.params().to_vector();
    ref_opt.step(p, ref.grads().to_vector(), ref.layout(), ac, lr);
    ref.params().copy_from(Tensor::from(p, {int64_t(p.size())}));
    EXPECT_DOUBLE_EQ(s.lr, lr);
    EXPECT_NEAR(s.loss, loss, 1e-12);
    EXPECT_NEAR(s.grad_norm, norm, 1e-12 * norm);
  }
  const auto a = mine.params().to_vector(), b = ref.params().to_vector();
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::abs(a[i] - b[i]));
  EXPECT_LT(worst, 1e-10);
}
