// Lesson 05 hidden tests: other inputs, constants and shapes than the public ones.

#include <gtest/gtest.h>

#include <cmath>

#include "mixed_precision.hpp"
#include "tests/test_util.hpp"

using namespace sgpt;
using namespace sgpt::lesson05;
using namespace lesson05_test;

namespace {
int64_t count_mismatches(const Format& f, uint16_t (*narrow)(float), const std::vector<uint32_t>& inputs) {
  const std::vector<double> table = positive_values(f);
  int64_t bad = 0;
  for (uint32_t u : inputs) {
    const float x = from_bits(u);
    const uint16_t want = std::isnan(x) ? expected_nan(x, f) : brute_force_round(x, f, table);
    if (narrow(x) != want && bad++ < 5)
      ADD_FAILURE() << "f32 0x" << std::hex << u << " -> 0x" << narrow(x) << ", expected 0x" << want;
  }
  return bad;
}
GPTConfig small(bool tied) {
  GPTConfig c = gpt_config("nano");
  c.n_layer = 3;
  c.n_head = 2;
  c.n_embd = 16;
  c.tied_embeddings = tied;
  return c;
}
}  // namespace

// Every exact tie (dropped half = 0x8000) of every exponent and kept mantissa, one off each side
// of a tie, and every pattern from the largest finite bf16 up to f32 infinity.
TEST(HiddenBf16, OtherSeedNearTiesAndOverflow) {
  std::vector<uint32_t> in;
  std::mt19937 gen(99);
  for (uint32_t hi = 0; hi < 65536; ++hi) {
    in.push_back((hi << 16) | 0x8000u);
    in.push_back((hi << 16) | (gen() % 2 ? 0x7fffu : 0x8001u));
  }
  for (uint32_t u = 0x7f7f0000u; u <= 0x7f800000u; ++u) in.push_back(u | (gen() % 2 ? 0x80000000u : 0u));
  EXPECT_EQ(count_mismatches(kBf16, float_to_bf16, in), 0);
}

// Patterns through fp16's subnormal and low normal range (f32 exponents 100..114, both signs).
TEST(HiddenFp16, EveryPatternNearTheSubnormalRange) {
  std::vector<uint32_t> in;
  for (uint32_t e = 100; e <= 114; ++e)
    for (uint32_t m = 0; m < (1u << 23); m += 29) in.push_back(((e & 1) << 31) | (e << 23) | m);
  for (uint32_t m = 0; m < (1u << 23); m += 4093) in.push_back((142u << 23) | m);  // up to 65520
  EXPECT_EQ(count_mismatches(kFp16, float_to_fp16, in), 0);
}

// Other constants: init 1024, growth x4 after 2 good steps, backoff x1/4. The expected schedule is
// simulated here from the README's rule.
TEST(HiddenLossScaler, OtherConstantsAndPattern) {
  LossScalerConfig cfg;
  cfg.init_scale = 1024;
  cfg.growth_factor = 4;
  cfg.backoff_factor = 0.25;
  cfg.growth_interval = 2;
  DynamicLossScaler s(cfg);
  const bool pattern[] = {1, 1, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 1, 0, 0};
  double scale = 1024;
  int64_t good = 0, skipped = 0;
  for (bool overflow : pattern) {
    ASSERT_EQ(s.scale(), scale);
    const bool applied = s.update(overflow);
    EXPECT_EQ(applied, !overflow);
    if (overflow) {
      scale *= 0.25, good = 0, ++skipped;
    } else if (++good == 2) {
      scale *= 4, good = 0;
    }
  }
  EXPECT_EQ(s.scale(), scale);
  EXPECT_EQ(s.skipped_steps(), skipped);
  EXPECT_EQ(s.good_steps(), good);
}

// fp16 with loss scaling, an f32 accumulator over 3 micro-batches and clipping follows f32.
TEST(HiddenStep, Fp16AccumulatedClippedFollowsF32) {
  const GPTConfig cfg = small(true);
  auto run = [&](Precision p, bool accum, bool scaling) {
    Recipe r;
    r.precision = p;
    r.fp32_grad_accum = accum;
    r.loss_scaling = scaling;
    MixedPrecisionTrainer tr(cfg, 17, r, test_adamw());
    Tensor x = random_tokens(6, 24, cfg.vocab_size, 5), y = random_tokens(6, 24, cfg.vocab_size, 6);
    std::vector<StepResult> out;
    for (int s = 0; s < 8; ++s) out.push_back(tr.step(x, y, 2, 4e-3, 0.3));
    return out;
  };
  const std::vector<StepResult> f32 = run(Precision::F32, false, false), fp16 = run(Precision::FP16, true, true);
  for (size_t s = 0; s < f32.size(); ++s) {
    EXPECT_FALSE(fp16[s].skipped);
    EXPECT_NEAR(fp16[s].loss, f32[s].loss, 0.003) << "step " << s;
    EXPECT_NEAR(fp16[s].grad_norm, f32[s].grad_norm, 0.05 * f32[s].grad_norm) << "unscaled norm, step " << s;
  }
  EXPECT_LT(fp16.back().loss, fp16.front().loss - 0.3);
}

TEST(HiddenBytes, UntiedFp16AndOtherShapes) {
  const GPTConfig cfg = small(false);
  Recipe r;
  r.precision = Precision::FP16;
  r.fp32_grad_accum = true;
  r.loss_scaling = true;
  const int64_t p0 = current(MemCategory::Parameters), g0 = current(MemCategory::Gradients),
                o0 = current(MemCategory::OptimizerState);
  MixedPrecisionTrainer tr(cfg, 1, r, test_adamw());
  const int64_t n = tr.model().layout().numel();
  const ModelStateBytes b = model_state_bytes(r, n);
  EXPECT_EQ(current(MemCategory::Parameters) - p0, b.parameters);
  EXPECT_EQ(current(MemCategory::Gradients) - g0, b.gradients);
  EXPECT_EQ(current(MemCategory::OptimizerState) - o0, b.optimizer_state);
  EXPECT_EQ(b.total(), 20 * n);
  const int64_t a0 = current(MemCategory::Activations);
  Tensor x = random_tokens(5, 13, cfg.vocab_size, 1), y = random_tokens(5, 13, cfg.vocab_size, 2);
  tr.step(x, y, 5, 1e-3, 1.0);
  EXPECT_EQ(current(MemCategory::Activations) - a0, activation_bytes(cfg, 5, 13, DType::F16));
  EXPECT_EQ(activation_bytes(cfg, 5, 13, DType::F32) - 2 * 5 * 13 * 4,
            2 * (activation_bytes(cfg, 5, 13, DType::BF16) - 2 * 5 * 13 * 4));
}
