// Hand-computed cases, causal masking, and the in-place aliasing ops.hpp allows.

#include "kernel_test_util.hpp"

using namespace kt;

namespace {
const DType D = DType::F64;
const DType kDtypes[] = {DType::F32, DType::F64};
double tol_for(DType dt) { return dt == DType::F32 ? 2e-6 : 1e-13; }
}  // namespace

// ---- hand-computed ------------------------------------------------------------------------------

TEST(HandComputed, CrossEntropyOnThreeLogits) {
  // logits [1, 2, 3 | 99 padded], V = 3, Vp = 4, target 0.
  //   lse = log(e + e^2 + e^3) = 3.40760596444438, loss = lse - 1 = 2.40760596444438
  //   probs = [0.0900305731703805, 0.2447284710547977, 0.6652409557748219, 0]
  //   dlogits (dloss = 0.5) = [(p0 - 1)/2, p1/2, p2/2, 0]
  for (DType dt : kDtypes) {
    SCOPED_TRACE(dtype_name(dt));
    double tol = dt == DType::F32 ? 1e-6 : 1e-14;
    Tensor logits = from_doubles({1, 2, 3, 99}, {1, 1, 4}, dt);
    Tensor tgt = tokens({0}, {1, 1});
    Tensor losses = nans({1, 1}, dt), probs = nans({1, 1, 4}, dt);
    softmax_crossentropy_forward(losses, probs, logits, tgt, 3);
    EXPECT_NEAR(get(losses, 0), 2.40760596444438, tol);
    EXPECT_NEAR(get(probs, 0), 0.09003057317038046, tol);
    EXPECT_NEAR(get(probs, 1), 0.24472847105479767, tol);
    EXPECT_NEAR(get(probs, 2), 0.6652409557748219, tol);
    EXPECT_EQ(get(probs, 3), 0.0);
    Tensor dlogits = nans({1, 1, 4}, dt);
    softmax_crossentropy_backward(dlogits, probs, tgt, 0.5, 3);
    EXPECT_NEAR(get(dlogits, 0), -0.4549847134148098, tol);
    EXPECT_NEAR(get(dlogits, 1), 0.12236423552739883, tol);
    EXPECT_NEAR(get(dlogits, 2), 0.33262047788741095, tol);
    EXPECT_EQ(get(dlogits, 3), 0.0);
  }
}

TEST(HandComputed, CrossEntropyIsStableForLargeLogits) {
  // [1000, 1001, 1002] is [0, 1, 2] shifted: same probs; with target 1 the loss is lse - 1001.
  for (DType dt : kDtypes) {
    SCOPED_TRACE(dtype_name(dt));
    Tensor logits = from_doubles({1000, 1001, 1002, -5, 0, 1, 2, 1e4}, {2, 1, 4}, dt);
    Tensor tgt = tokens({1, 1}, {2, 1});
    Tensor losses = nans({2, 1}, dt), probs = nans({2, 1, 4}, dt);
    softmax_crossentropy_forward(losses, probs, logits, tgt, 3);
    // Row 0: logits 1000..1002, target 1 -> loss = 1.40760596444438.
    EXPECT_NEAR(get(losses, 0), 1.40760596444438, dt == DType::F32 ? 1e-4 : 1e-12);
    EXPECT_NEAR(get(probs, 2), 0.6652409557748219, 1e-6);
    // Row 1: logits [0, 1, 2 | 1e4 padded], target 1: the same loss; the padded 1e4 must not count.
    EXPECT_NEAR(get(losses, 1), 1.40760596444438, 1e-6);
    EXPECT_NEAR(get(probs, 4 + 2), 0.6652409557748219, 1e-6);
    EXPECT_EQ(get(probs, 3), 0.0);
    EXPECT_EQ(get(probs, 4 + 3), 0.0);
  }
}

