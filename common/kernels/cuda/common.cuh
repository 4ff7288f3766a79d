#pragma once
// Helpers shared by the CUDA kernels of common/kernels/cuda (internal; device code).

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <initializer_list>
#include <type_traits>

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

// ---- storage types: f32 or bf16, computed in f32 ------------------------------------------------
//
// A kernel templated on its storage type T (float or __nv_bfloat16) loads with ld/load4, which
// widen to f32, computes in f32 and stores with st/store4, which round to nearest even: "compute
// in f32, round on store", the numerics of the CPU's 16-bit path (half_stage.hpp).

using bf16 = __nv_bfloat16;

/// The storage type of a DType on the GPU (F32 or BF16).
template <class T>
constexpr DType storage_dtype = std::is_same_v<T, float> ? DType::F32 : DType::BF16;

__device__ __forceinline__ float to_f32(float x) { return x; }
__device__ __forceinline__ float to_f32(bf16 x) { return __bfloat162float(x); }
template <class T>
__device__ __forceinline__ T from_f32(float x) {
  if constexpr (std::is_same_v<T, float>)
    return x;
  else
    return __float2bfloat16_rn(x);
}
/// One element, widened to f32.
template <class T>
__device__ __forceinline__ float ld(const T* p) {
  return to_f32(*p);
}
/// One element, rounded from f32.
template <class T>
__device__ __forceinline__ void st(T* p, float v) {
  *p = from_f32<T>(v);
}
/// Four consecutive elements p[0..3] (p aligned to 4 * sizeof(T): one 16- or 8-byte load).
template <class T>
__device__ __forceinline__ float4 load4(const T* p) {
  if constexpr (std::is_same_v<T, float>) {
    return *reinterpret_cast<const float4*>(p);
  } else {
    const uint2 u = *reinterpret_cast<const uint2*>(p);
    const float2 a = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&u.x));
    const float2 b = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&u.y));
    return make_float4(a.x, a.y, b.x, b.y);
  }
}
/// Stores four consecutive elements (alignment as load4).
template <class T>
__device__ __forceinline__ void store4(T* p, float4 v) {
  if constexpr (std::is_same_v<T, float>) {
    *reinterpret_cast<float4*>(p) = v;
  } else {
    __nv_bfloat162 a = __floats2bfloat162_rn(v.x, v.y), b = __floats2bfloat162_rn(v.z, v.w);
    uint2 u;
    u.x = *reinterpret_cast<uint32_t*>(&a);
    u.y = *reinterpret_cast<uint32_t*>(&b);
    *reinterpret_cast<uint2*>(p) = u;
  }
}
/// True when p is aligned for load4/store4 of T.
template <class T>
inline bool aligned4(const T* p) {
  return (reinterpret_cast<uintptr_t>(p) % (4 * sizeof(T))) == 0;
}

/// True when every defined tensor of `ts` has dtype `dt`.
inline bool all_dtype(DType dt, std::initializer_list<const Tensor*> ts) {
  for (const Tensor* t : ts)
    if (t->defined() && t->dtype() != dt) return false;
  return true;
}

/// Calls f.template operator()<T>() with T = float for F32 and bf16 for BF16 tensors.
template <class F>
void by_storage(DType dt, F&& f) {
  if (dt == DType::BF16)
    f.template operator()<bf16>();
  else
    f.template operator()<float>();
}

/// Typed device pointer of a tensor whose dtype is the storage type T (nullptr if undefined).
template <class T>
T* ptr(const Tensor& t) {
  if (!t.defined()) return nullptr;
  SGPT_CHECK(t.dtype() == storage_dtype<T>, "internal: tensor is ", dtype_name(t.dtype()), ", kernel expects ",
             dtype_name(storage_dtype<T>));
  return static_cast<T*>(t.raw());
}

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
