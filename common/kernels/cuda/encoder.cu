// Token + position embedding (CUDA, f32 or bf16 storage).
//
// Contract (ops.hpp): tokens i32 [B,T], wte [Vp,C], wpe [maxT,C], out [B,T,C]
//   forward:  out[b,t,:] = wte[tokens[b,t],:] + wpe[t,:]                       (=)
//   backward: dwte[tokens[b,t],:] += dout[b,t,:];  dwpe[t,:] += sum_b dout[b,t,:]  (+=)
// The dwte scatter uses float atomics (positions that share a token add in an unspecified
// order, so dwte is not bit-for-bit reproducible); dwpe is a deterministic sum over b.
// bf16 storage: the dwte scatter adds in f32 into scratch (atomics on bf16 would round at every
// add), then one pass adds that into dwte, rounding once. f32 and bf16 mixed: f32 copies.
// Token ids are not range-checked on the device (the CPU-side dispatcher cannot see them).

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/stage.hpp"
#include "kernels/cuda_ops.hpp"

namespace sgpt::cuda {
namespace {

using namespace detail;

// One thread per output element (grid-stride).
template <class T>
__global__ void encoder_forward_kernel(T* __restrict__ out, const int* __restrict__ tokens,
                                       const T* __restrict__ wte, const T* __restrict__ wpe, int64_t BT,
                                       int T_, int C) {
  int64_t n = BT * C;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    int64_t bt = i / C;
    int c = static_cast<int>(i - bt * C);
    int t = static_cast<int>(bt % T_);
    st(out + i, ld(wte + (int64_t)tokens[bt] * C + c) + ld(wpe + (int64_t)t * C + c));
  }
}

template <class T>
__global__ void encoder_backward_wte_kernel(float* __restrict__ dwte, const T* __restrict__ dout,
                                            const int* __restrict__ tokens, int64_t BT, int C) {
  int64_t n = BT * C;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    int64_t bt = i / C;
    int c = static_cast<int>(i - bt * C);
    atomicAdd(&dwte[(int64_t)tokens[bt] * C + c], ld(dout + i));
  }
}

// One thread per (t, c): dwpe[t,c] += sum_b dout[b,t,c].
template <class T>
__global__ void encoder_backward_wpe_kernel(T* __restrict__ dwpe, const T* __restrict__ dout, int B, int T_,
                                            int C) {
  int64_t n = (int64_t)T_ * C;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    float s = 0.f;
    for (int b = 0; b < B; ++b) s += ld(dout + (int64_t)b * n + i);
    st(dwpe + i, ld(dwpe + i) + s);
  }
}

// dst[i] = round(dst[i] + acc[i]) (bf16 dwte += the f32 scatter).
__global__ void add_f32_into_kernel(bf16* __restrict__ dst, const float* __restrict__ acc, int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    dst[i] = __float2bfloat16_rn(__bfloat162float(dst[i]) + acc[i]);
}

}  // namespace

void encoder_forward(Tensor& out, const Tensor& tokens, const Tensor& wte, const Tensor& wpe) {
  if (!all_dtype(wte.dtype(), {&out, &wpe})) {
    F32Stage s;
    Tensor o = s.out(out, false);
    cuda::encoder_forward(o, tokens, s.in(wte), s.in(wpe));
    return s.store();
  }
  int B = static_cast<int>(tokens.size(0)), T = static_cast<int>(tokens.size(1));
  int C = static_cast<int>(wte.size(1));
  int64_t BT = (int64_t)B * T;
  const int threads = 256;
  by_storage(wte.dtype(), [&]<class E>() {
    encoder_forward_kernel<E><<<grid_for(BT * C, threads), threads, 0, current_stream()>>>(
        ptr<E>(out), tokens.data<int32_t>(), ptr<E>(wte), ptr<E>(wpe), BT, T, C);
    SGPT_CUDA_LAUNCH_CHECK("encoder_forward_kernel");
  });
}

void encoder_backward(Tensor& dwte, Tensor& dwpe, const Tensor& dout, const Tensor& tokens) {
  if (!all_dtype(dout.dtype(), {&dwte, &dwpe})) {
    F32Stage s;
    Tensor a = s.out(dwte, true), b = s.out(dwpe, true);
    cuda::encoder_backward(a, b, s.in(dout), tokens);
    return s.store();
  }
  int B = static_cast<int>(tokens.size(0)), T = static_cast<int>(tokens.size(1));
  int C = static_cast<int>(dwte.size(1));
  int64_t BT = (int64_t)B * T;
  const int threads = 256;
  by_storage(dout.dtype(), [&]<class E>() {
    float* acc = nullptr;
    if constexpr (std::is_same_v<E, float>) {
      acc = dwte.data<float>();
    } else {  // f32 accumulator in the (otherwise idle) cast scratch
      acc = static_cast<float*>(scratch(Scratch::CastA, sizeof(float) * dwte.numel(), MemCategory::Other));
      SGPT_CUDA_CHECK(cudaMemsetAsync(acc, 0, sizeof(float) * dwte.numel(), current_stream()));
    }
    encoder_backward_wte_kernel<E><<<grid_for(BT * C, threads), threads, 0, current_stream()>>>(
        acc, ptr<E>(dout), tokens.data<int32_t>(), BT, C);
    SGPT_CUDA_LAUNCH_CHECK("encoder_backward_wte_kernel");
    if constexpr (!std::is_same_v<E, float>) {
      add_f32_into_kernel<<<grid_for(dwte.numel(), threads), threads, 0, current_stream()>>>(ptr<bf16>(dwte), acc,
                                                                                          dwte.numel());
      SGPT_CUDA_LAUNCH_CHECK("add_f32_into_kernel");
    }
    encoder_backward_wpe_kernel<E><<<grid_for((int64_t)T * C, threads), threads, 0, current_stream()>>>(
        ptr<E>(dwpe), ptr<E>(dout), B, T, C);
    SGPT_CUDA_LAUNCH_CHECK("encoder_backward_wpe_kernel");
  });
}

}  // namespace sgpt::cuda