TEST(HandComputed, AttentionTwoTokensTwoHeads) {
  // B = 1, T = 2, C = 4, NH = 2, HS = 2, scale 1/sqrt(2). With L = ln 3:
  //   t=0: q0 = [5,-3 | 2,1], k0 = 0, v0 = [4,0 | 8,-4]  -> out0 = v0 (only itself to attend to)
  //   t=1: q1 = [1,1 | 1,0], k1 = [L/sqrt2, L/sqrt2 | -sqrt2 L, 0], v1 = [0,4 | 0,8]
  //   head 0 scores (0, q1.k1/sqrt2 = L) -> att = [1/4, 3/4] -> out = [1, 3]
  //   head 1 scores (0, -L)             -> att = [3/4, 1/4] -> out = [6, -1]
  // Without the 1/sqrt(HS) scale head 0 would give att = [1/(1+3^sqrt2), ...] instead.
  const double L = std::log(3.0), r2 = std::sqrt(2.0);
  Vec qkv = {5, -3, 2, 1, /*k0*/ 0, 0, 0, 0, /*v0*/ 4, 0, 8, -4,
             /*q1*/ 1, 1, 1, 0, /*k1*/ L / r2, L / r2, -r2 * L, 0, /*v1*/ 0, 4, 0, 8};
  for (DType dt : kDtypes) {
    SCOPED_TRACE(dtype_name(dt));
    double tol = dt == DType::F32 ? 1e-5 : 1e-13;
    Tensor t = from_doubles(qkv, {1, 2, 12}, dt);
    Tensor out = nans({1, 2, 4}, dt), att = nans({1, 2, 2, 2}, dt);
    attention_forward(out, att, t, 2);
    Vec o = vec(out), a = vec(att);
    Vec eo = {4, 0, 8, -4, 1, 3, 6, -1};
    Vec ea = {1, 0, 0.25, 0.75, /*head 1*/ 1, 0, 0.75, 0.25};
    for (int i = 0; i < 8; ++i) EXPECT_NEAR(o[i], eo[i], tol) << "out[" << i << "]";
    for (int i = 0; i < 8; ++i) EXPECT_NEAR(a[i], ea[i], tol) << "att[" << i << "]";
    EXPECT_EQ(a[1], 0.0);
    EXPECT_EQ(a[5], 0.0);
  }
}

TEST(HandComputed, AttentionOneHeadHeadSizeFour) {
  // NH = 1, HS = 4 (scale 1/2): q1.k1 = 2 ln 3 -> scaled ln 3 -> att row 1 = [1/4, 3/4].
  // Without the scale it would be [1/10, 9/10].
  const double L = std::log(3.0);
  Vec qkv = {0.5, 0.25, -1, 2, /*k0*/ 0, 0, 0, 0, /*v0*/ 4, 8, -4, 0,
             /*q1*/ 1, 1, 0, 0, /*k1*/ L, L, 7, -7, /*v1*/ 0, 4, 0, 8};
  Tensor t = from_doubles(qkv, {1, 2, 12});
  Tensor out = nans({1, 2, 4}, D), att = nans({1, 1, 2, 2}, D);
  attention_forward(out, att, t, 1);
  Vec o = vec(out), a = vec(att);
  Vec eo = {4, 8, -4, 0, 1, 5, -1, 6};
  Vec ea = {1, 0, 0.25, 0.75};
  for (int i = 0; i < 8; ++i) EXPECT_NEAR(o[i], eo[i], 1e-13) << "out[" << i << "]";
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(a[i], ea[i], 1e-13) << "att[" << i << "]";
}

