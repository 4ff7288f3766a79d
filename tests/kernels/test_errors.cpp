// Shape, dtype and device mismatches throw sgpt::Error whose message names the op.

#include "kernel_test_util.hpp"

using namespace kt;

namespace {

constexpr int64_t B = 2, T = 5, C = 8, NH = 2, V = 11, Vp = 16, maxT = 7;
const DType D = DType::F64, F = DType::F32;

Tensor z(const Shape& s, DType dt = D) { return Tensor::zeros(s, dt); }

}  // namespace

#define KT_EXPECT_OP_ERROR(op, call) expect_error_naming([&] { call; }, op, #call)

TEST(OpErrors, Encoder) {
  Tensor tok = random_tokens({B, T}, V, "tok"), out = z({B, T, C}), wte = z({Vp, C}), wpe = z({maxT, C});
  encoder_forward(out, tok, wte, wpe);  // the good call works
  Tensor ftok = z({B, T}, F), wte_c = z({Vp, C + 1}), short_wpe = z({T - 1, C}), out32 = z({B, T, C}, F);
  KT_EXPECT_OP_ERROR("encoder_forward", encoder_forward(out, ftok, wte, wpe));
  KT_EXPECT_OP_ERROR("encoder_forward", encoder_forward(out, tok, wte_c, wpe));
  KT_EXPECT_OP_ERROR("encoder_forward", encoder_forward(out, tok, wte, short_wpe));
  KT_EXPECT_OP_ERROR("encoder_forward", encoder_forward(out32, tok, wte, wpe));
  Tensor dwte = z({Vp, C}), dwpe = z({maxT, C}), dout = z({B, T, C}), dwpe_c = z({maxT, C - 1});
  encoder_backward(dwte, dwpe, dout, tok);
  KT_EXPECT_OP_ERROR("encoder_backward", encoder_backward(dwte, dwpe_c, dout, tok));
  KT_EXPECT_OP_ERROR("encoder_backward", encoder_backward(dwte, dwpe, dout, ftok));
  Tensor dwte32 = z({Vp, C}, F);
  KT_EXPECT_OP_ERROR("encoder_backward", encoder_backward(dwte32, dwpe, dout, tok));
}

TEST(OpErrors, Layernorm) {
  Tensor out = z({B, T, C}), mean = z({B, T}), rstd = z({B, T}), inp = z({B, T, C}), w = z({C}), b = z({C});
  layernorm_forward(out, mean, rstd, inp, w, b);
  Tensor w_bad = z({C + 1}), mean_bad = z({B, T + 1}), w32 = z({C}, F), out_bad = z({B, T, C + 1});
  KT_EXPECT_OP_ERROR("layernorm_forward", layernorm_forward(out, mean, rstd, inp, w_bad, b));
  KT_EXPECT_OP_ERROR("layernorm_forward", layernorm_forward(out, mean_bad, rstd, inp, w, b));
  KT_EXPECT_OP_ERROR("layernorm_forward", layernorm_forward(out, mean, rstd, inp, w32, b));
  KT_EXPECT_OP_ERROR("layernorm_forward", layernorm_forward(out_bad, mean, rstd, inp, w, b));
  Tensor dinp = z({B, T, C}), dw = z({C}), db = z({C}), dout = z({B, T, C});
  layernorm_backward(dinp, dw, db, dout, inp, w, mean, rstd);
  Tensor dw_bad = z({C - 1}), dinp32 = z({B, T, C}, F), dout_bad = z({B, T + 1, C});
  KT_EXPECT_OP_ERROR("layernorm_backward", layernorm_backward(dinp, dw_bad, db, dout, inp, w, mean, rstd));
  KT_EXPECT_OP_ERROR("layernorm_backward", layernorm_backward(dinp32, dw, db, dout, inp, w, mean, rstd));
  KT_EXPECT_OP_ERROR("layernorm_backward", layernorm_backward(dinp, dw, db, dout_bad, inp, w, mean, rstd));
}

