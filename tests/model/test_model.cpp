// The whole model: parameter counts, initialisation by slices, a finite-difference gradient
// check of every parameter group in double precision, float/double agreement, a short training
// run that must learn, and clear errors for bad configurations.

#include <gtest/gtest.h>

#include <cmath>

#include "core/rng.hpp"
#include "core/testing.hpp"
#include "model/gpt.hpp"
#include "optim/optim.hpp"

using namespace sgpt;

using sgpt::testing::random_tokens;

TEST(Config, ParameterCountMatchesBuffersAndGpt2) {
  for (const std::string& name : gpt_config_names()) {
    GPTConfig cfg = gpt_config(name);
    ParameterLayout layout(cfg);
    EXPECT_EQ(layout.numel(), cfg.num_parameters()) << name;
    int64_t sum = 0;
    for (const auto& p : layout.params()) sum += p.numel;
    EXPECT_EQ(sum, layout.numel()) << name;
  }
  // GPT-2 small with V padded to 50304: 124,475,904 parameters (llm.c reports the same).
  EXPECT_EQ(gpt_config("d12").num_parameters(), 124475904);
  EXPECT_LT(gpt_config("tiny").num_parameters(), 1000);
}

TEST(Config, BadConfigsGiveClearErrors) {
  GPTConfig c = gpt_config("nano");
  c.n_head = 5;
  try {
    c.validate();
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("5 heads do not divide the width n_embd = 32"), std::string::npos) << e.what();
  }
  try {
    gpt_config("d13");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("unknown model 'd13'"), std::string::npos) << e.what();
  }
  GPT m(gpt_config("tiny"), 1);
  Tensor long_seq = random_tokens(1, 5, 8, 1);  // tiny has a context of 4
  try {
    m.forward(long_seq, long_seq);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("sequence length 5 is longer than the context 4"), std::string::npos)
        << e.what();
  }
}

TEST(Init, AnySliceInitialisesAlone) {
  GPTConfig cfg = gpt_config("nano");
  ParameterLayout layout(cfg);
  Tensor full = Tensor::empty({layout.numel()});
  init_parameters(full, layout, 42);
  const int64_t begin = 12345, n = 4321;
  Tensor part = Tensor::empty({n});
  init_parameters(part, layout, 42, begin);
  for (int64_t i = 0; i < n; ++i) ASSERT_EQ(part.data<float>()[i], full.data<float>()[begin + i]) << i;
  // Statistics of GPT-2's initialisation: ones, zeros, N(0, 0.02), scaled projections.
  GPT m(cfg, 42);
  EXPECT_EQ(m.param("transformer.h.1.ln_2.weight").to_vector()[3], 1.0);
  EXPECT_EQ(m.param("transformer.h.1.mlp.c_fc.bias").to_vector()[7], 0.0);
  auto w = m.param("transformer.h.0.mlp.c_fc.weight").to_vector();
  double s2 = 0;
  for (double x : w) s2 += x * x;
  EXPECT_NEAR(std::sqrt(s2 / w.size()), 0.02, 0.001);
  auto pw = m.param("transformer.h.0.mlp.c_proj.weight").to_vector();
  s2 = 0;
  for (double x : pw) s2 += x * x;
  EXPECT_NEAR(std::sqrt(s2 / pw.size()), 0.02 / std::sqrt(2.0 * cfg.n_layer), 0.001);
}

