// f32 against f64 for every op, forward and backward, at a medium shape with odd T.
// Inputs are f32-representable, so both runs see identical numbers; the error measured is the
// f32 arithmetic's alone: relative norm error ||f32 - f64|| / ||f64||, tolerance stated per op.
//   element-wise ops (encoder, residual, gelu, axpy, scale, adamw):  1e-6
//   ops with reductions (layernorm, matmul, attention, softmax-xent): 1e-5

#include <functional>
#include <utility>

#include "kernel_test_util.hpp"

using namespace kt;

namespace {

constexpr int64_t B = 2, T = 17, C = 48, NH = 4, V = 50, Vp = 64, maxT = 20, OC = 4 * C;
constexpr double kElementwiseTol = 1e-6, kReductionTol = 1e-5;

using Outs = std::vector<std::pair<std::string, Vec>>;

void compare_f32_f64(const std::function<Outs(DType)>& run, double tol) {
  Outs f = run(DType::F32), d = run(DType::F64);
  ASSERT_EQ(f.size(), d.size());
  for (size_t i = 0; i < f.size(); ++i) {
    double err = rel_norm_err(f[i].second, d[i].second);
    EXPECT_LT(err, tol) << f[i].first << ": " << worst(f[i].second, d[i].second);
  }
}

Tensor in(const Shape& s, DType dt, const std::string& name, double scale = 1.0, double offset = 0.0) {
  return randn_f32exact(s, dt, name, scale, offset);
}

}  // namespace

TEST(FloatVsDouble, Encoder) {
  compare_f32_f64([](DType dt) {
    Tensor tok = random_tokens({B, T}, V, "tok");
    Tensor wte = in({Vp, C}, dt, "wte"), wpe = in({maxT, C}, dt, "wpe"), dout = in({B, T, C}, dt, "dout");
    Tensor out = Tensor::zeros({B, T, C}, dt);
    encoder_forward(out, tok, wte, wpe);
    Tensor dwte = Tensor::zeros({Vp, C}, dt), dwpe = Tensor::zeros({maxT, C}, dt);
    encoder_backward(dwte, dwpe, dout, tok);
    return Outs{{"out", vec(out)}, {"dwte", vec(dwte)}, {"dwpe", vec(dwpe)}};
  }, kElementwiseTol);
}

TEST(FloatVsDouble, Layernorm) {
  compare_f32_f64([](DType dt) {
    Tensor inp = in({B, T, C}, dt, "ln_inp", 2.0, 0.5), w = in({C}, dt, "ln_w", 0.5, 1.0), b = in({C}, dt, "ln_b");
    Tensor dout = in({B, T, C}, dt, "dout");
    Tensor out = Tensor::zeros({B, T, C}, dt), mean = Tensor::zeros({B, T}, dt), rstd = Tensor::zeros({B, T}, dt);
    layernorm_forward(out, mean, rstd, inp, w, b);
    Tensor dinp = Tensor::zeros({B, T, C}, dt), dw = Tensor::zeros({C}, dt), db = Tensor::zeros({C}, dt);
    layernorm_backward(dinp, dw, db, dout, inp, w, mean, rstd);
    return Outs{{"out", vec(out)}, {"mean", vec(mean)}, {"rstd", vec(rstd)},
                {"dinp", vec(dinp)}, {"dweight", vec(dw)}, {"dbias", vec(db)}};
  }, kReductionTol);
}

TEST(FloatVsDouble, Matmul) {
  compare_f32_f64([](DType dt) {
    Tensor inp = in({B, T, C}, dt, "mm_inp"), w = in({OC, C}, dt, "mm_w", 0.2), bias = in({OC}, dt, "mm_b");
    Tensor dout = in({B, T, OC}, dt, "dout_oc");
    Tensor out = Tensor::zeros({B, T, OC}, dt), out_nb = Tensor::zeros({B, T, OC}, dt);
    matmul_forward(out, inp, w, bias);
    matmul_forward(out_nb, inp, w, Tensor());
    Tensor dinp = Tensor::zeros({B, T, C}, dt), dw = Tensor::zeros({OC, C}, dt), db = Tensor::zeros({OC}, dt);
    matmul_backward(dinp, dw, db, dout, inp, w);
    return Outs{{"out", vec(out)}, {"out_nobias", vec(out_nb)},
                {"dinp", vec(dinp)}, {"dweight", vec(dw)}, {"dbias", vec(db)}};
  }, kReductionTol);
}