TEST(HandComputed, LayernormOfKnownVectors) {
  // Row 0: x = [1,2,3,4]: mean 2.5, biased var 1.25, rstd = 1/sqrt(1.25 + 1e-5) = 0.894423613312618
  //        (the unbiased variance 5/3 would give 0.7746). w = [1,2,1,-1], b = [0,0,1,0.5]:
  //        out = [-1.5 r, -r, 0.5 r + 1, -1.5 r + 0.5]
  // Row 1: x = [2,2,2,2]: var 0, rstd = 1/sqrt(1e-5) = 316.2277660168379, out = b.
  for (DType dt : kDtypes) {
    SCOPED_TRACE(dtype_name(dt));
    double tol = dt == DType::F32 ? 1e-6 : 1e-13;
    Tensor x = from_doubles({1, 2, 3, 4, 2, 2, 2, 2}, {2, 4}, dt);
    Tensor w = from_doubles({1, 2, 1, -1}, {4}, dt), b = from_doubles({0, 0, 1, 0.5}, {4}, dt);
    Tensor out = nans({2, 4}, dt), mean = nans({2}, dt), rstd = nans({2}, dt);
    layernorm_forward(out, mean, rstd, x, w, b);
    EXPECT_NEAR(get(mean, 0), 2.5, tol);
    EXPECT_NEAR(get(mean, 1), 2.0, tol);
    EXPECT_NEAR(get(rstd, 0), 0.894423613312618, tol);
    EXPECT_NEAR(get(rstd, 1), 316.2277660168379, 316 * tol);
    Vec e = {-1.3416354199689269, -0.894423613312618, 1.447211806656309, -0.8416354199689269, 0, 0, 1, 0.5};
    Vec o = vec(out);
    for (int i = 0; i < 8; ++i) EXPECT_NEAR(o[i], e[i], 2 * tol) << "out[" << i << "]";
  }
}

TEST(HandComputed, ResidualAndEncoderSmallIntegers) {
  Tensor a = from_doubles({1, 2, 3, 4}, {2, 2}), b = from_doubles({10, 20, 30, 40}, {2, 2});
  Tensor out = nans({2, 2}, D);
  residual_forward(out, a, b);
  EXPECT_EQ(vec(out), (Vec{11, 22, 33, 44}));
  Tensor da = from_doubles({1, 1, 1, 1}, {2, 2}), db = from_doubles({0, 0, 0, 0}, {2, 2});
  residual_backward(da, db, a);
  EXPECT_EQ(vec(da), (Vec{2, 3, 4, 5}));
  EXPECT_EQ(vec(db), (Vec{1, 2, 3, 4}));

  // wte rows 0..3 = [0,1],[10,11],[20,21],[30,31]; wpe rows = [100,200],[300,400],[500,600].
  Tensor wte = from_doubles({0, 1, 10, 11, 20, 21, 30, 31}, {4, 2});
  Tensor wpe = from_doubles({100, 200, 300, 400, 500, 600}, {3, 2});
  Tensor tok = tokens({2, 0, 3, 3}, {2, 2});
  Tensor eo = nans({2, 2, 2}, D);
  encoder_forward(eo, tok, wte, wpe);
  EXPECT_EQ(vec(eo), (Vec{120, 221, 300, 401, 130, 231, 330, 431}));
  Tensor dwte = Tensor::zeros({4, 2}, D), dwpe = full({3, 2}, D, 1.0);
  Tensor dout = from_doubles({1, 2, 3, 4, 5, 6, 7, 8}, {2, 2, 2});
  encoder_backward(dwte, dwpe, dout, tok);
  EXPECT_EQ(vec(dwte), (Vec{3, 4, 0, 0, 1, 2, 12, 14}));
  EXPECT_EQ(vec(dwpe), (Vec{7, 9, 11, 13, 1, 1}));
}

// ---- causal masking -------------------------------------------------------------------------------