TEST(Init, ParameterSliceIsItsBlockOfTheWholeModel) {
  // A column block of a matrix, a row block of a padded embedding (rows past V stay zero), and a
  // piece of a vector: each equals the same elements of the whole model, in f32 and f64.
  GPTConfig cfg = gpt_config("nano");
  cfg.set_vocab(1030);  // padded to 1088 rows
  ParameterLayout layout(cfg);
  for (DType dt : {DType::F32, DType::F64}) {
    GPT m(cfg, 7, Device::CPU, dt);
    auto check = [&](const std::string& name, int64_t R, int64_t K, int64_t row0, int64_t col0) {
      const ParamInfo& p = layout.find(name);
      Tensor out = p.shape.size() == 2 ? Tensor::empty({R, K}, dt) : Tensor::empty({R}, dt);
      init_parameter_slice(out, layout, 7, name, row0, col0);
      const std::vector<double> got = out.to_vector(), all = m.param(name).to_vector();
      const int64_t cols = p.numel / p.shape[0];
      for (int64_t i = 0; i < R; ++i)
        for (int64_t j = 0; j < K; ++j)
          ASSERT_EQ(got[i * K + j], all[(row0 + i) * cols + col0 + j]) << name << " (" << i << ", " << j << ")";
    };
    const int64_t C = cfg.n_embd;
    check("transformer.h.1.attn.c_proj.weight", C, C / 4, 0, C / 2);
    check("transformer.h.0.attn.c_attn.weight", C / 2, C, C + 3, 0);
    check("transformer.wte.weight", 8, C, cfg.vocab_size - 4, 0);
    check("transformer.h.0.ln_1.weight", 5, 1, 2, 0);
  }
  Tensor too_wide = Tensor::empty({2, 64});
  EXPECT_THROW(init_parameter_slice(too_wide, layout, 7, "transformer.h.0.attn.c_proj.weight", 0, 1), Error);
}

// Finite differences on every parameter of the tiny model, in double precision.
TEST(Model, GradientMatchesFiniteDifferences) {
  for (bool tied : {true, false}) {
    GPTConfig cfg = gpt_config("tiny");
    cfg.tied_embeddings = tied;
    GPT m(cfg, 7, Device::CPU, DType::F64);
    // Larger weights than GPT-2's 0.02 so every path carries a visible gradient.
    double* p = m.params().data<double>();
    uint64_t key = rng::stream_key(3, "perturb");
    for (int64_t i = 0; i < m.params().numel(); ++i) p[i] += 0.3 * rng::normal(key, i);
    Tensor x = random_tokens(2, 4, cfg.vocab_size, 11), y = random_tokens(2, 4, cfg.vocab_size, 12);
    m.zero_grad();
    m.forward(x, y);
    m.backward();
    std::vector<double> g = m.grads().to_vector();
    const double h = 1e-6;
    double max_rel = 0;
    for (int64_t i = 0; i < m.params().numel(); ++i) {
      double keep = p[i];
      p[i] = keep + h;
      double lp = m.forward(x, y);
      p[i] = keep - h;
      double lm = m.forward(x, y);
      p[i] = keep;
      double fd = (lp - lm) / (2 * h);
      double rel = std::abs(fd - g[i]) / std::max(1e-6, std::abs(fd) + std::abs(g[i]));
      max_rel = std::max(max_rel, rel);
      ASSERT_LT(rel, 1e-5) << "parameter element " << i << " fd " << fd << " analytic " << g[i] << " tied " << tied;
    }
  }
}

TEST(Model, GradientsAccumulateAndScale) {
  GPT m(gpt_config("nano"), 5, Device::CPU, DType::F64);
  Tensor x = random_tokens(2, 8, 256, 1), y = random_tokens(2, 8, 256, 2);
  m.zero_grad();
  m.forward(x, y);
  m.backward();
  std::vector<double> once = m.grads().to_vector();
  m.forward(x, y);
  m.backward(0.5);
  std::vector<double> twice = m.grads().to_vector();
  for (size_t i = 0; i < once.size(); i += 97) EXPECT_NEAR(twice[i], 1.5 * once[i], 1e-12 + 1e-9 * std::abs(once[i]));
}

TEST(Model, FloatAgreesWithDouble) {
  GPTConfig cfg = gpt_config("nano");
  GPT mf(cfg, 9, Device::CPU, DType::F32), md(cfg, 9, Device::CPU, DType::F64);
  Tensor x = random_tokens(3, 17, 256, 4), y = random_tokens(3, 17, 256, 5);
  double lf = mf.forward(x, y), ld = md.forward(x, y);
  EXPECT_NEAR(lf, ld, 1e-5 * std::abs(ld));
  mf.backward();
  md.backward();
  auto gf = mf.grads().to_vector(), gd = md.grads().to_vector();
  double num = 0, den = 0;
  for (size_t i = 0; i < gd.size(); ++i) {
    num += (gf[i] - gd[i]) * (gf[i] - gd[i]);
    den += gd[i] * gd[i];
  }
  EXPECT_LT(std::sqrt(num / den), 1e-4);
}

