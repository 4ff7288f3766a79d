// Fused softmax + cross-entropy over the (padded) vocabulary (CUDA, f32 or bf16 storage; the
// softmax and the loss are computed in f32, probabilities and losses rounded on store).
//
// Contract (ops.hpp): logits, probs, dlogits [N,Vp] (N = B*T; only the first V columns are real),
// targets i32 [N] in [0,V), losses [N].
//   forward:  probs[:, :V] = softmax(logits[:, :V]), probs[:, V:] = 0;
//             losses = -log probs[target] = log(sum exp(x - max)) + max - x[target]   (=)
//   backward: dlogits = (probs - onehot(target)) * dloss, padded columns 0          (=)
// probs may alias logits and dlogits may alias probs (each element is read before it is written
// by the same thread; the target logit is read before the block's first barrier).
// One block per row; online (max, sum) in one pass, then the write pass; 16-byte accesses when
// Vp % 4 == 0 and the rows are aligned, and then the row is kept in shared memory between the
// passes if it fits (so the logits are read from memory once; in the storage type, so a bf16
// GPT-2 row takes 98 KiB and two 1024-thread blocks share a multiprocessor: one block's reads
// overlap the other's writes). A target outside [0,V) gives a NaN loss. Kernels templated on the storage type T of
// logits, probs, dlogits and losses (all f32 or all bf16); other mixes run on f32 copies.

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/stage.hpp"
#include "kernels/cuda_ops.hpp"

namespace sgpt::cuda {
namespace {

using namespace detail;

constexpr int kThreads = 512;
constexpr int kCacheThreads = 1024;  // one block per SM when the row is cached in shared memory

__device__ __forceinline__ void online(MaxSum& a, float x) {
  if (x > a.m) {
    a.s = a.s * __expf(a.m - x) + 1.f;
    a.m = x;
  } else {
    a.s += __expf(x - a.m);
  }
}

// A group of 4 storage elements as cached in shared memory: float4 for f32, 8 raw bytes for bf16.
template <class T>
using Group4 = std::conditional_t<std::is_same_v<T, float>, float4, uint2>;

template <class T>
__device__ __forceinline__ Group4<T> load_group(const T* p) {
  if constexpr (std::is_same_v<T, float>) return load4(p);
  else return *reinterpret_cast<const uint2*>(p);
}

template <class T>
__device__ __forceinline__ float4 widen(const Group4<T>& g) {
  if constexpr (std::is_same_v<T, float>) {
    return g;
  } else {
    const float2 a = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&g.x));
    const float2 b = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&g.y));
    return make_float4(a.x, a.y, b.x, b.y);
  }
}

// Blocks a multiprocessor must fit: two of the cached bf16 kernel (32 registers a thread).
template <class T, bool CACHE, int THREADS>
constexpr int kCeMinBlocks = CACHE && !std::is_same_v<T, float> && THREADS == 1024 ? 2 : 1;

// CACHE (needs VEC): the row is kept in shared memory between the two passes (Vp storage elements
// of dynamic shared memory), so logits are read from memory once.
template <class T, bool VEC, bool CACHE, int THREADS>
__global__ void __launch_bounds__(THREADS, (kCeMinBlocks<T, CACHE, THREADS>)) softmax_ce_forward_kernel(
    T* __restrict__ losses, T* probs, const T* logits, const int* __restrict__ targets, int V, int Vp) {
  extern __shared__ __align__(16) unsigned char row_bytes_[];
  Group4<T>* row_cache = reinterpret_cast<Group4<T>*>(row_bytes_);
  __shared__ MaxSum buf[THREADS / kWarp];
  int64_t row = blockIdx.x;
  const T* x = logits + row * Vp;
  T* p = probs + row * Vp;
  int tgt = targets[row];
  float x_tgt = 0.f;
  if (threadIdx.x == 0 && tgt >= 0 && tgt < V) x_tgt = ld(x + tgt);  // before any write of this row

  MaxSum ms{-INFINITY, 0.f};
  if (VEC) {
    int n4 = Vp / 4;
#pragma unroll 4
    for (int g = threadIdx.x; g < n4; g += THREADS) {
      const Group4<T> raw = load_group(x + 4 * g);
      if (CACHE) row_cache[g] = raw;
      const float4 v = widen<T>(raw);
      int j = 4 * g;
      if (j + 3 < V) {
        online(ms, v.x);
        online(ms, v.y);
        online(ms, v.z);
        online(ms, v.w);
      } else {
        if (j < V) online(ms, v.x);
        if (j + 1 < V) online(ms, v.y);
        if (j + 2 < V) online(ms, v.z);
      }
    }
  } else {
    for (int j = threadIdx.x; j < V; j += THREADS) online(ms, ld(x + j));
  }
  ms = warp_maxsum(ms);
  int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  if (lane == 0) buf[warp] = ms;
  __syncthreads();
  ms = lane < THREADS / kWarp ? buf[lane] : MaxSum{-INFINITY, 0.f};
  ms = warp_maxsum(ms);
  float inv = 1.f / ms.s;

  if (threadIdx.x == 0)
    st(losses + row, (tgt >= 0 && tgt < V) ? logf(ms.s) + ms.m - x_tgt : __int_as_float(0x7fc00000));
  if (VEC) {
    int n4 = Vp / 4;
#pragma unroll 4
    for (int g = threadIdx.x; g < n4; g += THREADS) {
      const float4 v = widen<T>(CACHE ? row_cache[g] : load_group(x + 4 * g));  // only what it cached itself
      int j = 4 * g;
      float4 o;
      o.x = j < V ? __expf(v.x - ms.m) * inv : 0.f;
      o.y = j + 1 < V ? __expf(v.y - ms.m) * inv : 0.f;
      o.z = j + 2 < V ? __expf(v.z - ms.m) * inv : 0.f;
      o.w = j + 3 < V ? __expf(v.w - ms.m) * inv : 0.f;
      store4(p + 4 * g, o);
    }
  } else {
    for (int j = threadIdx.x; j < Vp; j += THREADS) st(p + j, j < V ? __expf(ld(x + j) - ms.m) * inv : 0.f);
  }
}

