// bf16 and fp16 on the CPU: the library's conversions on known patterns, Tensor::cast, and every
// op computing in f32 and rounding on store (an op on 16-bit tensors equals the f32 op on the
// widened inputs, rounded), mixed f32/16-bit calls, and AdamW's grad_scale.

#include <gtest/gtest.h>

#include <bit>
#include <cmath>

#include "core/half.hpp"
#include "core/tensor.hpp"
#include "kernels/ops.hpp"
#include "model/gpt.hpp"

using namespace sgpt;

namespace {
float f(uint32_t u) { return std::bit_cast<float>(u); }
std::vector<float> ramp(int64_t n, double scale) {
  std::vector<float> v(n);
  for (int64_t i = 0; i < n; ++i) v[i] = float(scale * std::sin(0.37 * double(i) + 0.1));
  return v;
}
}  // namespace

TEST(HalfConversions, KnownPatterns) {
  EXPECT_EQ(f32_to_bf16(1.0f), 0x3f80);
  EXPECT_EQ(f32_to_bf16(f(0x3f808000)), 0x3f80);  // tie to even
  EXPECT_EQ(f32_to_bf16(f(0x3f818000)), 0x3f82);
  EXPECT_EQ(f32_to_bf16(f(0x7f7f8000)), 0x7f80);  // overflow to inf
  EXPECT_EQ(f32_to_bf16(f(0x7f800001)), 0x7fc0);  // NaN stays NaN
  EXPECT_EQ(f32_to_f16(65504.0f), 0x7bff);
  EXPECT_EQ(f32_to_f16(65520.0f), 0x7c00);
  EXPECT_EQ(f32_to_f16(std::ldexp(1.0f, -24)), 0x0001);
  EXPECT_EQ(f32_to_f16(std::ldexp(1.0f, -25)), 0x0000);
  EXPECT_EQ(f32_to_f16(std::ldexp(1.5f, -24)), 0x0002);
  EXPECT_EQ(f16_to_f32(0x0001), std::ldexp(1.0f, -24));
  EXPECT_EQ(f16_to_f32(0x03ff), std::ldexp(1023.0f, -24));
  EXPECT_EQ(bf16_to_f32(0x0001), std::ldexp(1.0f, -133));
  for (uint32_t h = 0; h < 65536; ++h) {  // every non-NaN pattern survives a round trip
    if ((h & 0x7fffu) <= 0x7f80u) {
      ASSERT_EQ(f32_to_bf16(bf16_to_f32(uint16_t(h))), h);
    }
    if ((h & 0x7fffu) <= 0x7c00u) {
      ASSERT_EQ(f32_to_f16(f16_to_f32(uint16_t(h))), h);
    }
  }
}

TEST(HalfTensors, CastRoundsAndWidensExactly) {
  Tensor a = Tensor::from(std::vector<float>{1.0f, f(0x3f818000), 1e-8f, 70000.0f, -2.5f}, {5});
  Tensor b = a.cast(DType::BF16), h = a.cast(DType::F16);
  EXPECT_EQ(b.nbytes(), 10u);
  EXPECT_EQ(b.to_vector(), (std::vector<double>{1.0, bf16_to_f32(0x3f82), bf16_to_f32(f32_to_bf16(1e-8f)), 70144.0, -2.5}));
  EXPECT_EQ(h.to_vector()[3], INFINITY);
  EXPECT_EQ(h.to_vector()[2], 0.0);
  EXPECT_EQ(b.cast(DType::F32).to_vector(), b.to_vector());
  EXPECT_EQ(b.cast(DType::F16).dtype(), DType::F16);
  EXPECT_THROW(b.cast(DType::I32), Error);
}

