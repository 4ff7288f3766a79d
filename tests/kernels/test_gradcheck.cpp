// Finite-difference gradient checks, in double precision, for every backward in ops.hpp.
//
// Method: a random projection loss L = sum(out * R) for a fixed random R (so every output element
// matters), central differences with h = 1e-5 on every input element, relative error
// max|analytic - numeric| / max|numeric| < 1e-6. Every `+=` gradient is pre-filled with random
// values G0 and must come out as G0 + gradient; the one `=` gradient (softmax-cross-entropy) is
// pre-filled with NaN and must be fully overwritten.

#include "kernel_test_util.hpp"

using namespace kt;

namespace {

constexpr int64_t B = 2, T = 5, C = 8, NH = 2, V = 11, Vp = 16, maxT = 7, OC = 12;
constexpr double kTol = 1e-6;
const DType D = DType::F64;

}  // namespace

TEST(GradCheck, EncoderBackward) {
  // Repeated tokens (3 appears four times, 10 twice) exercise the scatter-add; rows of wte that no
  // token uses, the padded rows and the rows of wpe past T must get exactly zero gradient.
  Tensor tok = tokens({3, 7, 3, 0, 10, 10, 3, 5, 1, 3}, {B, T});
  Tensor wte = randn({Vp, C}, D, "wte");
  Tensor wpe = randn({maxT, C}, D, "wpe");
  Tensor R = randn({B, T, C}, D, "R");
  Tensor out = nans({B, T, C}, D);
  auto loss = [&] {
    encoder_forward(out, tok, wte, wpe);
    return dot(out, R);
  };
  Vec ng_wte = numgrad(wte, loss), ng_wpe = numgrad(wpe, loss);

  Tensor g0_wte = randn({Vp, C}, D, "g0_wte"), g0_wpe = randn({maxT, C}, D, "g0_wpe");
  Tensor dwte = clone(g0_wte), dwpe = clone(g0_wpe);
  encoder_backward(dwte, dwpe, R, tok);
  KT_EXPECT_REL_MAX(sub(vec(dwte), vec(g0_wte)), ng_wte, kTol);
  KT_EXPECT_REL_MAX(sub(vec(dwpe), vec(g0_wpe)), ng_wpe, kTol);
  // Untouched rows keep exactly their pre-filled value.
  for (int64_t c = 0; c < C; ++c) {
    EXPECT_EQ(get(dwte, 2 * C + c), get(g0_wte, 2 * C + c));    // token 2 unused
    EXPECT_EQ(get(dwte, 12 * C + c), get(g0_wte, 12 * C + c));  // padded row
    EXPECT_EQ(get(dwpe, 6 * C + c), get(g0_wpe, 6 * C + c));   // position 6 >= T
  }
}

TEST(GradCheck, LayernormBackward) {
  Tensor inp = randn({B, T, C}, D, "ln_inp", 1.5, 0.7);  // non-zero mean
  Tensor w = randn({C}, D, "ln_w", 0.5, 1.0);
  Tensor b = randn({C}, D, "ln_b");
  Tensor R = randn({B, T, C}, D, "R");
  Tensor out = nans({B, T, C}, D), mean = nans({B, T}, D), rstd = nans({B, T}, D);
  auto loss = [&] {
    layernorm_forward(out, mean, rstd, inp, w, b);
    return dot(out, R);
  };
  Vec ng_inp = numgrad(inp, loss), ng_w = numgrad(w, loss), ng_b = numgrad(b, loss);
  loss();  // mean, rstd at the unperturbed point

  Tensor g0_inp = randn({B, T, C}, D, "g0_inp"), g0_w = randn({C}, D, "g0_w"), g0_b = randn({C}, D, "g0_b");
  Tensor dinp = clone(g0_inp), dw = clone(g0_w), db = clone(g0_b);
  layernorm_backward(dinp, dw, db, R, inp, w, mean, rstd);
  KT_EXPECT_REL_MAX(sub(vec(dinp), vec(g0_inp)), ng_inp, kTol);
  KT_EXPECT_REL_MAX(sub(vec(dw), vec(g0_w)), ng_w, kTol);
  KT_EXPECT_REL_MAX(sub(vec(db), vec(g0_b)), ng_b, kTol);
}

TEST(GradCheck, MatmulBackwardWithBias) {
  Tensor inp = randn({B, T, C}, D, "mm_inp");
  Tensor w = randn({OC, C}, D, "mm_w");
  Tensor bias = randn({OC}, D, "mm_b");
  Tensor R = randn({B, T, OC}, D, "R_oc");
  Tensor out = nans({B, T, OC}, D);
  auto loss = [&] {
    matmul_forward(out, inp, w, bias);
    return dot(out, R);
  };
  Vec ng_inp = numgrad(inp, loss), ng_w = numgrad(w, loss), ng_b = numgrad(bias, loss);

  Tensor g0_inp = randn({B, T, C}, D, "g0_inp"), g0_w = randn({OC, C}, D, "g0_w"), g0_b = randn({OC}, D, "g0_b");
  Tensor dinp = clone(g0_inp), dw = clone(g0_w), db = clone(g0_b);
  matmul_backward(dinp, dw, db, R, inp, w);
  KT_EXPECT_REL_MAX(sub(vec(dinp), vec(g0_inp)), ng_inp, kTol);
  KT_EXPECT_REL_MAX(sub(vec(dw), vec(g0_w)), ng_w, kTol);
  KT_EXPECT_REL_MAX(sub(vec(db), vec(g0_b)), ng_b, kTol);
}