TEST(Model, CausalFutureTokensDoNotChangePastLogits) {
  GPT m(gpt_config("nano"), 3);
  Tensor x = random_tokens(1, 16, 256, 8);
  m.forward(x);
  auto before = m.logits().to_vector();
  x.data<int32_t>()[10] = (x.data<int32_t>()[10] + 1) % 256;
  m.forward(x);
  auto after = m.logits().to_vector();
  const int64_t Vp = m.config().padded_vocab_size;
  for (int64_t i = 0; i < 10 * Vp; ++i) ASSERT_EQ(before[i], after[i]) << "position " << i / Vp;
  bool changed = false;
  for (int64_t i = 10 * Vp; i < 16 * Vp; ++i) changed |= before[i] != after[i];
  EXPECT_TRUE(changed);
}

// GPT::set_recompute_gelu: the blocks keep fch only and share one gelu(fch) buffer (the backward
// scratch's dfch), the backward recomputes it. Same losses, gradients and updated parameters bit for
// bit over several AdamW steps from dirty gradients, at a shape where nothing divides nicely, and
// exactly L*4*B*T*C elements fewer activations.
TEST(Model, RecomputedGeluGivesTheSameBitsInLessMemory) {
  GPTConfig cfg = gpt_config("nano");
  const int64_t B = 3, T = 13, C = cfg.n_embd, L = cfg.n_layer;
  GPT keep(cfg, 21), redo(cfg, 21);
  redo.set_recompute_gelu(true);
  EXPECT_TRUE(redo.recompute_gelu());
  AdamWConfig oc;
  AdamW opt_keep(keep.layout(), oc, keep.dtype(), keep.device()), opt_redo(redo.layout(), oc, redo.dtype(), redo.device());
  sgpt::testing::make_dirty(keep.grads(), 0.1, 3);
  sgpt::testing::make_dirty(redo.grads(), 0.1, 3);
  int64_t act_keep = 0, act_redo = 0;
  for (int step = 0; step < 3; ++step) {
    Tensor x = random_tokens(B, T, cfg.vocab_size, 30 + step), y = random_tokens(B, T, cfg.vocab_size, 40 + step);
    const int64_t a0 = sgpt::testing::current(MemCategory::Activations);
    const double lk = keep.forward(x, y);
    const int64_t a1 = sgpt::testing::current(MemCategory::Activations);
    const double lr = redo.forward(x, y);
    const int64_t a2 = sgpt::testing::current(MemCategory::Activations);
    if (step == 0) {
      act_keep = a1 - a0;
      act_redo = a2 - a1;
    }
    ASSERT_EQ(lk, lr) << "step " << step;
    keep.backward();
    redo.backward();
    ASSERT_EQ(keep.grads().to_vector(), redo.grads().to_vector()) << "step " << step;
    opt_keep.step(keep.params(), keep.grads(), 1e-2);
    opt_redo.step(redo.params(), redo.grads(), 1e-2);
    keep.zero_grad();
    redo.zero_grad();
  }
  EXPECT_EQ(keep.params().to_vector(), redo.params().to_vector());
  EXPECT_EQ(act_keep - act_redo, L * 4 * B * T * C * 4) << "L*4BTC f32 elements fewer";
  // Every block writes its GELU into the same buffer; the default keeps one per block.
  for (int l = 0; l < L; ++l) {
    EXPECT_TRUE(redo.block_caches()[l].gelu_recomputed);
    EXPECT_FALSE(keep.block_caches()[l].gelu_recomputed);
    EXPECT_EQ(redo.block_caches()[l].fch_gelu.raw(), redo.block_caches()[0].fch_gelu.raw());
  }
  EXPECT_NE(keep.block_caches()[0].fch_gelu.raw(), keep.block_caches()[1].fch_gelu.raw());
  EXPECT_EQ(block_cache_numel(cfg, B, T, false) - block_cache_numel(cfg, B, T, false, true), 4 * B * T * C);
  // A shared buffer of the wrong shape or dtype is refused, naming the expectation.
  EXPECT_THROW(make_block_cache(cfg, B, T, DType::F32, Device::CPU, Tensor::empty({B, T, C})), Error);
  EXPECT_THROW(make_block_cache(cfg, B, T, DType::F32, Device::CPU, Tensor::empty({B, T, 4 * C}, DType::F64)), Error);
  // Switching back frees the caches; the next forward allocates private buffers again.
  redo.set_recompute_gelu(false);
  EXPECT_TRUE(redo.block_caches().empty());
}