TEST(OpErrors, Matmul) {
  const int64_t OC = 12;
  Tensor out = z({B, T, OC}), inp = z({B, T, C}), w = z({OC, C}), bias = z({OC});
  matmul_forward(out, inp, w, bias);
  Tensor w_bad = z({OC, C + 1}), bias_bad = z({OC + 1}), out_bad = z({B, T, OC - 1}), bias32 = z({OC}, F);
  KT_EXPECT_OP_ERROR("matmul_forward", matmul_forward(out, inp, w_bad, bias));
  KT_EXPECT_OP_ERROR("matmul_forward", matmul_forward(out, inp, w, bias_bad));
  KT_EXPECT_OP_ERROR("matmul_forward", matmul_forward(out_bad, inp, w, bias));
  KT_EXPECT_OP_ERROR("matmul_forward", matmul_forward(out, inp, w, bias32));
  Tensor dinp = z({B, T, C}), dw = z({OC, C}), db = z({OC}), dout = z({B, T, OC});
  matmul_backward(dinp, dw, db, dout, inp, w);
  Tensor dw_bad = z({OC, C + 1}), db_bad = z({C}), dout32 = z({B, T, OC}, F), dinp_bad = z({B, T, C + 2});
  KT_EXPECT_OP_ERROR("matmul_backward", matmul_backward(dinp, dw_bad, db, dout, inp, w));
  KT_EXPECT_OP_ERROR("matmul_backward", matmul_backward(dinp, dw, db_bad, dout, inp, w));
  KT_EXPECT_OP_ERROR("matmul_backward", matmul_backward(dinp, dw, db, dout32, inp, w));
  KT_EXPECT_OP_ERROR("matmul_backward", matmul_backward(dinp_bad, dw, db, dout, inp, w));
}

TEST(OpErrors, Attention) {
  Tensor out = z({B, T, C}), att = z({B, NH, T, T}), qkv = z({B, T, 3 * C});
  attention_forward(out, att, qkv, NH);
  Tensor att_bad = z({B, NH + 1, T, T}), qkv_bad = z({B, T, 2 * C}), qkv32 = z({B, T, 3 * C}, F);
  KT_EXPECT_OP_ERROR("attention_forward", attention_forward(out, att_bad, qkv, NH));
  KT_EXPECT_OP_ERROR("attention_forward", attention_forward(out, att, qkv_bad, NH));
  KT_EXPECT_OP_ERROR("attention_forward", attention_forward(out, att, qkv32, NH));
  Tensor att3 = z({B, 3, T, T});
  KT_EXPECT_OP_ERROR("attention_forward", attention_forward(out, att3, qkv, 3));  // C=8 not divisible by 3
  Tensor dqkv = z({B, T, 3 * C}), dout = z({B, T, C});
  attention_backward(dqkv, dout, qkv, att, NH);
  Tensor dqkv_bad = z({B, T, C}), dout32 = z({B, T, C}, F);
  KT_EXPECT_OP_ERROR("attention_backward", attention_backward(dqkv_bad, dout, qkv, att, NH));
  KT_EXPECT_OP_ERROR("attention_backward", attention_backward(dqkv, dout32, qkv, att, NH));
  KT_EXPECT_OP_ERROR("attention_backward", attention_backward(dqkv, dout, qkv, att_bad, NH));
}

TEST(OpErrors, GeluAndResidual) {
  Tensor a = z({B, T, C}), b = z({B, T, C}), out = z({B, T, C}), bad = z({B, T, C + 1}), a32 = z({B, T, C}, F);
  KT_EXPECT_OP_ERROR("gelu_forward", gelu_forward(bad, a));
  KT_EXPECT_OP_ERROR("gelu_forward", gelu_forward(out, a32));
  KT_EXPECT_OP_ERROR("gelu_backward", gelu_backward(bad, a, b));
  KT_EXPECT_OP_ERROR("gelu_backward", gelu_backward(out, a, a32));
  KT_EXPECT_OP_ERROR("residual_forward", residual_forward(out, a, bad));
  KT_EXPECT_OP_ERROR("residual_forward", residual_forward(out, a32, b));
}

