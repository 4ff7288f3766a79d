// Token + position embedding (CUDA, f32).
//
// Contract (ops.hpp): tokens i32 [B,T], wte [Vp,C], wpe [maxT,C], out [B,T,C]
//   forward:  out[b,t,:] = wte[tokens[b,t],:] + wpe[t,:]                       (=)
//   backward: dwte[tokens[b,t],:] += dout[b,t,:];  dwpe[t,:] += sum_b dout[b,t,:]  (+=)
// The dwte scatter uses float atomics (positions that share a token add in an unspecified
// order, so dwte is not bit-for-bit reproducible); dwpe is a deterministic sum over b.
// Token ids are not range-checked on the device (the CPU-side dispatcher cannot see them).

#include "kernels/cuda/common.cuh"
#include "kernels/cuda_ops.hpp"

namespace sgpt::cuda {
namespace {

using namespace detail;

// One thread per output element (grid-stride).
__global__ void encoder_forward_kernel(float* __restrict__ out, const int* __restrict__ tokens,
                                       const float* __restrict__ wte, const float* __restrict__ wpe, int64_t BT,
                                       int T, int C) {
  int64_t n = BT * C;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    int64_t bt = i / C;
    int c = static_cast<int>(i - bt * C);
    int t = static_cast<int>(bt % T);
    out[i] = wte[(int64_t)tokens[bt] * C + c] + wpe[(int64_t)t * C + c];
  }
}

__global__ void encoder_backward_wte_kernel(float* __restrict__ dwte, const float* __restrict__ dout,
                                            const int* __restrict__ tokens, int64_t BT, int C) {
  int64_t n = BT * C;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    int64_t bt = i / C;
    int c = static_cast<int>(i - bt * C);
    atomicAdd(&dwte[(int64_t)tokens[bt] * C + c], dout[i]);
  }
}

// One thread per (t, c): dwpe[t,c] += sum_b dout[b,t,c].
__global__ void encoder_backward_wpe_kernel(float* __restrict__ dwpe, const float* __restrict__ dout, int B, int T,
                                            int C) {
  int64_t n = (int64_t)T * C;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    float s = 0.f;
    for (int b = 0; b < B; ++b) s += dout[(int64_t)b * n + i];
    dwpe[i] += s;
  }
}

}  // namespace

void encoder_forward(Tensor& out, const Tensor& tokens, const Tensor& wte, const Tensor& wpe) {
  int B = static_cast<int>(tokens.size(0)), T = static_cast<int>(tokens.size(1));
  int C = static_cast<int>(wte.size(1));
  int64_t BT = (int64_t)B * T;
  const int threads = 256;
  encoder_forward_kernel<<<grid_for(BT * C, threads), threads, 0, current_stream()>>>(
      out.data<float>(), tokens.data<int32_t>(), wte.data<float>(), wpe.data<float>(), BT, T, C);
  SGPT_CUDA_LAUNCH_CHECK("encoder_forward_kernel");
}

void encoder_backward(Tensor& dwte, Tensor& dwpe, const Tensor& dout, const Tensor& tokens) {
  int B = static_cast<int>(tokens.size(0)), T = static_cast<int>(tokens.size(1));
  int C = static_cast<int>(dwte.size(1));
  int64_t BT = (int64_t)B * T;
  const int threads = 256;
  encoder_backward_wte_kernel<<<grid_for(BT * C, threads), threads, 0, current_stream()>>>(
      dwte.data<float>(), dout.data<float>(), tokens.data<int32_t>(), BT, C);
  SGPT_CUDA_LAUNCH_CHECK("encoder_backward_wte_kernel");
  encoder_backward_wpe_kernel<<<grid_for((int64_t)T * C, threads), threads, 0, current_stream()>>>(
      dwpe.data<float>(), dout.data<float>(), B, T, C);
  SGPT_CUDA_LAUNCH_CHECK("encoder_backward_wpe_kernel");
}

}  // namespace sgpt::cuda
