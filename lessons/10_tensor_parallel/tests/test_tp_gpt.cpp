// Lesson 10: a whole GPT (embedding, tensor-parallel blocks, head and loss: the given TPGPT of
// tp_gpt.hpp, what scalegpt-train --tp runs) trained three AdamW steps with gradient clipping equals
// the single-device GPT, in f64, on groups of t = 1, 2, 3 and 4 and on the MPI world, starting from
// dirty gradients (backward adds to them): the losses, the global gradient norms, and the gathered
// parameters and AdamW moments. With tied embeddings and plain tensor parallelism, and with an
// untied head and sequence parallelism (where the head's and the embedding's gradients are partial
// sums over the ranks' positions).

#include <gtest/gtest.h>

#include "test_util.hpp"
#include "tp_gpt.hpp"

using namespace sgpt;
using namespace sgpt::lesson10;
using namespace lesson10_test;

namespace {

const std::vector<int> kRanks = {1, 2, 3, 4};
constexpr int64_t kB = 2, kT = 12;
constexpr int kSteps = 3;
constexpr double kClip = 0.5;  // below the first steps' norms, so clipping acts

// The batch of step s: tokens and next tokens, i32 [B,T], from a pure function of s.
std::pair<Tensor, Tensor> batch(int s, int vocab) {
  std::vector<int32_t> seq(size_t(kB * (kT + 1)));
  for (size_t i = 0; i < seq.size(); ++i) seq[i] = int32_t((i * 7 + size_t(s) * 13 + i * i % 5) % size_t(vocab));
  std::vector<int32_t> x, y;
  for (int64_t b = 0; b < kB; ++b)
    for (int64_t t = 0; t < kT; ++t) {
      x.push_back(seq[size_t(b * (kT + 1) + t)]);
      y.push_back(seq[size_t(b * (kT + 1) + t + 1)]);
    }
  return {Tensor::from(x, {kB, kT}), Tensor::from(y, {kB, kT})};
}

struct Trace {
  std::vector<double> loss, norm;
};

double lr_of(int s) { return 3e-2 * (1.0 - 0.2 * s); }

void check_whole_model(bool tied, bool sp) {
  GPTConfig cfg = config(24, 12, 2);
  cfg.tied_embeddings = tied;
  cfg.validate();
  const uint64_t seed = tied ? 41 : 42;
  // The single-device run. The first step starts from dirty gradients (backward adds to them).
  GPT single(cfg, seed, Device::CPU, DType::F64);
  AdamW opt(single.layout(), adamw(), DType::F64, Device::CPU);
  const Tensor dirty = noise({single.layout().numel()}, seed, "dirty-grads", 0.05);
  single.grads().copy_from(dirty);
  Trace want;
  for (int s = 0; s < kSteps; ++s) {
    auto [x, y] = batch(s, cfg.vocab_size);
    if (s > 0) single.zero_grad();
    want.loss.push_back(single.forward(x, y));
    single.backward();
    want.norm.push_back(clip_grad_norm(single.grads(), kClip));
    opt.step(single.params(), single.grads(), lr_of(s));
  }
  ASSERT_GT(want.norm[0], kClip) << "the test means clipping to act";
  on_groups(kRanks, [&](Communicator& c) {
    TPGPT model(c, cfg, seed, sp, DType::F64);
    model.shard_from_full(model.grads(), dirty);
    for (int s = 0; s < kSteps; ++s) {
      auto [x, y] = batch(s, cfg.vocab_size);
      if (s > 0) model.zero_grad();
      const double loss = model.forward(x, y);
      model.backward();
      const double norm = model.clip_grad_norm(kClip);
      model.adamw_step(adamw(), lr_of(s));
      EXPECT_NEAR(loss, want.loss[s], kTol * (1 + want.loss[s])) << where(c) << " loss of step " << s;
      EXPECT_NEAR(norm, want.norm[s], kTol * (1 + want.norm[s])) << where(c) << " gradient norm of step " << s;
    }
    Tensor full = Tensor::zeros({single.layout().numel()}, DType::F64);
    model.full_from_shards(full, model.params());
    EXPECT_LT(max_rel_diff(full, single.params()), kTol) << where(c) << " parameters after " << kSteps << " steps";
    model.full_from_shards(full, model.adam_m());
    EXPECT_LT(max_rel_diff(full, opt.m()), kTol) << where(c) << " AdamW first moments";
    model.full_from_shards(full, model.adam_v());
    EXPECT_LT(max_rel_diff(full, opt.v()), kTol) << where(c) << " AdamW second moments";
    // And back: a rank's shard of the full buffer is what it holds.
    Tensor local = Tensor::zeros({model.params().numel()}, DType::F64);
    model.shard_from_full(local, single.params());
    EXPECT_LT(max_rel_diff(local, model.params()), kTol) << where(c) << " shard_from_full";
  });
}

}  // namespace

TEST(TPGPT, ThreeClippedAdamWStepsMatchSingleDevice) { check_whole_model(/*tied=*/true, /*sp=*/false); }

TEST(SPGPT, ThreeClippedAdamWStepsMatchSingleDevice) { check_whole_model(/*tied=*/false, /*sp=*/true); }