TEST(CausalMask, FutureTokensNeverChangePastRows) {
  const int64_t B = 2, T = 7, C = 8, NH = 2, ts = 4;
  for (DType dt : kDtypes) {
    SCOPED_TRACE(dtype_name(dt));
    Tensor qkv = randn({B, T, 3 * C}, dt, "causal_qkv");
    Tensor out = nans({B, T, C}, dt), att = nans({B, NH, T, T}, dt);
    attention_forward(out, att, qkv, NH);
    Vec o1 = vec(out);

    // Change q, k and v of token ts (and everything after it) in both sequences.
    Tensor qkv2 = clone(qkv);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t t = ts; t < T; ++t)
        for (int64_t j = 0; j < 3 * C; ++j) {
          int64_t i = (b * T + t) * 3 * C + j;
          set(qkv2, i, get(qkv2, i) * -2.0 + 1.0);
        }
    Tensor out2 = nans({B, T, C}, dt), att2 = nans({B, NH, T, T}, dt);
    attention_forward(out2, att2, qkv2, NH);
    Vec o2 = vec(out2);
    for (int64_t b = 0; b < B; ++b) {
      for (int64_t t = 0; t < ts; ++t)
        for (int64_t c = 0; c < C; ++c)
          EXPECT_EQ(o2[(b * T + t) * C + c], o1[(b * T + t) * C + c]) << "b=" << b << " t=" << t << " c=" << c;
      double diff = 0;
      for (int64_t c = 0; c < C; ++c) diff += std::abs(o2[(b * T + ts) * C + c] - o1[(b * T + ts) * C + c]);
      EXPECT_GT(diff, 1e-3) << "row ts must depend on token ts";
    }

    // att: exactly zero above the diagonal, positive on and below it, rows sum to 1.
    Vec a = vec(att);
    double tol = dt == DType::F32 ? 1e-6 : 1e-14;
    for (int64_t bh = 0; bh < B * NH; ++bh)
      for (int64_t t = 0; t < T; ++t) {
        double s = 0;
        for (int64_t u = 0; u < T; ++u) {
          double x = a[(bh * T + t) * T + u];
          if (u > t) {
            EXPECT_EQ(x, 0.0) << "bh=" << bh << " t=" << t << " u=" << u;
          } else {
            EXPECT_GT(x, 0.0) << "bh=" << bh << " t=" << t << " u=" << u;
          }
          s += x;
        }
        EXPECT_NEAR(s, 1.0, tol) << "bh=" << bh << " t=" << t;
      }
  }
}

TEST(CausalMask, PastRowGradientsNeverReachFutureTokens) {
  // dout non-zero only on rows t < ts: q, k, v of tokens >= ts get exactly zero gradient.
  const int64_t B = 2, T = 7, C = 8, NH = 2, ts = 4;
  Tensor qkv = randn({B, T, 3 * C}, D, "causal_qkv");
  Tensor out = nans({B, T, C}, D), att = nans({B, NH, T, T}, D);
  attention_forward(out, att, qkv, NH);
  Tensor dout = randn({B, T, C}, D, "causal_dout");
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = ts; t < T; ++t)
      for (int64_t c = 0; c < C; ++c) set(dout, (b * T + t) * C + c, 0.0);
  Tensor dqkv = Tensor::zeros({B, T, 3 * C}, D);
  attention_backward(dqkv, dout, qkv, att, NH);
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t t = ts; t < T; ++t)
      for (int64_t j = 0; j < 3 * C; ++j)
        EXPECT_EQ(get(dqkv, (b * T + t) * 3 * C + j), 0.0) << "b=" << b << " t=" << t << " j=" << j;
    // ...while token ts-1's key and value do get a gradient.
    double g = 0;
    for (int64_t j = C; j < 3 * C; ++j) g += std::abs(get(dqkv, (b * T + ts - 1) * 3 * C + j));
    EXPECT_GT(g, 0.0);
  }
}

// ---- in-place aliasing allowed by the contract --------------------------------------------------

TEST(InPlace, SoftmaxProbsOverLogitsAndDlogitsOverProbs) {
  const int64_t B = 2, T = 5, V = 11, Vp = 16;
  for (DType dt : kDtypes) {
    SCOPED_TRACE(dtype_name(dt));
    Tensor logits = randn({B, T, Vp}, dt, "logits", 2.0);
    Tensor tgt = random_tokens({B, T}, V, "tgt");
    const double dloss = 1.0 / (B * T);
    // Out of place.
    Tensor losses = nans({B, T}, dt), probs = nans({B, T, Vp}, dt), dlogits = nans({B, T, Vp}, dt);
    softmax_crossentropy_forward(losses, probs, logits, tgt, V);
    softmax_crossentropy_backward(dlogits, probs, tgt, dloss, V);
    // In place: one buffer goes logits -> probs -> dlogits.
    Tensor buf = clone(logits), losses2 = nans({B, T}, dt);
    softmax_crossentropy_forward(losses2, buf, buf, tgt, V);
    KT_EXPECT_REL_MAX(vec(buf), vec(probs), tol_for(dt));
    KT_EXPECT_REL_MAX(vec(losses2), vec(losses), tol_for(dt));
    softmax_crossentropy_backward(buf, buf, tgt, dloss, V);
    KT_EXPECT_REL_MAX(vec(buf), vec(dlogits), tol_for(dt));
    for (int64_t r = 0; r < B * T; ++r)
      for (int64_t j = V; j < Vp; ++j) EXPECT_EQ(get(buf, r * Vp + j), 0.0);
  }
}

