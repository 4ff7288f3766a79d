// Lesson 03 hidden tests: other widths, heads, depths, batch shapes and dtypes; two steps in a row
// (buffers reused), and a change of batch shape between steps.

#include <gtest/gtest.h>

#include "recompute.hpp"
#include "tests/test_util.hpp"

using namespace sgpt;
using namespace sgpt::lesson03;
using lesson03_test::current;
using lesson03_test::peak;
using lesson03_test::random_tokens;

namespace {
GPTConfig cfg_of(int L, int NH, int C) {
  GPTConfig c = gpt_config("nano");
  c.n_layer = L;
  c.n_head = NH;
  c.n_embd = C;
  return c;
}

// Two steps (the second with another batch shape) must give the library model's gradients.
void check_mode(Recompute mode) {
  const GPTConfig cfg = cfg_of(5, 2, 24);
  for (DType dt : {DType::F64, DType::F32}) {
    GPT ref(cfg, 8, Device::CPU, dt), m(cfg, 8, Device::CPU, dt);
    RecomputeGPT rg(m, mode);
    for (auto [B, T] : {std::pair<int64_t, int64_t>{3, 9}, {2, 13}, {2, 13}}) {
      Tensor x = random_tokens(B, T, cfg.vocab_size, B * 100 + T), y = random_tokens(B, T, cfg.vocab_size, B + T);
      EXPECT_EQ(rg.forward(x, y), ref.forward(x, y));
      rg.backward();
      ref.backward();
    }
    EXPECT_EQ(m.grads().to_vector(), ref.grads().to_vector()) << recompute_name(mode) << " " << dtype_name(dt);
  }
}

int64_t measured(const GPTConfig& cfg, Recompute mode, int64_t B, int64_t T) {
  GPT m(cfg, 1);
  Tensor x = random_tokens(B, T, cfg.vocab_size, 1), y = random_tokens(B, T, cfg.vocab_size, 2);
  const int64_t base = current(MemCategory::Activations);
  MemoryTracker::instance().reset_peak();
  {
    RecomputeGPT rg(m, mode);
    rg.forward(x, y);
    rg.backward();
  }
  return peak(MemCategory::Activations) - base;
}
}  // namespace

TEST(HiddenFull, FiveLayersTwoShapes) { check_mode(Recompute::Full); }
TEST(HiddenSelective, FiveLayersTwoShapes) { check_mode(Recompute::Selective); }

TEST(HiddenFull, MemoryAndCountsDeep) {
  const GPTConfig cfg = cfg_of(6, 4, 16);
  const int64_t B = 2, T = 20, BT = B * T, C = 16, att = 4 * B * T * T;
  const int64_t common = 20 * BT * C + 3 * BT + BT * cfg.padded_vocab_size;
  EXPECT_EQ(measured(cfg, Recompute::Full, B, T), (common + 6 * BT * C + 16 * BT * C + 4 * BT + att) * 4);
  GPT m(cfg, 1);
  RecomputeGPT rg(m, Recompute::Full);
  Tensor x = random_tokens(B, T, cfg.vocab_size, 1);
  rg.forward(x, x);
  rg.backward();
  EXPECT_EQ(rg.block_forwards(), 12);
}

TEST(HiddenSelective, MemoryAndCountsDeep) {
  const GPTConfig cfg = cfg_of(6, 4, 16);
  const int64_t B = 2, T = 20, BT = B * T, C = 16, att = 4 * B * T * T;
  const int64_t common = 20 * BT * C + 3 * BT + BT * cfg.padded_vocab_size;
  EXPECT_EQ(measured(cfg, Recompute::Selective, B, T), (common + 6 * (16 * BT * C + 4 * BT) + att) * 4);
  GPT m(cfg, 1);
  RecomputeGPT rg(m, Recompute::Selective);
  Tensor x = random_tokens(B, T, cfg.vocab_size, 1);
  rg.forward(x, x);
  rg.backward();
  EXPECT_EQ(rg.attention_recomputes(), 6);
  EXPECT_EQ(rg.block_forwards(), 6);
}

TEST(HiddenFormula, OtherShapesAndF64) {
  for (Recompute mode : {Recompute::None, Recompute::Selective, Recompute::Full}) {
    const GPTConfig cfg = cfg_of(3, 4, 16);
    const int64_t B = 3, T = 11, BT = B * T, C = 16, L = 3, att = 4 * B * T * T, cache = 16 * BT * C + 4 * BT + att;
    const int64_t common = 20 * BT * C + 3 * BT + BT * cfg.padded_vocab_size;
    const int64_t blocks = mode == Recompute::None ? L * cache : mode == Recompute::Full ? L * BT * C + cache
                                                                                        : L * (cache - att) + att;
    EXPECT_EQ(predicted_activation_bytes(cfg, B, T, mode, DType::F64), (common + blocks) * 8) << recompute_name(mode);
  }
}