TEST(OpErrors, ResidualBackwardNamesItself) {
  Tensor a = z({B, T, C}), b = z({B, T, C}), dout = z({B, T, C}), bad = z({B, T, C + 1}), a32 = z({B, T, C}, F);
  KT_EXPECT_OP_ERROR("residual_backward", residual_backward(a, bad, dout));
  KT_EXPECT_OP_ERROR("residual_backward", residual_backward(a32, b, dout));
  // A rejected call leaves its outputs untouched (da must not be updated when db is bad).
  Tensor da = full({B, T, C}, D, 1.0), ones = full({B, T, C}, D, 1.0);
  try {
    residual_backward(da, bad, ones);
  } catch (const Error&) {
  }
  EXPECT_EQ(vec(da), Vec(B * T * C, 1.0)) << "da was modified by a call that threw";
}

TEST(OpErrors, TransposedShapesWithEqualNumel) {
  // Same number of elements, wrong shape: [C,OC] for dweight [OC,C], [T,B,C] for out [B,T,C] of
  // the encoder, [C] weights against a [B,T,C] layernorm input read as [T,B,C]. The contract
  // promises shape checks, not only element counts.
  const int64_t OC = 12;
  Tensor inp = z({B, T, C}), w = z({OC, C}), dout = z({B, T, OC}), dinp = z({B, T, C}), db = z({OC});
  Tensor dw_t = z({C, OC});
  KT_EXPECT_OP_ERROR("matmul_backward", matmul_backward(dinp, dw_t, db, dout, inp, w));
  Tensor w_t = z({C, OC}), out = z({B, T, OC}), bias = z({OC});
  KT_EXPECT_OP_ERROR("matmul_forward", matmul_forward(out, inp, w_t, bias));
  Tensor tok = random_tokens({B, T}, V, "tok"), eo_t = z({T, B, C}), wte = z({Vp, C}), wpe = z({maxT, C});
  KT_EXPECT_OP_ERROR("encoder_forward", encoder_forward(eo_t, tok, wte, wpe));
}

TEST(OpErrors, SoftmaxCrossEntropy) {
  Tensor losses = z({B, T}), probs = z({B, T, Vp}), logits = z({B, T, Vp}), tgt = random_tokens({B, T}, V, "tgt");
  softmax_crossentropy_forward(losses, probs, logits, tgt, V);
  Tensor ftgt = z({B, T}, F), losses_bad = z({B, T + 1}), probs32 = z({B, T, Vp}, F);
  KT_EXPECT_OP_ERROR("softmax_crossentropy_forward", softmax_crossentropy_forward(losses, probs, logits, ftgt, V));
  KT_EXPECT_OP_ERROR("softmax_crossentropy_forward",
                     softmax_crossentropy_forward(losses_bad, probs, logits, tgt, V));
  KT_EXPECT_OP_ERROR("softmax_crossentropy_forward", softmax_crossentropy_forward(losses, probs32, logits, tgt, V));
  KT_EXPECT_OP_ERROR("softmax_crossentropy_forward",
                     softmax_crossentropy_forward(losses, probs, logits, tgt, Vp + 1));  // V > Vp
  Tensor dlogits = z({B, T, Vp}), dlogits_bad = z({B, T, V});
  softmax_crossentropy_backward(dlogits, probs, tgt, 1.0, V);
  KT_EXPECT_OP_ERROR("softmax_crossentropy_backward",
                     softmax_crossentropy_backward(dlogits_bad, probs, tgt, 1.0, V));
  KT_EXPECT_OP_ERROR("softmax_crossentropy_backward", softmax_crossentropy_backward(dlogits, probs, ftgt, 1.0, V));
}

