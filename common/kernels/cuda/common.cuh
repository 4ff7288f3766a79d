#pragma once
// Helpers shared by the CUDA kernels of common/kernels/cuda (internal; device code).

#include <cuda_runtime.h>

#include <cstdint>

#include "core/check.hpp"
#include "core/tensor.hpp"
#include "kernels/cuda/cuda_context.hpp"

namespace sgpt::cuda::detail {

constexpr int kWarp = 32;

inline int ceil_div(int64_t a, int64_t b) { return static_cast<int>((a + b - 1) / b); }

/// Grid size for a grid-stride loop over n elements with `threads` per block (a few waves).
inline int grid_for(int64_t n, int threads) {
  int64_t blocks = (n + threads - 1) / threads;
  int64_t cap = static_cast<int64_t>(sm_count()) * 16;
  if (blocks > cap) blocks = cap;
  return static_cast<int>(blocks < 1 ? 1 : blocks);
}

/// True when p is aligned for 16-byte (float4) accesses.
inline bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

template <class T>
__device__ __forceinline__ T warp_sum(T v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

/// Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets the result.
/// `buf` is shared memory of at least 32 elements. Contains __syncthreads: call from all threads.
template <class T>
__device__ __forceinline__ T block_sum(T v, T* buf) {
  int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp, nwarps = blockDim.x / kWarp;
  v = warp_sum(v);
  __syncthreads();  // buf may still be read by a previous call
  if (lane == 0) buf[warp] = v;
  __syncthreads();
  v = lane < nwarps ? buf[lane] : T(0);
  return warp_sum(v);
}

/// Online-softmax pair (running max m, sum s of exp(x - m)) and its merge.
struct MaxSum {
  float m, s;
};
__device__ __forceinline__ MaxSum maxsum_merge(MaxSum a, MaxSum b) {
  float m = fmaxf(a.m, b.m);
  if (m == -INFINITY) return {m, 0.f};
  return {m, a.s * __expf(a.m - m) + b.s * __expf(b.m - m)};
}
__device__ __forceinline__ MaxSum warp_maxsum(MaxSum v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    MaxSum w{__shfl_xor_sync(0xffffffffu, v.m, o), __shfl_xor_sync(0xffffffffu, v.s, o)};
    v = maxsum_merge(v, w);
  }
  return v;
}

}  // namespace sgpt::cuda::detail

/// Checks the launch just made (names the kernel).
#define SGPT_CUDA_LAUNCH_CHECK(name) ::sgpt::cuda::check_launch(name)
