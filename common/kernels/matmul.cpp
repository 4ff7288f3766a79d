// Linear layer with bias, as a row-major BLAS GEMM.
//   forward:  out[N,OC] = inp[N,C] @ W[OC,C]^T + bias[OC]
//   backward: dinp[N,C] += dout[N,OC] @ W[OC,C]
//             dW[OC,C]  += dout[N,OC]^T @ inp[N,C]
//             dbias[OC] += sum over rows of dout
// FLOPs: 2*N*C*OC forward, twice that backward.

#include <cblas.h>

#include "kernels/cpu_util.hpp"
#include "kernels/dispatch.hpp"
#include "kernels/half_stage.hpp"
#include "kernels/ops.hpp"
#include "kernels/profile.hpp"

namespace sgpt {

// Row-major GEMM C = alpha * op(A) @ op(B) + beta * C for float and double.
static void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
                 const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N, K, alpha, A, lda, B,
              ldb, beta, C, ldc);
}
static void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha, const double* A, int64_t lda,
                 const double* B, int64_t ldb, double beta, double* C, int64_t ldc) {
  cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N, K, alpha, A, lda, B,
              ldb, beta, C, ldc);
}

template <class T>
static void matmul_forward_cpu(T* out, const T* inp, const T* w, const T* bias, int64_t N, int64_t C, int64_t OC) {
  gemm(false, true, N, OC, C, T(1), inp, C, w, C, T(0), out, OC);
  if (bias) {
#pragma omp parallel for schedule(static) if (N * OC >= detail::kParallelMin)
    for (int64_t n = 0; n < N; ++n)
      for (int64_t o = 0; o < OC; ++o) out[n * OC + o] += bias[o];
  }
}

template <class T>
static void matmul_backward_cpu(T* dinp, T* dw, T* dbias, const T* dout, const T* inp, const T* w, int64_t N,
                                int64_t C, int64_t OC) {
  if (dinp) gemm(false, false, N, C, OC, T(1), dout, OC, w, C, T(1), dinp, C);
  gemm(true, false, OC, C, N, T(1), dout, OC, inp, C, T(1), dw, C);
  if (dbias) {
#pragma omp parallel for schedule(static) if (N * OC >= detail::kParallelMin)
    for (int64_t o = 0; o < OC; ++o) {
      T s = 0;
      for (int64_t n = 0; n < N; ++n) s += dout[n * OC + o];
      dbias[o] += s;
    }
  }
}

// Reads C and OC from the weight and N from the input; checks the rest.
static void matmul_shapes(const char* op, const Tensor& inp, const Tensor& weight, int64_t* N, int64_t* C,
                          int64_t* OC) {
  SGPT_CHECK(weight.defined() && weight.dim() == 2, op, ": tensor 'weight' must be [OC,C]");
  *OC = weight.size(0);
  *C = weight.size(1);
  SGPT_CHECK(inp.defined() && inp.dim() >= 1 && inp.size(-1) == *C, op, ": tensor 'inp' has shape ",
             shape_str(inp.shape()), " but the weight ", shape_str(weight.shape()), " expects a last dimension of ", *C);
  *N = inp.numel() / *C;
}

void matmul_forward(Tensor& out, const Tensor& inp, const Tensor& weight, const Tensor& bias) {
  const char* op = "matmul_forward";
  detail::OpScope scope(op, weight);
  if (detail::any_cpu_half({&out, &inp, &weight, &bias})) {  // 16-bit on the CPU: f32 kernel, round on store
    detail::F32Stage s(op);
    Tensor o = s.out(out, false);
    matmul_forward(o, s.in(inp), s.in(weight), s.in(bias));
    return s.store();
  }
  int64_t N, C, OC;
  matmul_shapes(op, inp, weight, &N, &C, &OC);
  detail::expect_all(op, weight.dtype(), weight.device(),
                     {{&out, "out", detail::with_last(inp.shape(), OC)}, {&inp, "inp", N * C}});
  if (bias.defined()) detail::expect_all(op, weight.dtype(), weight.device(), {{&bias, "bias", Shape{OC}}});
  if (detail::on_cuda(weight, op)) return SGPT_CUDA(op, matmul_forward(out, inp, weight, bias));
  SGPT_DISPATCH_FLOAT(weight.dtype(), op,
                      matmul_forward_cpu(out.data<scalar_t>(), inp.data<scalar_t>(), weight.data<scalar_t>(),
                                         bias.defined() ? bias.data<scalar_t>() : nullptr, N, C, OC));
}

void matmul_backward(Tensor& dinp, Tensor& dweight, Tensor& dbias, const Tensor& dout, const Tensor& inp,
                     const Tensor& weight) {
  const char* op = "matmul_backward";
  detail::OpScope scope(op, weight);
  if (detail::any_cpu_half({&dinp, &dweight, &dbias, &dout, &inp, &weight})) {  // 16-bit on the CPU: f32 kernel, round on store
    detail::F32Stage s(op);
    Tensor di = s.out(dinp, true), dw = s.out(dweight, true), db = s.out(dbias, true);
    matmul_backward(di, dw, db, s.in(dout), s.in(inp), s.in(weight));
    return s.store();
  }
  int64_t N, C, OC;
  matmul_shapes(op, inp, weight, &N, &C, &OC);
  detail::expect_all(op, weight.dtype(), weight.device(),
                     {{&dout, "dout", detail::with_last(inp.shape(), OC)}, {&inp, "inp", N * C},
                      {&dweight, "dweight", weight.shape()}});
  if (dinp.defined()) detail::expect_all(op, weight.dtype(), weight.device(), {{&dinp, "dinp", inp.shape()}});
  if (dbias.defined()) detail::expect_all(op, weight.dtype(), weight.device(), {{&dbias, "dbias", Shape{OC}}});
  if (detail::on_cuda(weight, op)) return SGPT_CUDA(op, matmul_backward(dinp, dweight, dbias, dout, inp, weight));
  SGPT_DISPATCH_FLOAT(weight.dtype(), op,
                      matmul_backward_cpu(dinp.defined() ? dinp.data<scalar_t>() : nullptr, dweight.data<scalar_t>(),
                                          dbias.defined() ? dbias.data<scalar_t>() : nullptr, dout.data<scalar_t>(),
                                          inp.data<scalar_t>(), weight.data<scalar_t>(), N, C, OC));
}

}  // namespace sgpt
