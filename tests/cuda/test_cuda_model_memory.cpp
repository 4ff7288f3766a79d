// The whole model's memory options on the GPU: GPT::set_recompute_gelu in bf16 storage (the
// benchmark's `--recompute gelu`). The recomputed GELU is the same kernel on the same input, so
// the losses and every gradient that no atomic touches are the same bits as with the GELU kept;
// the activations shrink by exactly L*4*B*T*C bf16 elements. Without a GPU: SKIPPED.

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "core/memory.hpp"
#include "core/testing.hpp"
#include "kernels/ops.hpp"
#include "model/gpt.hpp"

using namespace sgpt;

namespace {

int64_t activations_now() {
  return static_cast<int64_t>(MemoryTracker::instance().stats(MemCategory::Activations, Device::CUDA).current);
}

std::vector<double> host(const Tensor& t) { return t.to(Device::CPU).cast(DType::F64).to_vector(); }

}  // namespace

// Two optimizer-free steps (the second accumulates into the first's gradients) of a 2-layer
// d12-width bf16 model, with and without recomputation, at T not a multiple of the tile sizes.
TEST(CudaModelMemory, RecomputedGeluSameStepLessMemoryBF16) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device: this test needs a GPU";
  GPTConfig cfg = gpt_config("d12");
  cfg.n_layer = 2;
  cfg.max_seq_len = 128;
  cfg.set_vocab(1000);
  const int64_t B = 3, T = 77, C = cfg.n_embd, L = cfg.n_layer;
  GPT keep(cfg, 5, Device::CUDA, DType::BF16), redo(cfg, 5, Device::CUDA, DType::BF16);
  redo.set_recompute_gelu(true);
  int64_t act_keep = 0, act_redo = 0;
  for (int step = 0; step < 2; ++step) {
    Tensor x = sgpt::testing::random_tokens(B, T, cfg.vocab_size, 50 + step).to(Device::CUDA);
    Tensor y = sgpt::testing::random_tokens(B, T, cfg.vocab_size, 60 + step).to(Device::CUDA);
    const int64_t a0 = activations_now();
    const double lk = keep.forward(x, y);
    const int64_t a1 = activations_now();
    const double lr = redo.forward(x, y);
    const int64_t a2 = activations_now();
    if (step == 0) {
      act_keep = a1 - a0;
      act_redo = a2 - a1;
    }
    EXPECT_EQ(lk, lr) << "step " << step;
    keep.backward();
    redo.backward();
  }
  EXPECT_EQ(act_keep - act_redo, L * 4 * B * T * C * 2) << "L*4BTC bf16 elements fewer";
  // wte's gradient gets the encoder's scatter through float atomics (order not fixed): compare
  // everything after wte bit for bit, and wte to one bf16 rounding.
  const std::vector<double> gk = host(keep.grads()), gr = host(redo.grads());
  const int64_t wte = cfg.padded_vocab_size * C;
  int64_t differ = 0;
  for (int64_t i = wte; i < static_cast<int64_t>(gk.size()); ++i) differ += gk[i] != gr[i];
  EXPECT_EQ(differ, 0) << "gradients after wte that differ";
  double num = 0, den = 0;
  for (int64_t i = 0; i < wte; ++i) {
    num += (gk[i] - gr[i]) * (gk[i] - gr[i]);
    den += gk[i] * gk[i];
  }
  EXPECT_GT(den, 0);
  EXPECT_LE(std::sqrt(num / den), 4e-3) << "wte gradient";
}