// A repeating pattern is learnable: the loss must fall from ln(256) ~ 5.5 to below 0.5 within
// 150 AdamW steps of the nano model.
TEST(Training, LossFallsOnAPeriodicSequence) {
  GPT m(gpt_config("nano"), 1);
  AdamWConfig oc;
  oc.lr = 3e-3;
  oc.weight_decay = 0.0;
  AdamW opt(m.layout(), oc, m.dtype(), m.device());
  const int64_t B = 4, T = 32;
  std::vector<int32_t> xs(B * T), ys(B * T);
  const std::string text = "hello world, this is scalegpt. ";
  double first = 0, loss = 0;
  for (int step = 0; step < 150; ++step) {
    for (int64_t b = 0; b < B; ++b)
      for (int64_t t = 0; t < T; ++t) {
        size_t k = (step * 7 + b * 5 + t) % text.size();
        xs[b * T + t] = static_cast<unsigned char>(text[k]);
        ys[b * T + t] = static_cast<unsigned char>(text[(k + 1) % text.size()]);
      }
    Tensor x = Tensor::from(xs, {B, T}), y = Tensor::from(ys, {B, T});
    m.zero_grad();
    loss = m.forward(x, y);
    if (step == 0) first = loss;
    m.backward();
    clip_grad_norm(m.grads(), 1.0);
    opt.step(m.params(), m.grads(), oc.lr);
  }
  EXPECT_NEAR(first, std::log(256.0), 0.1);
  EXPECT_LT(loss, 0.5);
}

TEST(Optim, LearningRateScheduleShape) {
  EXPECT_DOUBLE_EQ(lr_at(0, 10, 100, 1.0, 0.1), 0.1);
  EXPECT_DOUBLE_EQ(lr_at(9, 10, 100, 1.0, 0.1), 1.0);
  EXPECT_NEAR(lr_at(55, 10, 100, 1.0, 0.1), 0.55, 1e-12);  // half-way down the cosine
  EXPECT_DOUBLE_EQ(lr_at(100, 10, 100, 1.0, 0.1), 0.1);
}

TEST(Optim, ClippingBoundsTheGlobalNorm) {
  Tensor g = Tensor::from(std::vector<float>{3, 4, 0, 0}, {4});
  EXPECT_DOUBLE_EQ(clip_grad_norm(g, 1.0), 5.0);
  EXPECT_NEAR(grad_norm(g), 1.0, 1e-6);
  EXPECT_NEAR(g.data<float>()[0], 0.6, 1e-6);
  Tensor h = Tensor::from(std::vector<float>{0.3f, 0.4f}, {2});
  clip_grad_norm(h, 1.0);
  EXPECT_FLOAT_EQ(h.data<float>()[1], 0.4f);  // under the bound: untouched
}

TEST(Optim, WeightDecayOnlyOnMatrices) {
  GPTConfig cfg = gpt_config("tiny");
  GPT m(cfg, 1);
  AdamWConfig oc;
  oc.lr = 0.1;
  oc.weight_decay = 0.5;
  AdamW opt(m.layout(), oc, m.dtype(), m.device());
  m.zero_grad();  // zero gradients: only weight decay moves parameters
  Tensor before = m.params().to(Device::CPU);
  opt.step(m.params(), m.grads(), oc.lr);
  auto after = m.params().to_vector();
  auto b = before.to_vector();
  for (const auto& p : m.layout().params())
    for (int64_t i = p.offset; i < p.offset + p.numel; ++i) {
      double expect = p.weight_decay ? b[i] * (1 - 0.1 * 0.5) : b[i];
      ASSERT_NEAR(after[i], expect, 1e-7) << p.name;
    }
}
