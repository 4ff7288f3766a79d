// adamw_update against a scalar reference written here; axpy_, scale_, sum_of_squares exact on
// small integer data.

#include <algorithm>
#include <limits>

#include "kernel_test_util.hpp"

using namespace kt;

namespace {

/// The AdamW of ops.hpp, one element at a time, in double.
void adamw_reference(Vec& p, const Vec& g, Vec& m, Vec& v, const AdamWConfig& c, int64_t t, bool decay) {
  for (size_t i = 0; i < p.size(); ++i) {
    m[i] = c.beta1 * m[i] + (1 - c.beta1) * g[i];
    v[i] = c.beta2 * v[i] + (1 - c.beta2) * g[i] * g[i];
    double mhat = m[i] / (1 - std::pow(c.beta1, static_cast<double>(t)));
    double vhat = v[i] / (1 - std::pow(c.beta2, static_cast<double>(t)));
    double wd = decay ? c.weight_decay : 0.0;
    p[i] -= c.lr * (mhat / (std::sqrt(vhat) + c.eps) + wd * p[i]);
  }
}

void check_adamw(bool decay, int steps) {
  const int64_t n = 257;
  AdamWConfig cfg;
  cfg.lr = 0.05;
  cfg.beta1 = 0.8;
  cfg.beta2 = 0.9;
  cfg.eps = 1e-3;           // large enough to matter: eps goes outside the sqrt
  cfg.weight_decay = 0.5;   // large enough that L2-style or un-decoupled decay is far off
  Tensor p = randn({n}, DType::F64, "adam_p", 1.0, 0.5);
  Tensor m = Tensor::zeros({n}, DType::F64), v = Tensor::zeros({n}, DType::F64);
  Vec rp = vec(p), rm(n, 0.0), rv(n, 0.0);
  for (int64_t t = 1; t <= steps; ++t) {
    Tensor g = randn({n}, DType::F64, "adam_g" + std::to_string(t), 0.1 * t);  // tiny grads make eps matter
    Vec gv = vec(g);
    adamw_update(p, g, m, v, cfg, t, decay);
    EXPECT_EQ(vec(g), gv) << "the gradient is an input and must not change";
    adamw_reference(rp, gv, rm, rv, cfg, t, decay);
    KT_EXPECT_REL_MAX(vec(p), rp, 1e-13);
    KT_EXPECT_REL_MAX(vec(m), rm, 1e-13);
    KT_EXPECT_REL_MAX(vec(v), rv, 1e-13);
  }
}

}  // namespace

TEST(AdamW, OneStepWithDecay) { check_adamw(true, 1); }
TEST(AdamW, OneStepWithoutDecay) { check_adamw(false, 1); }
TEST(AdamW, SeveralStepsWithDecay) { check_adamw(true, 5); }
TEST(AdamW, SeveralStepsWithoutDecay) { check_adamw(false, 5); }

TEST(AdamW, FirstStepByHand) {
  // t = 1, m = v = 0: mhat = g, vhat = g^2, so the step is lr * (g/(|g| + eps) + wd p).
  // p = 2, g = -0.5, lr = 0.1, eps = 0.5, wd = 0.25: p = 2 - 0.1 * (-0.5/1.0 + 0.5) = 2.0 exactly;
  // without decay p = 2 - 0.1 * (-0.5) = 2.05. Second element: p = -4, g = 3, eps = 0.5:
  // p = -4 - 0.1 * (3/3.5 - 1) = -4 + 0.1/7 (with decay), -4 - 0.1 * 3/3.5 (without).
  AdamWConfig cfg;
  cfg.lr = 0.1;
  cfg.eps = 0.5;
  cfg.weight_decay = 0.25;
  for (bool decay : {true, false}) {
    SCOPED_TRACE(decay ? "decay" : "no decay");
    Tensor p = from_doubles({2, -4}, {2}), g = from_doubles({-0.5, 3}, {2});
    Tensor m = Tensor::zeros({2}, DType::F64), v = Tensor::zeros({2}, DType::F64);
    adamw_update(p, g, m, v, cfg, 1, decay);
    EXPECT_NEAR(get(p, 0), decay ? 2.0 : 2.05, 1e-15);
    EXPECT_NEAR(get(p, 1), decay ? -4 + 0.1 / 7 : -4 - 0.1 * 3 / 3.5, 1e-14);
    EXPECT_NEAR(get(m, 0), 0.1 * -0.5, 1e-16);  // (1 - beta1) g
    EXPECT_NEAR(get(v, 1), 0.05 * 9, 1e-15);    // (1 - beta2) g^2
  }
}

