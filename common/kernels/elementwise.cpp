// Element-wise ops: GELU (with the tanh approximation of Hendrycks & Gimpel, 2016, as GPT-2 uses
// it), residual, and the helpers axpy_ / scale_. Their CUDA twins are in cuda/elementwise.cu.
// Shapes are free (any tensor); the two operands of a binary op must have the same numel.

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>

#include "kernels/cpu_util.hpp"
#include "kernels/dispatch.hpp"
#include "kernels/half_stage.hpp"
#include "kernels/ops.hpp"
#include "kernels/profile.hpp"

namespace sgpt {

using detail::expect;
using detail::expect_numel;

// ---- plain loops shared by residual, axpy and scale --------------------------------------------------------

template <class T>
static void add_cpu(T* out, const T* a, const T* b, int64_t n) {
#pragma omp parallel for schedule(static) if (n >= detail::kParallelMin)
  for (int64_t i = 0; i < n; ++i) out[i] = a[i] + b[i];
}

template <class T>
static void axpy_cpu(T* y, T alpha, const T* x, int64_t n) {
#pragma omp parallel for schedule(static) if (n >= detail::kParallelMin)
  for (int64_t i = 0; i < n; ++i) y[i] += alpha * x[i];
}

template <class T>
static void scale_cpu(T* x, T alpha, int64_t n) {
#pragma omp parallel for schedule(static) if (n >= detail::kParallelMin)
  for (int64_t i = 0; i < n; ++i) x[i] *= alpha;
}

// ---- residual -------------------------------------------------------------------------------------------

void residual_forward(Tensor& out, const Tensor& a, const Tensor& b) {
  const char* op = "residual_forward";
  detail::OpScope scope(op, a);
  if (detail::any_cpu_half({&out, &a, &b})) {  // 16-bit on the CPU: f32 kernel, round on store
    detail::F32Stage s(op);
    Tensor ia = s.in(a), ib = s.in(b), o = s.out(out, false);
    residual_forward(o, ia, ib);
    return s.store();
  }
  expect(out, op, "out", a.dtype(), a.device());
  expect(b, op, "b", a.dtype(), a.device());
  expect_numel(out, op, "out", a.numel());
  expect_numel(b, op, "b", a.numel());
  if (detail::on_cuda(a, op)) return SGPT_CUDA(op, residual_forward(out, a, b));
  SGPT_DISPATCH_FLOAT(a.dtype(), op, add_cpu(out.data<scalar_t>(), a.data<scalar_t>(), b.data<scalar_t>(), a.numel()));
}

void residual_backward(Tensor& da, Tensor& db, const Tensor& dout) {
  const char* op = "residual_backward";
  detail::OpScope scope(op, dout);
  if (detail::any_cpu_half({&da, &db, &dout})) {  // 16-bit on the CPU: f32 kernel, round on store
    detail::F32Stage s(op);
    Tensor a = s.out(da, true), b = s.out(db, true);
    residual_backward(a, b, s.in(dout));
    return s.store();
  }
  SGPT_CHECK(dout.defined(), op, ": tensor 'dout' is undefined");
  detail::expect_all(op, dout.dtype(), dout.device(), {{&da, "da", dout.numel()}, {&db, "db", dout.numel()}});
  if (detail::on_cuda(dout, op)) return SGPT_CUDA(op, residual_backward(da, db, dout));
  axpy_(da, 1.0, dout);
  axpy_(db, 1.0, dout);
}

// ---- helpers for accumulation, clipping and norms ---------------------------------------------------------

void axpy_(Tensor& y, double alpha, const Tensor& x) {
  const char* op = "axpy_";
  detail::OpScope scope(op, y);
  if (detail::any_cpu_half({&y, &x})) {  // 16-bit on the CPU: f32 kernel, round on store
    detail::F32Stage s(op);
    Tensor ix = s.in(x), o = s.out(y, true);
    axpy_(o, alpha, ix);
    return s.store();
  }
  expect(x, op, "x", y.dtype(), y.device());
  expect_numel(x, op, "x", y.numel());
  if (detail::on_cuda(y, op)) return SGPT_CUDA(op, axpy_(y, alpha, x));
  SGPT_DISPATCH_FLOAT(y.dtype(), op, axpy_cpu(y.data<scalar_t>(), scalar_t(alpha), x.data<scalar_t>(), y.numel()));
}

void scale_(Tensor& x, double alpha) {
  const char* op = "scale_";
  detail::OpScope scope(op, x);
  if (detail::any_cpu_half({&x})) {  // 16-bit on the CPU: f32 kernel, round on store
    detail::F32Stage s(op);
    Tensor o = s.out(x, true);
    scale_(o, alpha);
    return s.store();
  }
  if (detail::on_cuda(x, op)) return SGPT_CUDA(op, scale_(x, alpha));
  SGPT_DISPATCH_FLOAT(x.dtype(), op, scale_cpu(x.data<scalar_t>(), scalar_t(alpha), x.numel()));
}

// ---- GELU ---------------------------------------------------------------------------------------------

// gelu(x) = 0.5 x (1 + tanh(u)),  u = sqrt(2/pi) (x + 0.044715 x^3)
// gelu'(x) = 0.5 (1 + tanh u) + 0.5 x (1 - tanh^2 u) sqrt(2/pi) (1 + 3 * 0.044715 x^2)

constexpr double kGeluScale = 0.7978845608028654;  // sqrt(2/pi)

// tanh for float in a form the compiler vectorises (glibc's tanhf is a scalar call unless the
// whole file is built with -ffast-math). For |x| < 1/4 its Taylor series to x^9; above,
// 1 - 2 / (e^{2|x|} + 1) with e^y = 2^k e^r, |r| <= ln2/2, e^r by its Taylor series to r^6; the
// sign restored at the end. The clamp and the choice between the two branches compare bit
// patterns (for non-negative floats they order like the values): integer min and selects
// vectorise where float comparisons, which may trap, do not. Largest relative error 3.1e-7 over
// [-30, 30] against tanh in double precision.
static inline float tanh_simd(float x) {
  const int32_t abits = std::min(std::bit_cast<int32_t>(std::fabs(x)), std::bit_cast<int32_t>(20.0f));
  const float ax = std::bit_cast<float>(abits);  // |x| clamped to 20: tanh(20) is 1 in float
  const float y = 2.0f * ax;
  const float kr = y * 1.44269504f + 12582912.0f;  // round(y / ln2), held in the low mantissa bits
  const int32_t k = std::bit_cast<int32_t>(kr) - 0x4B400000;
  const float kf = kr - 12582912.0f;
  const float r = (y - kf * 0.693145751953125f) - kf * 1.428606765330187e-06f;  // ln2 split in two parts
  const float er =
      1.0f + r * (1.0f + r * (0.5f + r * (1.0f / 6 + r * (1.0f / 24 + r * (1.0f / 120 + r * (1.0f / 720))))));
  const float big = 1.0f - 2.0f / (er * std::bit_cast<float>((k + 127) << 23) + 1.0f);
  const float x2 = ax * ax;
  const float small =
      ax * (1.0f + x2 * (-1.0f / 3 + x2 * (2.0f / 15 + x2 * (-17.0f / 315 + x2 * (62.0f / 2835)))));
  const int32_t use_small = -static_cast<int32_t>(abits < std::bit_cast<int32_t>(0.25f));  // all ones or zero
  const float res =
      std::bit_cast<float>((std::bit_cast<int32_t>(small) & use_small) | (std::bit_cast<int32_t>(big) & ~use_small));
  return std::copysign(res, x);
}

static inline float tanh_of(float x) { return tanh_simd(x); }
static inline double tanh_of(double x) { return std::tanh(x); }  // f64 is for accuracy, not speed

template <class T>
static void gelu_forward_cpu(T* out, const T* inp, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n >= detail::kParallelMin)
  for (int64_t i = 0; i < n; ++i) {
    T x = inp[i];
    T u = T(kGeluScale) * (x + T(0.044715) * x * x * x);
    out[i] = T(0.5) * x * (T(1) + tanh_of(u));
  }
}