TEST(InPlace, GeluOutOverInp) {
  for (DType dt : kDtypes) {
    SCOPED_TRACE(dtype_name(dt));
    Tensor inp = randn({3, 7, 20}, dt, "gelu_inp", 2.0);
    Tensor out = nans({3, 7, 20}, dt);
    gelu_forward(out, inp);
    Tensor buf = clone(inp);
    gelu_forward(buf, buf);
    KT_EXPECT_REL_MAX(vec(buf), vec(out), tol_for(dt));
  }
}

// ---- views into flat buffers (parameters and gradients live in one buffer) -------------------------

TEST(Views, ParameterAndGradientViewsOfFlatBuffers) {
  // Weights and gradients as views at non-zero offsets of flat buffers, with guard elements between
  // them: results equal those of standalone tensors and the guards are never touched.
  const int64_t B = 2, T = 5, C = 8, OC = 12;
  const DType dt = D;
  Tensor inp = randn({B, T, C}, dt, "view_inp"), dout = randn({B, T, OC}, dt, "view_dout");
  Tensor w = randn({OC, C}, dt, "view_w"), bias = randn({OC}, dt, "view_b");

  const int64_t gap = 3, ow = 5, ob = ow + OC * C + gap, total = ob + OC + gap;
  Tensor params = full({total}, dt, 0.0), grads = full({total}, dt, 7.0);  // guards hold 7
  Tensor pw = params.view(ow, {OC, C}), pb = params.view(ob, {OC});
  pw.copy_from(w);
  pb.copy_from(bias);
  Tensor gw = grads.view(ow, {OC, C}), gb = grads.view(ob, {OC});
  gw.zero_();
  gb.zero_();

  Tensor out_v = nans({B, T, OC}, dt), out_s = nans({B, T, OC}, dt);
  matmul_forward(out_v, inp, pw, pb);
  matmul_forward(out_s, inp, w, bias);
  EXPECT_EQ(vec(out_v), vec(out_s));

  Tensor dinp_v = Tensor::zeros({B, T, C}, dt), dinp_s = Tensor::zeros({B, T, C}, dt);
  Tensor dw_s = Tensor::zeros({OC, C}, dt), db_s = Tensor::zeros({OC}, dt);
  matmul_backward(dinp_v, gw, gb, dout, inp, pw);
  matmul_backward(dinp_s, dw_s, db_s, dout, inp, w);
  KT_EXPECT_REL_MAX(vec(gw), vec(dw_s), 1e-14);
  KT_EXPECT_REL_MAX(vec(gb), vec(db_s), 1e-14);
  KT_EXPECT_REL_MAX(vec(dinp_v), vec(dinp_s), 1e-14);
  Vec g = vec(grads);
  for (int64_t i = 0; i < ow; ++i) EXPECT_EQ(g[i], 7.0) << "guard " << i;
  for (int64_t i = ow + OC * C; i < ob; ++i) EXPECT_EQ(g[i], 7.0) << "guard " << i;
  for (int64_t i = ob + OC; i < total; ++i) EXPECT_EQ(g[i], 7.0) << "guard " << i;

  // The optimizer step on a view leaves the rest of the buffer alone too.
  Tensor m = Tensor::zeros({total}, dt), v = Tensor::zeros({total}, dt);
  Tensor mv = m.view(ow, {OC, C}), vv = v.view(ow, {OC, C});
  Vec before = vec(params);
  adamw_update(pw, gw, mv, vv, AdamWConfig{}, 1, true);
  Vec after = vec(params);
  for (int64_t i = 0; i < total; ++i) {
    if (i < ow || i >= ow + OC * C) {
      EXPECT_EQ(after[i], before[i]) << "param " << i;
    }
  }
}
