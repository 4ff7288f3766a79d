// Lesson 03 public tests: recomputation gives bitwise the gradients of the run that keeps every
// activation, its peak activation memory is what the formula says, and the extra work is counted.
// Every run starts from dirty gradients and runs two steps (the peak covers both), and some
// configurations pad the vocabulary (V = 100, Vp = 128) with a T that is not a power of two.
//
// Why bitwise: a recomputed block runs the same ops, in the same order, on the same input as the
// first forward, so every cached value is the same bit pattern, and so is every gradient.

#include <gtest/gtest.h>

#include "recompute.hpp"
#include "test_util.hpp"

using namespace sgpt;
using namespace sgpt::lesson03;
using lesson03_test::current;
using lesson03_test::peak;
using lesson03_test::random_tokens;

namespace {

GPTConfig with_layers(const char* preset, int L) {
  GPTConfig c = gpt_config(preset);
  c.n_layer = L;
  return c;
}

// Every run below starts from dirty gradients (backward adds into them, it never zeroes) and runs
// two steps on the same batch shape: the second step reuses the buffers of the first.
constexpr int kSteps = 2;

// Loss and gradients of the library model (keeps everything): the reference.
std::pair<double, std::vector<double>> reference(const GPTConfig& cfg, DType dt, const Tensor& x, const Tensor& y) {
  GPT m(cfg, 21, Device::CPU, dt);
  sgpt::testing::make_dirty(m.grads());
  double loss = 0;
  for (int step = 0; step < kSteps; ++step) {
    loss = m.forward(x, y);
    m.backward();
  }
  return {loss, m.grads().to_vector()};
}

struct RunResult {
  double loss;
  std::vector<double> grads;
  int64_t block_forwards, attention_recomputes;  ///< per step
  int64_t peak_bytes;                            ///< over both steps
};

// Two forward + backward steps with `mode` on a fresh model with dirty gradients; peak is the
// activation peak the run added.
RunResult run(const GPTConfig& cfg, DType dt, Recompute mode, const Tensor& x, const Tensor& y) {
  GPT m(cfg, 21, Device::CPU, dt);
  sgpt::testing::make_dirty(m.grads());
  RunResult r{};
  const int64_t base = current(MemCategory::Activations);
  MemoryTracker::instance().reset_peak();
  {
    RecomputeGPT rg(m, mode);
    for (int step = 0; step < kSteps; ++step) {
      r.loss = rg.forward(x, y);
      rg.backward();
    }
    r.block_forwards = rg.block_forwards() / kSteps;
    r.attention_recomputes = rg.attention_recomputes() / kSteps;
  }
  r.peak_bytes = peak(MemCategory::Activations) - base;
  r.grads = m.grads().to_vector();
  return r;
}

// A config whose vocabulary is padded (V = 100, Vp = 128): the head's logits are [B,T,Vp].
GPTConfig padded(int L) {
  GPTConfig c = with_layers("nano", L);
  c.vocab_size = 100;
  c.padded_vocab_size = 128;
  return c;
}

// The lesson's formula, written out here for the tests (elements -> bytes).
int64_t formula_bytes(const GPTConfig& cfg, int64_t B, int64_t T, Recompute mode, DType dt) {
  const int64_t C = cfg.n_embd, L = cfg.n_layer, BT = B * T, att = int64_t(cfg.n_head) * B * T * T;
  const int64_t cache = 16 * BT * C + 4 * BT + att;
  const int64_t common = 20 * BT * C + 3 * BT + BT * cfg.padded_vocab_size;
  const int64_t blocks = mode == Recompute::None ? L * cache
                         : mode == Recompute::Full ? L * BT * C + cache
                                                   : L * (cache - att) + att;
  return (common + blocks) * int64_t(dtype_size(dt));
}

void expect_bitwise_equal(const GPTConfig& cfg, Recompute mode, DType dt, int64_t B, int64_t T, uint64_t seed) {
  SCOPED_TRACE(std::string(recompute_name(mode)) + " L=" + std::to_string(cfg.n_layer) + " " + dtype_name(dt));
  Tensor x = random_tokens(B, T, cfg.vocab_size, seed), y = random_tokens(B, T, cfg.vocab_size, seed + 1);
  const auto [ref_loss, ref_grads] = reference(cfg, dt, x, y);
  const RunResult r = run(cfg, dt, mode, x, y);
  EXPECT_EQ(r.loss, ref_loss);
  ASSERT_EQ(r.grads.size(), ref_grads.size());
  size_t bad = 0, first = 0;
  for (size_t i = 0; i < r.grads.size(); ++i)
    if (r.grads[i] != ref_grads[i] && bad++ == 0) first = i;
  EXPECT_EQ(bad, 0u) << "gradients differ from the no-recompute run in " << bad << " elements; first at " << first
                     << ": " << r.grads[first] << " vs " << ref_grads[first];
}

}  // namespace

// ---- given: the reference path (not graded: it passes before you start) ----------------------------

TEST(NoRecompute, MatchesLibraryModel) {
  expect_bitwise_equal(with_layers("nano", 2), Recompute::None, DType::F32, 2, 16, 1);
}