TEST(FloatVsDouble, Attention) {
  compare_f32_f64([](DType dt) {
    Tensor qkv = in({B, T, 3 * C}, dt, "qkv", 1.5), dout = in({B, T, C}, dt, "dout");
    Tensor out = Tensor::zeros({B, T, C}, dt), att = Tensor::zeros({B, NH, T, T}, dt);
    attention_forward(out, att, qkv, NH);
    Tensor dqkv = Tensor::zeros({B, T, 3 * C}, dt);
    attention_backward(dqkv, dout, qkv, att, NH);
    return Outs{{"out", vec(out)}, {"att", vec(att)}, {"dqkv", vec(dqkv)}};
  }, kReductionTol);
}

TEST(FloatVsDouble, Gelu) {
  compare_f32_f64([](DType dt) {
    Tensor inp = in({B, T, 4 * C}, dt, "gelu_inp", 2.0), dout = in({B, T, 4 * C}, dt, "dout4");
    Tensor out = Tensor::zeros({B, T, 4 * C}, dt), dinp = Tensor::zeros({B, T, 4 * C}, dt);
    gelu_forward(out, inp);
    gelu_backward(dinp, inp, dout);
    return Outs{{"out", vec(out)}, {"dinp", vec(dinp)}};
  }, kElementwiseTol);
}

TEST(FloatVsDouble, Residual) {
  compare_f32_f64([](DType dt) {
    Tensor a = in({B, T, C}, dt, "res_a"), b = in({B, T, C}, dt, "res_b"), dout = in({B, T, C}, dt, "dout");
    Tensor out = Tensor::zeros({B, T, C}, dt), da = Tensor::zeros({B, T, C}, dt), db = Tensor::zeros({B, T, C}, dt);
    residual_forward(out, a, b);
    residual_backward(da, db, dout);
    return Outs{{"out", vec(out)}, {"da", vec(da)}, {"db", vec(db)}};
  }, kElementwiseTol);
}

TEST(FloatVsDouble, SoftmaxCrossEntropy) {
  compare_f32_f64([](DType dt) {
    Tensor logits = in({B, T, Vp}, dt, "logits", 3.0);
    Tensor tgt = random_tokens({B, T}, V, "tgt");
    Tensor losses = Tensor::zeros({B, T}, dt), probs = Tensor::zeros({B, T, Vp}, dt);
    softmax_crossentropy_forward(losses, probs, logits, tgt, V);
    Tensor dlogits = Tensor::zeros({B, T, Vp}, dt);
    softmax_crossentropy_backward(dlogits, probs, tgt, 1.0 / (B * T), V);
    return Outs{{"losses", vec(losses)}, {"probs", vec(probs)}, {"dlogits", vec(dlogits)}};
  }, kReductionTol);
}

TEST(FloatVsDouble, ElementwiseHelpersAndAdamW) {
  compare_f32_f64([](DType dt) {
    const int64_t n = 1001;
    Tensor y = in({n}, dt, "axpy_y"), x = in({n}, dt, "axpy_x");
    axpy_(y, -0.75, x);
    Tensor s = in({n}, dt, "scale_x");
    scale_(s, 0.3);
    Tensor p = in({n}, dt, "adam_p"), m = Tensor::zeros({n}, dt), v = Tensor::zeros({n}, dt);
    AdamWConfig cfg;
    cfg.lr = 1e-2;
    for (int64_t t = 1; t <= 3; ++t) {
      Tensor g = in({n}, dt, "adam_g" + std::to_string(t));
      adamw_update(p, g, m, v, cfg, t, true);
    }
    return Outs{{"axpy", vec(y)}, {"scale", vec(s)}, {"param", vec(p)}, {"m", vec(m)}, {"v", vec(v)}};
  }, kElementwiseTol);
  // sum_of_squares: f32 data accumulated in double equals the f64 result to rounding of the sum.
  Tensor x32 = in({4097}, DType::F32, "sos"), x64 = in({4097}, DType::F64, "sos");
  EXPECT_NEAR(sum_of_squares(x32), sum_of_squares(x64), 1e-12 * sum_of_squares(x64));
}
