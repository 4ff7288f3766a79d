// f32 <-> bf16 casts (CUDA). Contract (convert.hpp):
//   f32_to_bf16: dst[i] = round_to_nearest_even(src[i]);   bf16_to_f32: dst[i] = src[i]
// Grid-stride loops over groups of 4 elements (16 bytes of f32 in, 8 of bf16 out) when both
// pointers allow it, then the tail one by one.

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/convert.hpp"

namespace sgpt::cuda {
namespace {

using namespace detail;

__global__ void f32_to_bf16_kernel(__nv_bfloat16* __restrict__ dst, const float* __restrict__ src, int64_t n,
                                   bool vec) {
  const int64_t stride = (int64_t)gridDim.x * blockDim.x, start = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  int64_t done = 0;
  if (vec) {
    for (int64_t i = start; i < n / 4; i += stride) {
      float4 v = reinterpret_cast<const float4*>(src)[i];
      __nv_bfloat162* d = reinterpret_cast<__nv_bfloat162*>(dst) + 2 * i;
      d[0] = __floats2bfloat162_rn(v.x, v.y);
      d[1] = __floats2bfloat162_rn(v.z, v.w);
    }
    done = n / 4 * 4;
  }
  for (int64_t i = done + start; i < n; i += stride) dst[i] = __float2bfloat16_rn(src[i]);
}

__global__ void bf16_to_f32_kernel(float* __restrict__ dst, const __nv_bfloat16* __restrict__ src, int64_t n) {
  const int64_t stride = (int64_t)gridDim.x * blockDim.x;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += stride)
    dst[i] = __bfloat162float(src[i]);
}

}  // namespace

void f32_to_bf16(__nv_bfloat16* dst, const float* src, int64_t n) {
  if (n == 0) return;
  // 8-byte stores of two bf16 pairs need dst aligned to 8 bytes, loads of float4 src to 16.
  const bool vec = aligned16(src) && (reinterpret_cast<uintptr_t>(dst) & 7u) == 0;
  const int threads = 256;
  f32_to_bf16_kernel<<<grid_for(vec ? (n + 3) / 4 : n, threads), threads, 0, current_stream()>>>(dst, src, n, vec);
  SGPT_CUDA_LAUNCH_CHECK("f32_to_bf16_kernel");
}

void bf16_to_f32(float* dst, const __nv_bfloat16* src, int64_t n) {
  if (n == 0) return;
  const int threads = 256;
  bf16_to_f32_kernel<<<grid_for(n, threads), threads, 0, current_stream()>>>(dst, src, n);
  SGPT_CUDA_LAUNCH_CHECK("bf16_to_f32_kernel");
}

}  // namespace sgpt::cuda