// ---- task 1: full recomputation ------------------------------------------------------------------------

TEST(Full, GradientsBitwiseEqual) {
  for (int L : {1, 3}) {
    expect_bitwise_equal(with_layers("nano", L), Recompute::Full, DType::F64, 2, 16, 10 + L);
    expect_bitwise_equal(padded(L), Recompute::Full, DType::F32, 3, 7, 20 + L);
  }
}

TEST(Full, CountsTheExtraForwards) {
  const GPTConfig cfg = with_layers("nano", 3);
  Tensor x = random_tokens(2, 8, cfg.vocab_size, 1), y = random_tokens(2, 8, cfg.vocab_size, 2);
  const RunResult r = run(cfg, DType::F32, Recompute::Full, x, y);
  EXPECT_EQ(r.block_forwards, 2 * cfg.n_layer) << "every block runs twice: use forward_block for both";
  EXPECT_EQ(r.attention_recomputes, 0);
}

TEST(Full, PeakMemoryMatchesFormula) {
  for (int L : {1, 2, 4}) {
    const GPTConfig cfg = L == 2 ? padded(L) : with_layers("nano", L);
    SCOPED_TRACE("L=" + std::to_string(L));
    Tensor x = random_tokens(2, 32, cfg.vocab_size, 3), y = random_tokens(2, 32, cfg.vocab_size, 4);
    const RunResult r = run(cfg, DType::F32, Recompute::Full, x, y);
    EXPECT_EQ(r.peak_bytes, formula_bytes(cfg, 2, 32, Recompute::Full, DType::F32))
        << "full recomputation keeps L block outputs and one block cache";
    if (L >= 2) {
      EXPECT_LT(r.peak_bytes, formula_bytes(cfg, 2, 32, Recompute::None, DType::F32));
    }
  }
}

// ---- task 2: selective recomputation ---------------------------------------------------------------------

TEST(Selective, GradientsBitwiseEqual) {
  for (int L : {1, 3}) {
    expect_bitwise_equal(with_layers("nano", L), Recompute::Selective, DType::F64, 2, 16, 30 + L);
    expect_bitwise_equal(padded(L), Recompute::Selective, DType::F32, 3, 7, 40 + L);
  }
}

TEST(Selective, CountsTheRecomputedSoftmaxes) {
  const GPTConfig cfg = with_layers("nano", 3);
  Tensor x = random_tokens(2, 8, cfg.vocab_size, 1), y = random_tokens(2, 8, cfg.vocab_size, 2);
  const RunResult r = run(cfg, DType::F32, Recompute::Selective, x, y);
  EXPECT_EQ(r.block_forwards, cfg.n_layer);
  EXPECT_EQ(r.attention_recomputes, cfg.n_layer) << "recompute att once per block, in the backward";
}

TEST(Selective, PeakMemoryMatchesFormula) {
  for (int L : {1, 2, 4}) {
    const GPTConfig cfg = L == 2 ? padded(L) : with_layers("nano", L);
    SCOPED_TRACE("L=" + std::to_string(L));
    Tensor x = random_tokens(2, 32, cfg.vocab_size, 3), y = random_tokens(2, 32, cfg.vocab_size, 4);
    const RunResult r = run(cfg, DType::F32, Recompute::Selective, x, y);
    EXPECT_EQ(r.peak_bytes, formula_bytes(cfg, 2, 32, Recompute::Selective, DType::F32))
        << "selective recomputation keeps L caches without att, and one att";
  }
}

// ---- task 3: the formula ---------------------------------------------------------------------------------

TEST(Formula, PredictsTheTrackerPeak) {
  struct Case {
    int L;
    int64_t B, T;
    DType dt;
  };
  for (const Case& c : {Case{1, 2, 32, DType::F32}, Case{3, 1, 16, DType::F64}, Case{4, 3, 8, DType::F32},
                        Case{2, 3, 7, DType::F32}}) {
    const GPTConfig cfg = c.T == 7 ? padded(c.L) : with_layers("nano", c.L);
    Tensor x = random_tokens(c.B, c.T, cfg.vocab_size, 5), y = random_tokens(c.B, c.T, cfg.vocab_size, 6);
    for (Recompute mode : {Recompute::None, Recompute::Selective, Recompute::Full}) {
      SCOPED_TRACE(std::string(recompute_name(mode)) + " V=" + std::to_string(cfg.vocab_size) + " Vp=" +
                   std::to_string(cfg.padded_vocab_size) + " L=" + std::to_string(c.L) + " B=" + std::to_string(c.B) +
                   " T=" + std::to_string(c.T) + " " + dtype_name(c.dt));
      const int64_t predicted = predicted_activation_bytes(cfg, c.B, c.T, mode, c.dt);
      EXPECT_EQ(predicted, formula_bytes(cfg, c.B, c.T, mode, c.dt));
    }
    // The reference path is given, so its measured peak checks the formula even before tasks 1-2.
    EXPECT_EQ(predicted_activation_bytes(cfg, c.B, c.T, Recompute::None, c.dt),
              run(cfg, c.dt, Recompute::None, x, y).peak_bytes);
  }
}