TEST(GradCheck, MatmulBackwardWithoutBias) {
  Tensor inp = randn({B, T, C}, D, "mm_inp");
  Tensor w = randn({OC, C}, D, "mm_w");
  Tensor nobias;
  Tensor R = randn({B, T, OC}, D, "R_oc");
  Tensor out = nans({B, T, OC}, D);
  auto loss = [&] {
    matmul_forward(out, inp, w, nobias);
    return dot(out, R);
  };
  Vec ng_inp = numgrad(inp, loss), ng_w = numgrad(w, loss);

  Tensor g0_inp = randn({B, T, C}, D, "g0_inp"), g0_w = randn({OC, C}, D, "g0_w");
  Tensor dinp = clone(g0_inp), dw = clone(g0_w), nodbias;
  matmul_backward(dinp, dw, nodbias, R, inp, w);
  KT_EXPECT_REL_MAX(sub(vec(dinp), vec(g0_inp)), ng_inp, kTol);
  KT_EXPECT_REL_MAX(sub(vec(dw), vec(g0_w)), ng_w, kTol);
}

TEST(GradCheck, MatmulBackwardUndefinedDinp) {
  // The first layer's input needs no gradient: dinp undefined, dweight and dbias still right.
  Tensor inp = randn({B * T, C}, D, "mm_inp");  // 2-D leading shape this time
  Tensor w = randn({OC, C}, D, "mm_w");
  Tensor bias = randn({OC}, D, "mm_b");
  Tensor R = randn({B * T, OC}, D, "R_oc");
  Tensor out = nans({B * T, OC}, D);
  auto loss = [&] {
    matmul_forward(out, inp, w, bias);
    return dot(out, R);
  };
  Vec ng_w = numgrad(w, loss), ng_b = numgrad(bias, loss);

  Tensor g0_w = randn({OC, C}, D, "g0_w"), g0_b = randn({OC}, D, "g0_b");
  Tensor nodinp, dw = clone(g0_w), db = clone(g0_b);
  matmul_backward(nodinp, dw, db, R, inp, w);
  KT_EXPECT_REL_MAX(sub(vec(dw), vec(g0_w)), ng_w, kTol);
  KT_EXPECT_REL_MAX(sub(vec(db), vec(g0_b)), ng_b, kTol);
}

TEST(GradCheck, AttentionBackward) {
  Tensor qkv = randn({B, T, 3 * C}, D, "qkv");
  Tensor R = randn({B, T, C}, D, "R");
  Tensor out = nans({B, T, C}, D), att = nans({B, NH, T, T}, D);
  auto loss = [&] {
    attention_forward(out, att, qkv, NH);
    return dot(out, R);
  };
  Vec ng = numgrad(qkv, loss);
  loss();  // att at the unperturbed point

  Tensor g0 = randn({B, T, 3 * C}, D, "g0_qkv");
  Tensor dqkv = clone(g0);
  attention_backward(dqkv, R, qkv, att, NH);
  KT_EXPECT_REL_MAX(sub(vec(dqkv), vec(g0)), ng, kTol);
}

TEST(GradCheck, AttentionBackwardOneHeadLongerSequence) {
  // NH = 1 (HS = C) and T = 9: a different head split and more masked entries.
  const int64_t t9 = 9;
  Tensor qkv = randn({1, t9, 3 * C}, D, "qkv9");
  Tensor R = randn({1, t9, C}, D, "R9");
  Tensor out = nans({1, t9, C}, D), att = nans({1, 1, t9, t9}, D);
  auto loss = [&] {
    attention_forward(out, att, qkv, 1);
    return dot(out, R);
  };
  Vec ng = numgrad(qkv, loss);
  loss();
  Tensor g0 = randn({1, t9, 3 * C}, D, "g0_qkv9");
  Tensor dqkv = clone(g0);
  attention_backward(dqkv, R, qkv, att, 1);
  KT_EXPECT_REL_MAX(sub(vec(dqkv), vec(g0)), ng, kTol);
}

TEST(GradCheck, GeluBackward) {
  Tensor inp = randn({B, T, C}, D, "gelu_inp", 2.0);  // reaches the saturated tails
  Tensor R = randn({B, T, C}, D, "R");
  Tensor out = nans({B, T, C}, D);
  auto loss = [&] {
    gelu_forward(out, inp);
    return dot(out, R);
  };
  Vec ng = numgrad(inp, loss);
  Tensor g0 = randn({B, T, C}, D, "g0_inp");
  Tensor dinp = clone(g0);
  gelu_backward(dinp, inp, R);
  KT_EXPECT_REL_MAX(sub(vec(dinp), vec(g0)), ng, kTol);
}