// An op on bf16 tensors equals the f32 op on the widened inputs, rounded on store.
TEST(HalfOps, ComputeInF32AndRoundOnStore) {
  for (DType dt : {DType::BF16, DType::F16}) {
    SCOPED_TRACE(dtype_name(dt));
    const int64_t N = 7, C = 12, OC = 5;
    Tensor inp = Tensor::from(ramp(N * C, 1.0), {N, C}).cast(dt), w = Tensor::from(ramp(OC * C, 0.3), {OC, C}).cast(dt);
    Tensor bias = Tensor::from(ramp(OC, 0.1), {OC}).cast(dt);
    Tensor out = Tensor::empty({N, OC}, dt), out32 = Tensor::empty({N, OC});
    matmul_forward(out, inp, w, bias);
    matmul_forward(out32, inp.cast(DType::F32), w.cast(DType::F32), bias.cast(DType::F32));
    EXPECT_EQ(out.to_vector(), out32.cast(dt).to_vector());
    // An accumulating backward: dweight += ..., starting from non-zero values.
    Tensor dout = Tensor::from(ramp(N * OC, 0.5), {N, OC}).cast(dt);
    Tensor dw = Tensor::from(ramp(OC * C, 0.2), {OC, C}).cast(dt), dw32 = dw.cast(DType::F32);
    Tensor none;
    matmul_backward(none, dw, none, dout, inp, w);
    Tensor dout32 = dout.cast(DType::F32), inp32 = inp.cast(DType::F32), w32 = w.cast(DType::F32);
    matmul_backward(none, dw32, none, dout32, inp32, w32);
    EXPECT_EQ(dw.to_vector(), dw32.cast(dt).to_vector());
  }
}

TEST(HalfOps, MixedF32AndBf16AndNoF64) {
  Tensor acc = Tensor::from(std::vector<float>{1, 2, 3}, {3});
  Tensor g = Tensor::from(std::vector<float>{0.5f, 0.25f, 1e-3f}, {3}).cast(DType::BF16);
  axpy_(acc, 2.0, g);
  EXPECT_EQ(acc.dtype(), DType::F32);
  EXPECT_EQ(acc.to_vector()[0], 2.0);
  EXPECT_EQ(acc.to_vector()[2], 3.0 + 2.0 * double(bf16_to_f32(f32_to_bf16(1e-3f))));
  Tensor d = Tensor::from(std::vector<double>{1, 2, 3}, {3});
  EXPECT_THROW(axpy_(d, 1.0, g), Error);
}

TEST(HalfOps, AdamWGradScaleIsAppliedFirst) {
  AdamWConfig c;
  c.lr = 1e-2;
  c.weight_decay = 0;
  Tensor p1 = Tensor::from(std::vector<float>{1, -1, 0.5f}, {3}), p2 = p1.cast(DType::F32);
  Tensor g = Tensor::from(std::vector<float>{1024, -2048, 512}, {3}).cast(DType::F16);
  Tensor g_unscaled = Tensor::from(std::vector<float>{1, -2, 0.5f}, {3});
  Tensor m1 = Tensor::zeros({3}), v1 = Tensor::zeros({3}), m2 = Tensor::zeros({3}), v2 = Tensor::zeros({3});
  c.grad_scale = 1.0 / 1024;
  adamw_update(p1, g, m1, v1, c, 1, false);
  c.grad_scale = 1.0;
  adamw_update(p2, g_unscaled, m2, v2, c, 1, false);
  EXPECT_EQ(p1.to_vector(), p2.to_vector());
  EXPECT_EQ(v1.to_vector(), v2.to_vector());
}

TEST(HalfModel, Bf16ForwardIsCloseToF32) {
  const GPTConfig cfg = gpt_config("nano");
  GPT m32(cfg, 3), m16(cfg, 3, Device::CPU, DType::BF16);
  EXPECT_EQ(m16.params().nbytes() * 2, m32.params().nbytes());
  std::vector<int32_t> t(2 * 16);
  for (size_t i = 0; i < t.size(); ++i) t[i] = int32_t((i * 37) % 256);
  Tensor x = Tensor::from(t, {2, 16}), y = Tensor::from(std::vector<int32_t>(t.rbegin(), t.rend()), {2, 16});
  const double l32 = m32.forward(x, y), l16 = m16.forward(x, y);
  EXPECT_NEAR(l16, l32, 0.02);
  m16.backward();
  EXPECT_GT(sum_of_squares(m16.grads()), 0.0);
}