template <class T, bool VEC>
__global__ void __launch_bounds__(kThreads) softmax_ce_backward_kernel(T* dlogits, const T* probs,
                                                                       const int* __restrict__ targets, float dloss,
                                                                       int V, int Vp) {
  int64_t row = blockIdx.x;
  const T* p = probs + row * Vp;
  T* d = dlogits + row * Vp;
  int tgt = targets[row];
  if (VEC) {
    int n4 = Vp / 4;
    for (int g = threadIdx.x; g < n4; g += kThreads) {
      float4 v = load4(p + 4 * g);
      int j = 4 * g;
      float4 o;
      o.x = j < V ? (v.x - (j == tgt ? 1.f : 0.f)) * dloss : 0.f;
      o.y = j + 1 < V ? (v.y - (j + 1 == tgt ? 1.f : 0.f)) * dloss : 0.f;
      o.z = j + 2 < V ? (v.z - (j + 2 == tgt ? 1.f : 0.f)) * dloss : 0.f;
      o.w = j + 3 < V ? (v.w - (j + 3 == tgt ? 1.f : 0.f)) * dloss : 0.f;
      store4(d + 4 * g, o);
    }
  } else {
    for (int j = threadIdx.x; j < Vp; j += kThreads)
      st(d + j, j < V ? (ld(p + j) - (j == tgt ? 1.f : 0.f)) * dloss : 0.f);
  }
}

}  // namespace

void softmax_crossentropy_forward(Tensor& losses, Tensor& probs, const Tensor& logits, const Tensor& targets,
                                  int vocab_size) {
  int Vp = static_cast<int>(logits.size(-1));
  int64_t N = logits.numel() / Vp;
  if (N == 0) return;
  SGPT_CHECK(N <= INT32_MAX, "softmax_crossentropy_forward: too many rows (", N, ")");
  if (!all_dtype(logits.dtype(), {&losses, &probs})) {
    F32Stage s;
    Tensor x = s.in(logits), l = s.out(losses, false), p = s.out(probs, false);  // in() first: probs may alias logits
    cuda::softmax_crossentropy_forward(l, p, x, targets, vocab_size);
    return s.store();
  }
  by_storage(logits.dtype(), [&]<class T>() {
    T* p = ptr<T>(probs);
    const T* x = ptr<T>(logits);
    T* l = ptr<T>(losses);
    const int* tg = targets.data<int32_t>();
    bool vec = Vp % 4 == 0 && aligned4(p) && aligned4(x);
    std::size_t row_bytes = sizeof(T) * static_cast<std::size_t>(Vp);
    // Keep the row in shared memory when it fits (GPT-2: 50304 elements, 197 KiB in f32 of the
    // 227 KiB, 98 KiB in bf16).
    bool cache = vec && row_bytes + 4096 <= static_cast<std::size_t>(device_properties().sharedMemPerBlockOptin);
    if (cache) {
      auto kernel = softmax_ce_forward_kernel<T, true, true, kCacheThreads>;
      static std::size_t configured = 0;
      if (configured < row_bytes) {
        SGPT_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                             static_cast<int>(row_bytes)));
        configured = row_bytes;
      }
      kernel<<<static_cast<unsigned>(N), kCacheThreads, row_bytes, current_stream()>>>(l, p, x, tg, vocab_size, Vp);
    } else {
      auto kernel = vec ? softmax_ce_forward_kernel<T, true, false, kThreads>
                        : softmax_ce_forward_kernel<T, false, false, kThreads>;
      kernel<<<static_cast<unsigned>(N), kThreads, 0, current_stream()>>>(l, p, x, tg, vocab_size, Vp);
    }
    SGPT_CUDA_LAUNCH_CHECK("softmax_ce_forward_kernel");
  });
}

void softmax_crossentropy_backward(Tensor& dlogits, const Tensor& probs, const Tensor& targets, double dloss,
                                   int vocab_size) {
  int Vp = static_cast<int>(probs.size(-1));
  int64_t N = probs.numel() / Vp;
  if (N == 0) return;
  SGPT_CHECK(N <= INT32_MAX, "softmax_crossentropy_backward: too many rows (", N, ")");
  if (!all_dtype(probs.dtype(), {&dlogits})) {
    F32Stage s;
    Tensor p = s.in(probs), d = s.out(dlogits, false);
    cuda::softmax_crossentropy_backward(d, p, targets, dloss, vocab_size);
    return s.store();
  }
  by_storage(probs.dtype(), [&]<class T>() {
    T* d = ptr<T>(dlogits);
    const T* p = ptr<T>(probs);
    bool vec = Vp % 4 == 0 && aligned4(p) && aligned4(d);
    auto kernel = vec ? softmax_ce_backward_kernel<T, true> : softmax_ce_backward_kernel<T, false>;
    kernel<<<static_cast<unsigned>(N), kThreads, 0, current_stream()>>>(d, p, targets.data<int32_t>(),
                                                                        static_cast<float>(dloss), vocab_size, Vp);
    SGPT_CUDA_LAUNCH_CHECK("softmax_ce_backward_kernel");
  });
}

}  // namespace sgpt::cuda
