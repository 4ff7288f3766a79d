// Every forward, in double, against a straightforward loop implementation written here from the
// formulas in ops.hpp, at a medium shape (odd T, several heads, padded vocabulary). These pin the
// semantics a finite-difference check cannot see: memory layouts (q|k|v and heads inside qkv, the
// [OC,C] weight), the 1/sqrt(HS) scale, the biased variance and eps of layernorm, GELU's constants.
// Outputs are pre-filled with NaN, so a forward must write every element.

#include "kernel_test_util.hpp"

using namespace kt;

namespace {

constexpr int64_t B = 2, T = 17, C = 48, NH = 4, HS = C / NH, V = 50, Vp = 64, maxT = 20, OC = 3 * C;
constexpr double kTol = 1e-12;
const DType D = DType::F64;

}  // namespace

TEST(ReferenceForward, Encoder) {
  Tensor tok = random_tokens({B, T}, V, "tok");
  Tensor wte = randn({Vp, C}, D, "wte"), wpe = randn({maxT, C}, D, "wpe");
  Tensor out = nans({B, T, C}, D);
  encoder_forward(out, tok, wte, wpe);
  Vec ref(B * T * C);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < T; ++t) {
      int64_t ix = static_cast<int64_t>(get(tok, b * T + t));
      for (int64_t c = 0; c < C; ++c) ref[(b * T + t) * C + c] = get(wte, ix * C + c) + get(wpe, t * C + c);
    }
  KT_EXPECT_REL_MAX(vec(out), ref, kTol);
}

TEST(ReferenceForward, Layernorm) {
  Tensor inp = randn({B, T, C}, D, "ln_inp", 2.0, -0.3);
  Tensor w = randn({C}, D, "ln_w", 0.5, 1.0), b = randn({C}, D, "ln_b");
  Tensor out = nans({B, T, C}, D), mean = nans({B, T}, D), rstd = nans({B, T}, D);
  layernorm_forward(out, mean, rstd, inp, w, b);
  Vec ref(B * T * C), rm(B * T), rs(B * T);
  for (int64_t r = 0; r < B * T; ++r) {
    double m = 0, v = 0;
    for (int64_t c = 0; c < C; ++c) m += get(inp, r * C + c);
    m /= C;
    for (int64_t c = 0; c < C; ++c) v += (get(inp, r * C + c) - m) * (get(inp, r * C + c) - m);
    v /= C;  // biased
    double s = 1.0 / std::sqrt(v + 1e-5);
    rm[r] = m;
    rs[r] = s;
    for (int64_t c = 0; c < C; ++c) ref[r * C + c] = (get(inp, r * C + c) - m) * s * get(w, c) + get(b, c);
  }
  KT_EXPECT_REL_MAX(vec(out), ref, kTol);
  KT_EXPECT_REL_MAX(vec(mean), rm, kTol);
  KT_EXPECT_REL_MAX(vec(rstd), rs, kTol);
}

TEST(ReferenceForward, MatmulWithAndWithoutBias) {
  Tensor inp = randn({B, T, C}, D, "mm_inp"), w = randn({OC, C}, D, "mm_w"), bias = randn({OC}, D, "mm_b");
  Vec ref(B * T * OC), refnb(B * T * OC);
  for (int64_t n = 0; n < B * T; ++n)
    for (int64_t o = 0; o < OC; ++o) {
      double s = 0;
      for (int64_t c = 0; c < C; ++c) s += get(inp, n * C + c) * get(w, o * C + c);
      refnb[n * OC + o] = s;
      ref[n * OC + o] = s + get(bias, o);
    }
  Tensor out = nans({B, T, OC}, D);
  matmul_forward(out, inp, w, bias);
  KT_EXPECT_REL_MAX(vec(out), ref, kTol);
  Tensor out2 = nans({B, T, OC}, D);
  matmul_forward(out2, inp, w, Tensor());
  KT_EXPECT_REL_MAX(vec(out2), refnb, kTol);
  // Any leading shape: [N, C] -> [N, OC] gives the same numbers.
  Tensor out3 = nans({B * T, OC}, D);
  matmul_forward(out3, inp.reshape({B * T, C}), w, bias);
  KT_EXPECT_REL_MAX(vec(out3), ref, kTol);
}

TEST(ReferenceForward, Attention) {
  Tensor qkv = randn({B, T, 3 * C}, D, "qkv", 1.5);
  Tensor out = nans({B, T, C}, D), att = nans({B, NH, T, T}, D);
  attention_forward(out, att, qkv, NH);
  Vec ref(B * T * C), ratt(B * NH * T * T, 0.0);
  auto q = [&](int64_t b, int64_t t, int64_t h, int64_t d) { return get(qkv, (b * T + t) * 3 * C + h * HS + d); };
  auto k = [&](int64_t b, int64_t t, int64_t h, int64_t d) { return get(qkv, (b * T + t) * 3 * C + C + h * HS + d); };
  auto v = [&](int64_t b, int64_t t, int64_t h, int64_t d) { return get(qkv, (b * T + t) * 3 * C + 2 * C + h * HS + d); };
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < NH; ++h)
      for (int64_t t = 0; t < T; ++t) {
        Vec s(t + 1);
        double mx = -1e300;
        for (int64_t u = 0; u <= t; ++u) {
          double x = 0;
          for (int64_t d = 0; d < HS; ++d) x += q(b, t, h, d) * k(b, u, h, d);
          s[u] = x / std::sqrt(static_cast<double>(HS));
          mx = std::max(mx, s[u]);
        }
        double z = 0;
        for (int64_t u = 0; u <= t; ++u) z += (s[u] = std::exp(s[u] - mx));
        for (int64_t u = 0; u <= t; ++u) ratt[((b * NH + h) * T + t) * T + u] = s[u] / z;
        for (int64_t d = 0; d < HS; ++d) {
          double o = 0;
          for (int64_t u = 0; u <= t; ++u) o += s[u] / z * v(b, u, h, d);
          ref[(b * T + t) * C + h * HS + d] = o;
        }
      }
  KT_EXPECT_REL_MAX(vec(out), ref, kTol);
  KT_EXPECT_REL_MAX(vec(att), ratt, kTol);
}