TEST(GradCheck, ResidualBackward) {
  Tensor a = randn({B, T, C}, D, "res_a"), b = randn({B, T, C}, D, "res_b");
  Tensor R = randn({B, T, C}, D, "R");
  Tensor out = nans({B, T, C}, D);
  auto loss = [&] {
    residual_forward(out, a, b);
    return dot(out, R);
  };
  Vec ng_a = numgrad(a, loss), ng_b = numgrad(b, loss);
  Tensor g0_a = randn({B, T, C}, D, "g0_a"), g0_b = randn({B, T, C}, D, "g0_b");
  Tensor da = clone(g0_a), db = clone(g0_b);
  residual_backward(da, db, R);
  KT_EXPECT_REL_MAX(sub(vec(da), vec(g0_a)), ng_a, kTol);
  KT_EXPECT_REL_MAX(sub(vec(db), vec(g0_b)), ng_b, kTol);
}

TEST(GradCheck, SoftmaxCrossEntropyBackward) {
  // L = dloss * sum of the per-position losses (the backward takes one scalar dloss).
  const double dloss = 0.37;
  Tensor logits = randn({B, T, Vp}, D, "logits", 2.0);
  // Large values in the padded columns: any kernel that lets them into the softmax is far off.
  for (int64_t r = 0; r < B * T; ++r)
    for (int64_t j = V; j < Vp; ++j) set(logits, r * Vp + j, 30.0 + r + j);
  Tensor tgt = tokens({0, 10, 3, 3, 7, 1, 10, 0, 5, 9}, {B, T});  // includes 0 and V-1
  Tensor losses = nans({B, T}, D), probs = nans({B, T, Vp}, D);
  auto loss = [&] {
    softmax_crossentropy_forward(losses, probs, logits, tgt, V);
    Vec l = vec(losses);
    double s = 0;
    for (double x : l) s += x;
    return dloss * s;
  };
  Vec ng = numgrad(logits, loss);
  loss();

  Tensor dlogits = nans({B, T, Vp}, D);  // `=`: whatever was there must not matter
  softmax_crossentropy_backward(dlogits, probs, tgt, dloss, V);
  KT_EXPECT_REL_MAX(vec(dlogits), ng, kTol);
  for (int64_t r = 0; r < B * T; ++r)
    for (int64_t j = V; j < Vp; ++j) EXPECT_EQ(get(dlogits, r * Vp + j), 0.0) << "padded column " << j;

  // Overwrite, not accumulate: a second call gives the same values.
  Vec first = vec(dlogits);
  softmax_crossentropy_backward(dlogits, probs, tgt, dloss, V);
  EXPECT_EQ(vec(dlogits), first);
}

TEST(GradCheck, BackwardsAccumulateAcrossCalls) {
  // Two backward calls on zeroed gradients give exactly twice one call (gradient accumulation).
  Tensor inp = randn({B, T, C}, D, "ln_inp"), w = randn({C}, D, "ln_w", 0.5, 1.0), b = randn({C}, D, "ln_b");
  Tensor R = randn({B, T, C}, D, "R");
  Tensor out = Tensor::zeros({B, T, C}, D), mean = Tensor::zeros({B, T}, D), rstd = Tensor::zeros({B, T}, D);
  layernorm_forward(out, mean, rstd, inp, w, b);
  Tensor d1 = Tensor::zeros({B, T, C}, D), dw1 = Tensor::zeros({C}, D), db1 = Tensor::zeros({C}, D);
  Tensor d2 = Tensor::zeros({B, T, C}, D), dw2 = Tensor::zeros({C}, D), db2 = Tensor::zeros({C}, D);
  layernorm_backward(d1, dw1, db1, R, inp, w, mean, rstd);
  layernorm_backward(d2, dw2, db2, R, inp, w, mean, rstd);
  layernorm_backward(d2, dw2, db2, R, inp, w, mean, rstd);
  scale_(d1, 2.0);
  scale_(dw1, 2.0);
  scale_(db1, 2.0);
  KT_EXPECT_REL_MAX(vec(d2), vec(d1), 1e-14);
  KT_EXPECT_REL_MAX(vec(dw2), vec(dw1), 1e-14);
  KT_EXPECT_REL_MAX(vec(db2), vec(db1), 1e-14);

  Tensor qkv = randn({B, T, 3 * C}, D, "qkv"), att = Tensor::zeros({B, NH, T, T}, D);
  attention_forward(out, att, qkv, NH);
  Tensor q1 = Tensor::zeros({B, T, 3 * C}, D), q2 = Tensor::zeros({B, T, 3 * C}, D);
  attention_backward(q1, R, qkv, att, NH);
  attention_backward(q2, R, qkv, att, NH);
  attention_backward(q2, R, qkv, att, NH);
  scale_(q1, 2.0);
  KT_EXPECT_REL_MAX(vec(q2), vec(q1), 1e-14);
}