TEST(AdamW, SegmentsMatchOneUpdatePerSegment) {
  // adamw_update_segments (AdamW::step's single call) = adamw_update on each segment, with each
  // segment's decay flag; elements in a gap between segments keep their values exactly.
  const int64_t n = 41;
  const std::vector<AdamWSegment> segs = {{0, 5, true}, {5, 1, false}, {9, 20, true}, {29, 12, false}};  // gap 6..8
  AdamWConfig cfg;
  cfg.lr = 0.05;
  cfg.weight_decay = 0.5;
  Tensor p = randn({n}, DType::F64, "seg_p", 1.0, 0.5), m = randn({n}, DType::F64, "seg_m", 0.01);
  Tensor v = Tensor::zeros({n}, DType::F64);
  Vec rp = vec(p), rm = vec(m), rv(n, 0.0);
  for (int64_t t = 1; t <= 3; ++t) {
    Tensor g = randn({n}, DType::F64, "seg_g" + std::to_string(t), 0.1);
    Vec gv = vec(g);
    adamw_update_segments(p, g, m, v, cfg, t, segs);
    for (const AdamWSegment& s : segs) {
      Vec sp(rp.begin() + s.begin, rp.begin() + s.begin + s.numel), sg(gv.begin() + s.begin, gv.begin() + s.begin + s.numel),
          sm(rm.begin() + s.begin, rm.begin() + s.begin + s.numel), sv(rv.begin() + s.begin, rv.begin() + s.begin + s.numel);
      adamw_reference(sp, sg, sm, sv, cfg, t, s.decay);
      std::copy(sp.begin(), sp.end(), rp.begin() + s.begin);
      std::copy(sm.begin(), sm.end(), rm.begin() + s.begin);
      std::copy(sv.begin(), sv.end(), rv.begin() + s.begin);
    }
  }
  KT_EXPECT_REL_MAX(vec(p), rp, 1e-13);
  KT_EXPECT_REL_MAX(vec(m), rm, 1e-13);
  KT_EXPECT_REL_MAX(vec(v), rv, 1e-13);
}

TEST(AdamW, SegmentsMustBeSortedDisjointAndInside) {
  Tensor p = Tensor::zeros({10}, DType::F64), g = Tensor::zeros({10}, DType::F64);
  Tensor m = Tensor::zeros({10}, DType::F64), v = Tensor::zeros({10}, DType::F64);
  AdamWConfig cfg;
  const std::vector<std::vector<AdamWSegment>> bad = {{{0, 5, true}, {4, 2, false}}, {{0, 11, true}}, {{3, 2, true}, {0, 2, true}}};
  for (const auto& segs : bad)
    EXPECT_THROW(
        {
          try {
            adamw_update_segments(p, g, m, v, cfg, 1, segs);
          } catch (const Error& e) {
            EXPECT_NE(std::string(e.what()).find("adamw_update_segments"), std::string::npos) << e.what();
            throw;
          }
        },
        Error);
}

TEST(Elementwise, AxpyScaleExactOnIntegers) {
  for (DType dt : {DType::F32, DType::F64}) {
    SCOPED_TRACE(dtype_name(dt));
    Tensor y = from_doubles({1, 2, 3, 4, 5, -6, 7}, {7}, dt), x = from_doubles({10, 20, 30, 40, 50, 60, -70}, {7}, dt);
    axpy_(y, -2.0, x);
    EXPECT_EQ(vec(y), (Vec{-19, -38, -57, -76, -95, -126, 147}));
    axpy_(y, 0.5, x);  // += 0.5 x
    EXPECT_EQ(vec(y), (Vec{-14, -28, -42, -56, -70, -96, 112}));
    scale_(y, -0.25);
    EXPECT_EQ(vec(y), (Vec{3.5, 7, 10.5, 14, 17.5, 24, -28}));
    Tensor big = from_doubles(Vec(1000, 3.0), {10, 100}, dt);  // any shape, every element
    scale_(big, 2.0);
    EXPECT_EQ(vec(big), Vec(1000, 6.0));
  }
}

TEST(Elementwise, SumOfSquaresExactOnIntegers) {
  for (DType dt : {DType::F32, DType::F64}) {
    SCOPED_TRACE(dtype_name(dt));
    Vec x(100);
    for (int i = 0; i < 100; ++i) x[i] = (i % 2 ? -1 : 1) * (i + 1);
    EXPECT_EQ(sum_of_squares(from_doubles(x, {4, 25}, dt)), 338350.0);  // sum of k^2, k = 1..100
    EXPECT_EQ(sum_of_squares(from_doubles({0, 0, 0}, {3}, dt)), 0.0);
  }
}

TEST(Elementwise, SumOfSquaresAccumulatesInDouble) {
  // 2^25 + 1 ones in f32: the exact sum 33554433 needs 26 bits, so no f32 accumulator can
  // produce it (a running f32 sum even stalls at 2^24); a double accumulator gives it exactly.
  const int64_t n = (int64_t{1} << 25) + 1;
  Tensor x = Tensor::empty({n}, DType::F32);
  float* p = x.data<float>();
  for (int64_t i = 0; i < n; ++i) p[i] = 1.0f;
  EXPECT_EQ(sum_of_squares(x), static_cast<double>(n));
}
