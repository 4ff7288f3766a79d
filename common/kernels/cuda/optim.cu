// Optimizer-side ops (CUDA, f32 storage): sum_of_squares (for the gradient norm) and AdamW.
//
// Contract (ops.hpp), tensors of n elements:
//   sum_of_squares(x) = sum x_i^2, accumulated in double; returned to the host (this waits for
//                       the current stream). Deterministic: fixed grid, fixed reduction order.
//   adamw_update (t >= 1, in place on param, m, v), g = grad_scale * grad:
//     m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;  mhat = m/(1-b1^t);  vhat = v/(1-b2^t)
//     param -= lr * (mhat / (sqrt(vhat) + eps) + wd * param)      (wd only if `decay`)
//   One fused kernel; the bias corrections are computed once on the host in double.

#include "kernels/cuda/common.cuh"
#include "kernels/cuda_ops.hpp"

#include <cmath>

namespace sgpt::cuda {
namespace {

using namespace detail;

constexpr int kSsqThreads = 512;

__global__ void __launch_bounds__(kSsqThreads)
    sum_of_squares_partial_kernel(double* __restrict__ partial, const float* __restrict__ x, int64_t n, bool vec) {
  __shared__ double buf[kWarp];
  double s = 0.0;
  int64_t stride = (int64_t)gridDim.x * blockDim.x;
  int64_t start = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (vec) {
    const float4* x4 = reinterpret_cast<const float4*>(x);
    int64_t n4 = n / 4;
    for (int64_t i = start; i < n4; i += stride) {
      float4 v = x4[i];
      s += (double)v.x * v.x + (double)v.y * v.y + (double)v.z * v.z + (double)v.w * v.w;
    }
    for (int64_t i = n4 * 4 + start; i < n; i += stride) s += (double)x[i] * x[i];
  } else {
    for (int64_t i = start; i < n; i += stride) s += (double)x[i] * x[i];
  }
  s = block_sum(s, buf);
  if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

__global__ void __launch_bounds__(kSsqThreads)
    sum_of_squares_final_kernel(double* __restrict__ out, const double* __restrict__ partial, int parts) {
  __shared__ double buf[kWarp];
  double s = 0.0;
  for (int i = threadIdx.x; i < parts; i += blockDim.x) s += partial[i];
  s = block_sum(s, buf);
  if (threadIdx.x == 0) *out = s;
}

struct AdamWArgs {
  float lr, b1, b2, eps, wd, inv_bc1, inv_bc2, gs;  // gs: grad_scale (mixed precision's unscaling)
};

__device__ __forceinline__ void adamw_one(float& p, float g, float& m, float& v, const AdamWArgs& a) {
  g *= a.gs;  // exact when gs = 1
  m = a.b1 * m + (1.f - a.b1) * g;
  v = a.b2 * v + (1.f - a.b2) * g * g;
  float mhat = m * a.inv_bc1, vhat = v * a.inv_bc2;
  p -= a.lr * (mhat / (sqrtf(vhat) + a.eps) + a.wd * p);
}

__global__ void adamw_kernel(float* __restrict__ p, const float* __restrict__ g, float* __restrict__ m,
                             float* __restrict__ v, int64_t n, bool vec, AdamWArgs a) {
  int64_t stride = (int64_t)gridDim.x * blockDim.x;
  int64_t start = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  int64_t done = 0;
  if (vec) {
    int64_t n4 = n / 4;
    float4* p4 = reinterpret_cast<float4*>(p);
    const float4* g4 = reinterpret_cast<const float4*>(g);
    float4* m4 = reinterpret_cast<float4*>(m);
    float4* v4 = reinterpret_cast<float4*>(v);
    for (int64_t i = start; i < n4; i += stride) {
      float4 P = p4[i], G = g4[i], M = m4[i], Vv = v4[i];
      adamw_one(P.x, G.x, M.x, Vv.x, a);
      adamw_one(P.y, G.y, M.y, Vv.y, a);
      adamw_one(P.z, G.z, M.z, Vv.z, a);
      adamw_one(P.w, G.w, M.w, Vv.w, a);
      p4[i] = P;
      m4[i] = M;
      v4[i] = Vv;
    }
    done = n4 * 4;
  }
  for (int64_t i = done + start; i < n; i += stride) adamw_one(p[i], g[i], m[i], v[i], a);
}

}  // namespace

double sum_of_squares(const Tensor& x) {
  int64_t n = x.numel();
  if (n == 0) return 0.0;
  const float* px = x.data<float>();
  int parts = std::min(grid_for(n, kSsqThreads), 4 * sm_count());
  double* buf = static_cast<double*>(scratch(Scratch::Reduce, sizeof(double) * (parts + 1), MemCategory::Other));
  sum_of_squares_partial_kernel<<<parts, kSsqThreads, 0, current_stream()>>>(buf + 1, px, n, aligned16(px));
  SGPT_CUDA_LAUNCH_CHECK("sum_of_squares_partial_kernel");
  sum_of_squares_final_kernel<<<1, kSsqThreads, 0, current_stream()>>>(buf, buf + 1, parts);
  SGPT_CUDA_LAUNCH_CHECK("sum_of_squares_final_kernel");
  double* host = static_cast<double*>(pinned_host(sizeof(double)));
  SGPT_CUDA_CHECK(cudaMemcpyAsync(host, buf, sizeof(double), cudaMemcpyDeviceToHost, current_stream()));
  synchronize();
  return *host;
}

void adamw_update(Tensor& param, const Tensor& grad, Tensor& m, Tensor& v, const AdamWConfig& cfg, int64_t t,
                  bool decay) {
  SGPT_CHECK(t >= 1, "adamw_update: step t = ", t, " must be >= 1");
  int64_t n = param.numel();
  if (n == 0) return;
  AdamWArgs a;
  a.lr = static_cast<float>(cfg.lr);
  a.b1 = static_cast<float>(cfg.beta1);
  a.b2 = static_cast<float>(cfg.beta2);
  a.eps = static_cast<float>(cfg.eps);
  a.wd = decay ? static_cast<float>(cfg.weight_decay) : 0.f;
  a.inv_bc1 = static_cast<float>(1.0 / (1.0 - std::pow(cfg.beta1, static_cast<double>(t))));
  a.inv_bc2 = static_cast<float>(1.0 / (1.0 - std::pow(cfg.beta2, static_cast<double>(t))));
  a.gs = static_cast<float>(cfg.grad_scale);
  float* pp = param.data<float>();
  const float* pg = grad.data<float>();
  float* pm = m.data<float>();
  float* pv = v.data<float>();
  bool vec = aligned16(pp) && aligned16(pg) && aligned16(pm) && aligned16(pv);
  const int threads = 256;
  adamw_kernel<<<grid_for(vec ? (n + 3) / 4 : n, threads), threads, 0, current_stream()>>>(pp, pg, pm, pv, n, vec, a);
  SGPT_CUDA_LAUNCH_CHECK("adamw_kernel");
}

}  // namespace sgpt::cuda