TEST(ReferenceForward, Gelu) {
  Tensor inp = randn({B, T, C}, D, "gelu_inp", 3.0);
  Tensor out = nans({B, T, C}, D);
  gelu_forward(out, inp);
  Vec x = vec(inp), ref(x.size());
  const double s = std::sqrt(2.0 / M_PI);
  for (size_t i = 0; i < x.size(); ++i) ref[i] = 0.5 * x[i] * (1 + std::tanh(s * (x[i] + 0.044715 * x[i] * x[i] * x[i])));
  KT_EXPECT_REL_MAX(vec(out), ref, kTol);
  // A few values by hand: gelu(0) = 0, gelu(1) = 0.841191990..., gelu(-1) = -0.158808009...
  Tensor three = from_doubles({0.0, 1.0, -1.0}, {3}), o3 = nans({3}, D);
  gelu_forward(o3, three);
  EXPECT_EQ(get(o3, 0), 0.0);
  EXPECT_NEAR(get(o3, 1), 0.8411919906082768, 1e-14);
  EXPECT_NEAR(get(o3, 2), -0.15880800939172324, 1e-14);
}

TEST(ReferenceForward, Residual) {
  Tensor a = randn({B, T, C}, D, "res_a"), b = randn({B, T, C}, D, "res_b");
  Tensor out = nans({B, T, C}, D);
  residual_forward(out, a, b);
  Vec x = vec(a), y = vec(b), ref(x.size());
  for (size_t i = 0; i < x.size(); ++i) ref[i] = x[i] + y[i];
  EXPECT_EQ(vec(out), ref);
}

TEST(ReferenceForward, SoftmaxCrossEntropy) {
  Tensor logits = randn({B, T, Vp}, D, "logits", 3.0);
  Tensor tgt = random_tokens({B, T}, V, "tgt");
  Tensor losses = nans({B, T}, D), probs = nans({B, T, Vp}, D);
  softmax_crossentropy_forward(losses, probs, logits, tgt, V);
  Vec rp(B * T * Vp, 0.0), rl(B * T);
  for (int64_t r = 0; r < B * T; ++r) {
    double mx = -1e300, z = 0;
    for (int64_t j = 0; j < V; ++j) mx = std::max(mx, get(logits, r * Vp + j));
    for (int64_t j = 0; j < V; ++j) z += std::exp(get(logits, r * Vp + j) - mx);
    for (int64_t j = 0; j < V; ++j) rp[r * Vp + j] = std::exp(get(logits, r * Vp + j) - mx) / z;
    int64_t y = static_cast<int64_t>(get(tgt, r));
    rl[r] = mx + std::log(z) - get(logits, r * Vp + y);
  }
  KT_EXPECT_REL_MAX(vec(probs), rp, kTol);
  KT_EXPECT_REL_MAX(vec(losses), rl, kTol);

  // Backward against (probs - onehot) * dloss, padded columns 0.
  const double dloss = 1.0 / (B * T);
  Tensor dlogits = nans({B, T, Vp}, D);
  softmax_crossentropy_backward(dlogits, probs, tgt, dloss, V);
  Vec rd(B * T * Vp, 0.0);
  for (int64_t r = 0; r < B * T; ++r)
    for (int64_t j = 0; j < V; ++j)
      rd[r * Vp + j] = (rp[r * Vp + j] - (j == static_cast<int64_t>(get(tgt, r)) ? 1.0 : 0.0)) * dloss;
  KT_EXPECT_REL_MAX(vec(dlogits), rd, kTol);
}

TEST(ReferenceBackward, EncoderManyRepeatedTokens) {
  // Every position uses the same token: an unsynchronised parallel scatter-add would lose updates.
  const int64_t b = 8, t = 64, c = 32;
  Tensor tok = tokens(std::vector<int32_t>(b * t, 5), {b, t});
  Tensor dout = randn({b, t, c}, D, "enc_dout");
  Tensor dwte = Tensor::zeros({Vp, c}, D), dwpe = Tensor::zeros({t, c}, D);
  encoder_backward(dwte, dwpe, dout, tok);
  Vec rte(Vp * c, 0.0), rpe(t * c, 0.0);
  for (int64_t i = 0; i < b; ++i)
    for (int64_t j = 0; j < t; ++j)
      for (int64_t k = 0; k < c; ++k) {
        double g = get(dout, (i * t + j) * c + k);
        rte[5 * c + k] += g;
        rpe[j * c + k] += g;
      }
  KT_EXPECT_REL_MAX(vec(dwte), rte, 1e-12);
  KT_EXPECT_REL_MAX(vec(dwpe), rpe, 1e-12);
}