TEST(OpErrors, HelpersAndAdamW) {
  Tensor y = z({10}), x = z({10}), x_bad = z({11}), x32 = z({10}, F);
  KT_EXPECT_OP_ERROR("axpy", axpy_(y, 1.0, x_bad));
  KT_EXPECT_OP_ERROR("axpy", axpy_(y, 1.0, x32));
  Tensor p = z({10}), g = z({10}), m = z({10}), v = z({10}), m_bad = z({9}), g32 = z({10}, F);
  AdamWConfig cfg;
  adamw_update(p, g, m, v, cfg, 1, true);
  KT_EXPECT_OP_ERROR("adamw", adamw_update(p, g, m_bad, v, cfg, 1, true));
  KT_EXPECT_OP_ERROR("adamw", adamw_update(p, g32, m, v, cfg, 1, true));
}

TEST(OpErrors, DeviceMismatch) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device: a device mismatch cannot be built";
  Tensor a = z({B, T, C}, F), b = z({B, T, C}, F).to(Device::CUDA), out = z({B, T, C}, F);
  KT_EXPECT_OP_ERROR("residual_forward", residual_forward(out, a, b));
  Tensor w = z({C}, F), bias = z({C}, F).to(Device::CUDA), mean = z({B, T}, F), rstd = z({B, T}, F);
  KT_EXPECT_OP_ERROR("layernorm_forward", layernorm_forward(out, mean, rstd, a, w, bias));
  Tensor wm = z({C, C}, F).to(Device::CUDA);
  KT_EXPECT_OP_ERROR("matmul_forward", matmul_forward(out, a, wm, Tensor()));
}

TEST(OpErrors, TokenAndTargetRanges) {
  // Out-of-range ids would read or write outside wte / probs: each op rejects them by name.
  Tensor wte = z({Vp, C}), wpe = z({maxT, C}), out = z({B, T, C});
  std::vector<int32_t> ids(B * T, 1);
  ids[7] = static_cast<int32_t>(Vp);
  Tensor tok_hi = tokens(ids, {B, T});
  ids[7] = -1;
  Tensor tok_neg = tokens(ids, {B, T});
  KT_EXPECT_OP_ERROR("encoder_forward", encoder_forward(out, tok_hi, wte, wpe));
  KT_EXPECT_OP_ERROR("encoder_forward", encoder_forward(out, tok_neg, wte, wpe));

  Tensor losses = z({B, T}), probs = z({B, T, Vp}), logits = z({B, T, Vp});
  ids[7] = static_cast<int32_t>(V);  // a padded column is not a valid target
  Tensor tgt_pad = tokens(ids, {B, T});
  ids[7] = -1;
  Tensor tgt_neg = tokens(ids, {B, T});
  KT_EXPECT_OP_ERROR("softmax_crossentropy_forward", softmax_crossentropy_forward(losses, probs, logits, tgt_pad, V));
  KT_EXPECT_OP_ERROR("softmax_crossentropy_forward", softmax_crossentropy_forward(losses, probs, logits, tgt_neg, V));
  Tensor dlogits = z({B, T, Vp});
  KT_EXPECT_OP_ERROR("softmax_crossentropy_backward", softmax_crossentropy_backward(dlogits, probs, tgt_pad, 1.0, V));
}

TEST(OpErrors, EncoderBackwardRejectsOutOfRangeTokens) {
  // dwte is a view into a larger buffer, so an unchecked scatter lands in memory we own (and is
  // detected) instead of corrupting the heap.
  Tensor big = z({2 * Vp, C});
  Tensor dwte = big.view(0, {Vp, C}), dwpe = z({maxT, C}), dout = full({B, T, C}, D, 1.0);
  std::vector<int32_t> ids(B * T, 1);
  ids[7] = static_cast<int32_t>(Vp);
  Tensor tok_hi = tokens(ids, {B, T});
  KT_EXPECT_OP_ERROR("encoder_backward", encoder_backward(dwte, dwpe, dout, tok_hi));
  Vec tail = vec(big.view(Vp * C, {Vp, C}));
  EXPECT_EQ(tail, Vec(Vp * C, 0.0)) << "encoder_backward wrote past the end of dwte";
}
