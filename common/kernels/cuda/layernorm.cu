// Layer normalisation over the last dimension (CUDA, f32).
//
// Contract (ops.hpp): inp, out, dinp, dout [N,C] (N = all leading dims, e.g. B*T); weight, bias,
// dweight, dbias [C]; mean, rstd [N].
//   forward:  mean = mean(x), rstd = 1/sqrt(var(x) + 1e-5) (biased var);
//             out = (x - mean) * rstd * weight + bias                          (=, also mean/rstd)
//   backward: xhat = (x - mean) * rstd, g = dout * weight,
//             dinp += (g - mean(g) - xhat * mean(g * xhat)) * rstd            (+=)
//             dweight += sum_rows dout * xhat;  dbias += sum_rows dout          (+=)
// Forward: one warp per row, statistics in f32 with a two-pass (mean, then centred variance).
// Backward: one warp per row; each warp accumulates its rows' dweight/dbias in shared memory,
// blocks write partial sums to scratch, a second kernel adds them (deterministic, no atomics).

#include "kernels/cuda/common.cuh"
#include "kernels/cuda_ops.hpp"

namespace sgpt::cuda {
namespace {

using namespace detail;

constexpr int kFwdWarps = 8;
constexpr int kBwdWarps = 8;  // 8 x 2C floats of shared memory: 48 KiB at C = 768

__global__ void layernorm_forward_kernel(float* __restrict__ out, float* __restrict__ mean, float* __restrict__ rstd,
                                         const float* __restrict__ inp, const float* __restrict__ weight,
                                         const float* __restrict__ bias, int64_t N, int C) {
  int lane = threadIdx.x % kWarp;
  int64_t row = blockIdx.x * (int64_t)(blockDim.x / kWarp) + threadIdx.x / kWarp;
  if (row >= N) return;
  const float* x = inp + row * C;
  float s = 0.f;
  for (int c = lane; c < C; c += kWarp) s += x[c];
  float m = warp_sum(s) / C;
  float v = 0.f;
  for (int c = lane; c < C; c += kWarp) {
    float d = x[c] - m;
    v += d * d;
  }
  float r = rsqrtf(warp_sum(v) / C + 1e-5f);
  float* o = out + row * C;
  for (int c = lane; c < C; c += kWarp) o[c] = (x[c] - m) * r * weight[c] + bias[c];
  if (lane == 0) {
    mean[row] = m;
    rstd[row] = r;
  }
}

// Dynamic shared memory: kBwdWarps * 2 * C floats (per-warp dweight and dbias accumulators).
// partial: [gridDim.x, 2C] (dweight partials, then dbias partials).
__global__ void layernorm_backward_kernel(float* __restrict__ dinp, float* __restrict__ partial,
                                          const float* __restrict__ dout, const float* __restrict__ inp,
                                          const float* __restrict__ weight, const float* __restrict__ mean,
                                          const float* __restrict__ rstd, int64_t N, int C) {
  extern __shared__ float smem[];
  int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  for (int i = threadIdx.x; i < kBwdWarps * 2 * C; i += blockDim.x) smem[i] = 0.f;
  __syncthreads();
  float* dw_acc = smem + warp * 2 * C;
  float* db_acc = dw_acc + C;
  for (int64_t row = blockIdx.x * (int64_t)kBwdWarps + warp; row < N; row += (int64_t)gridDim.x * kBwdWarps) {
    const float* x = inp + row * C;
    const float* dy = dout + row * C;
    float m = mean[row], r = rstd[row];
    float sg = 0.f, sgx = 0.f;
    for (int c = lane; c < C; c += kWarp) {
      float xhat = (x[c] - m) * r;
      float g = dy[c] * weight[c];
      sg += g;
      sgx += g * xhat;
    }
    float mg = warp_sum(sg) / C, mgx = warp_sum(sgx) / C;
    float* dx = dinp + row * C;
    for (int c = lane; c < C; c += kWarp) {
      float xhat = (x[c] - m) * r;
      float d = dy[c];
      float g = d * weight[c];
      dx[c] += (g - mg - xhat * mgx) * r;
      dw_acc[c] += d * xhat;
      db_acc[c] += d;
    }
  }
  __syncthreads();
  for (int c = threadIdx.x; c < 2 * C; c += blockDim.x) {
    float s = 0.f;
    for (int w = 0; w < kBwdWarps; ++w) s += smem[w * 2 * C + c];
    partial[(int64_t)blockIdx.x * 2 * C + c] = s;
  }
}

__global__ void layernorm_param_grad_kernel(float* __restrict__ dweight, float* __restrict__ dbias,
                                            const float* __restrict__ partial, int nblocks, int C) {
  int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= C) return;
  float sw = 0.f, sb = 0.f;
  for (int k = 0; k < nblocks; ++k) {
    sw += partial[(int64_t)k * 2 * C + c];
    sb += partial[(int64_t)k * 2 * C + C + c];
  }
  dweight[c] += sw;
  dbias[c] += sb;
}

}  // namespace

void layernorm_forward(Tensor& out, Tensor& mean, Tensor& rstd, const Tensor& inp, const Tensor& weight,
                       const Tensor& bias) {
  int C = static_cast<int>(inp.size(-1));
  int64_t N = inp.numel() / C;
  if (N == 0) return;
  const int threads = kFwdWarps * kWarp;
  layernorm_forward_kernel<<<ceil_div(N, kFwdWarps), threads, 0, current_stream()>>>(
      out.data<float>(), mean.data<float>(), rstd.data<float>(), inp.data<float>(), weight.data<float>(),
      bias.data<float>(), N, C);
  SGPT_CUDA_LAUNCH_CHECK("layernorm_forward_kernel");
}

void layernorm_backward(Tensor& dinp, Tensor& dweight, Tensor& dbias, const Tensor& dout, const Tensor& inp,
                        const Tensor& weight, const Tensor& mean, const Tensor& rstd) {
  int C = static_cast<int>(inp.size(-1));
  int64_t N = inp.numel() / C;
  if (N == 0) return;
  int nblocks = std::min(ceil_div(N, kBwdWarps), 4 * sm_count());
  std::size_t smem = sizeof(float) * kBwdWarps * 2 * C;
  if (smem > 48 * 1024) {
    SGPT_CHECK(smem <= static_cast<std::size_t>(device_properties().sharedMemPerBlockOptin),
               "layernorm_backward: C = ", C, " needs ", smem, " bytes of shared memory");
    SGPT_CUDA_CHECK(cudaFuncSetAttribute(layernorm_backward_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         static_cast<int>(smem)));
  }
  float* partial = static_cast<float*>(scratch(Scratch::Reduce, sizeof(float) * nblocks * 2 * C, MemCategory::Other));
  layernorm_backward_kernel<<<nblocks, kBwdWarps * kWarp, smem, current_stream()>>>(
      dinp.data<float>(), partial, dout.data<float>(), inp.data<float>(), weight.data<float>(), mean.data<float>(),
      rstd.data<float>(), N, C);
  SGPT_CUDA_LAUNCH_CHECK("layernorm_backward_kernel");
  layernorm_param_grad_kernel<<<ceil_div(C, 256), 256, 0, current_stream()>>>(dweight.data<float>(),
                                                                              dbias.data<float>(), partial, nblocks, C);
  SGPT_CUDA_LAUNCH_CHECK("layernorm_param_grad_kernel");
}

}  // namespace sgpt::cuda
