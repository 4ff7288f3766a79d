// GELU with the tanh approximation (Hendrycks & Gimpel, 2016), as GPT-2 uses it.

#include <cmath>

#include "kernels/cpu_util.hpp"
#include "kernels/dispatch.hpp"
#include "kernels/ops.hpp"
#include "kernels/profile.hpp"

namespace sgpt {

using detail::expect;
using detail::expect_numel;

// gelu(x) = 0.5 x (1 + tanh(u)),  u = sqrt(2/pi) (x + 0.044715 x^3)
// gelu'(x) = 0.5 (1 + tanh u) + 0.5 x (1 - tanh^2 u) sqrt(2/pi) (1 + 3 * 0.044715 x^2)

constexpr double kGeluScale = 0.7978845608028654;  // sqrt(2/pi)

template <class T>
static void gelu_forward_cpu(T* out, const T* inp, int64_t n) {
#pragma omp parallel for schedule(static) if (n >= detail::kParallelMin)
  for (int64_t i = 0; i < n; ++i) {
    T x = inp[i];
    T u = T(kGeluScale) * (x + T(0.044715) * x * x * x);
    out[i] = T(0.5) * x * (T(1) + std::tanh(u));
  }
}

template <class T>
static void gelu_backward_cpu(T* dinp, const T* inp, const T* dout, int64_t n) {
#pragma omp parallel for schedule(static) if (n >= detail::kParallelMin)
  for (int64_t i = 0; i < n; ++i) {
    T x = inp[i];
    T u = T(kGeluScale) * (x + T(0.044715) * x * x * x);
    T th = std::tanh(u);
    T du = T(kGeluScale) * (T(1) + T(3 * 0.044715) * x * x);
    dinp[i] += (T(0.5) * (T(1) + th) + T(0.5) * x * (T(1) - th * th) * du) * dout[i];
  }
}

void gelu_forward(Tensor& out, const Tensor& inp) {
  const char* op = "gelu_forward";
  detail::OpScope scope(op, inp);
  expect(out, op, "out", inp.dtype(), inp.device());
  expect_numel(out, op, "out", inp.numel());
  SGPT_DISPATCH_CUDA(inp, op, gelu_forward(out, inp));
  SGPT_DISPATCH_FLOAT(inp.dtype(), op, gelu_forward_cpu(out.data<scalar_t>(), inp.data<scalar_t>(), inp.numel()));
}

void gelu_backward(Tensor& dinp, const Tensor& inp, const Tensor& dout) {
  const char* op = "gelu_backward";
  detail::OpScope scope(op, inp);
  expect(dinp, op, "dinp", inp.dtype(), inp.device());
  expect(dout, op, "dout", inp.dtype(), inp.device());
  expect_numel(dinp, op, "dinp", inp.numel());
  expect_numel(dout, op, "dout", inp.numel());
  SGPT_DISPATCH_CUDA(inp, op, gelu_backward(dinp, inp, dout));
  SGPT_DISPATCH_FLOAT(inp.dtype(), op,
                      gelu_backward_cpu(dinp.data<scalar_t>(), inp.data<scalar_t>(), dout.data<scalar_t>(), inp.numel()));
}

}  // namespace sgpt