template <class T>
static void gelu_backward_cpu(T* dinp, const T* inp, const T* dout, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n >= detail::kParallelMin)
  for (int64_t i = 0; i < n; ++i) {
    T x = inp[i];
    T u = T(kGeluScale) * (x + T(0.044715) * x * x * x);
    T th = tanh_of(u);
    T du = T(kGeluScale) * (T(1) + T(3 * 0.044715) * x * x);
    dinp[i] += (T(0.5) * (T(1) + th) + T(0.5) * x * (T(1) - th * th) * du) * dout[i];
  }
}

void gelu_forward(Tensor& out, const Tensor& inp) {
  const char* op = "gelu_forward";
  detail::OpScope scope(op, inp);
  if (detail::any_cpu_half({&out, &inp})) {  // 16-bit on the CPU: f32 kernel, round on store
    detail::F32Stage s(op);
    Tensor i = s.in(inp), o = s.out(out, false);  // in() first: out may alias inp
    gelu_forward(o, i);
    return s.store();
  }
  expect(out, op, "out", inp.dtype(), inp.device());
  expect_numel(out, op, "out", inp.numel());
  if (detail::on_cuda(inp, op)) return SGPT_CUDA(op, gelu_forward(out, inp));
  SGPT_DISPATCH_FLOAT(inp.dtype(), op, gelu_forward_cpu(out.data<scalar_t>(), inp.data<scalar_t>(), inp.numel()));
}

void gelu_backward(Tensor& dinp, const Tensor& inp, const Tensor& dout) {
  const char* op = "gelu_backward";
  detail::OpScope scope(op, inp);
  if (detail::any_cpu_half({&dinp, &inp, &dout})) {  // 16-bit on the CPU: f32 kernel, round on store
    detail::F32Stage s(op);
    Tensor di = s.out(dinp, true);
    gelu_backward(di, s.in(inp), s.in(dout));
    return s.store();
  }
  expect(dinp, op, "dinp", inp.dtype(), inp.device());
  expect(dout, op, "dout", inp.dtype(), inp.device());
  expect_numel(dinp, op, "dinp", inp.numel());
  expect_numel(dout, op, "dout", inp.numel());
  if (detail::on_cuda(inp, op)) return SGPT_CUDA(op, gelu_backward(dinp, inp, dout));
  SGPT_DISPATCH_FLOAT(inp.dtype(), op,
                      gelu_backward_cpu(dinp.data<scalar_t>(), inp.data<scalar_t>(), dout.data<scalar_t>(), inp.numel()));
}

}  // namespace sgpt
