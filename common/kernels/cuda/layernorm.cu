// Layer normalisation over the last dimension (CUDA, f32 or bf16 storage, f32 statistics).
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
// Each kernel is templated on the storage type T of its tensors (all f32 or all bf16); other
// mixes run on f32 copies (F32Stage). VEC (C % 4 == 0 and aligned rows): a lane handles groups
// of 4 consecutive columns with one 16-byte (f32) or 8-byte (bf16) access, so a warp reads 512 or
// 256 contiguous bytes at once instead of one element a lane.

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/stage.hpp"
#include "kernels/cuda_ops.hpp"

namespace sgpt::cuda {
namespace {

using namespace detail;

constexpr int kFwdWarps = 8;
constexpr int kBwdWarps = 8;  // 8 x 2C floats of shared memory: 48 KiB at C = 768

template <class T, bool VEC>
__global__ void layernorm_forward_kernel(T* __restrict__ out, T* __restrict__ mean, T* __restrict__ rstd,
                                         const T* __restrict__ inp, const T* __restrict__ weight,
                                         const T* __restrict__ bias, int64_t N, int C) {
  int lane = threadIdx.x % kWarp;
  int64_t row = blockIdx.x * (int64_t)(blockDim.x / kWarp) + threadIdx.x / kWarp;
  if (row >= N) return;
  const T* x = inp + row * C;
  T* o = out + row * C;
  float m, r;
  if constexpr (VEC) {
    float s = 0.f;
    for (int c = 4 * lane; c < C; c += 4 * kWarp) {
      const float4 a = load4(x + c);
      s += (a.x + a.y) + (a.z + a.w);
    }
    m = warp_sum(s) / C;
    float v = 0.f;
    for (int c = 4 * lane; c < C; c += 4 * kWarp) {
      const float4 a = load4(x + c);
      v += (a.x - m) * (a.x - m) + (a.y - m) * (a.y - m) + (a.z - m) * (a.z - m) + (a.w - m) * (a.w - m);
    }
    r = rsqrtf(warp_sum(v) / C + 1e-5f);
    for (int c = 4 * lane; c < C; c += 4 * kWarp) {
      const float4 a = load4(x + c), w = load4(weight + c), b = load4(bias + c);
      store4(o + c, make_float4((a.x - m) * r * w.x + b.x, (a.y - m) * r * w.y + b.y, (a.z - m) * r * w.z + b.z,
                                (a.w - m) * r * w.w + b.w));
    }
  } else {
    float s = 0.f;
    for (int c = lane; c < C; c += kWarp) s += ld(x + c);
    m = warp_sum(s) / C;
    float v = 0.f;
    for (int c = lane; c < C; c += kWarp) {
      float d = ld(x + c) - m;
      v += d * d;
    }
    r = rsqrtf(warp_sum(v) / C + 1e-5f);
    for (int c = lane; c < C; c += kWarp) st(o + c, (ld(x + c) - m) * r * ld(weight + c) + ld(bias + c));
  }
  if (lane == 0) {
    st(mean + row, m);
    st(rstd + row, r);
  }
}

// Dynamic shared memory: kBwdWarps * 2 * C floats (per-warp dweight and dbias accumulators).
// partial: [gridDim.x, 2C] (dweight partials, then dbias partials).
template <class T, bool VEC>
__global__ void layernorm_backward_kernel(T* __restrict__ dinp, float* __restrict__ partial,
                                          const T* __restrict__ dout, const T* __restrict__ inp,
                                          const T* __restrict__ weight, const T* __restrict__ mean,
                                          const T* __restrict__ rstd, int64_t N, int C) {
  extern __shared__ float smem[];
  int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  for (int i = threadIdx.x; i < kBwdWarps * 2 * C; i += blockDim.x) smem[i] = 0.f;
  __syncthreads();
  float* dw_acc = smem + warp * 2 * C;
  float* db_acc = dw_acc + C;
  for (int64_t row = blockIdx.x * (int64_t)kBwdWarps + warp; row < N; row += (int64_t)gridDim.x * kBwdWarps) {
    const T* x = inp + row * C;
    const T* dy = dout + row * C;
    float m = ld(mean + row), r = ld(rstd + row);
    float sg = 0.f, sgx = 0.f;
    if constexpr (VEC) {
      for (int c = 4 * lane; c < C; c += 4 * kWarp) {
        const float4 a = load4(x + c), d = load4(dy + c), w = load4(weight + c);
        const float g0 = d.x * w.x, g1 = d.y * w.y, g2 = d.z * w.z, g3 = d.w * w.w;
        sg += (g0 + g1) + (g2 + g3);
        sgx += g0 * (a.x - m) * r + g1 * (a.y - m) * r + g2 * (a.z - m) * r + g3 * (a.w - m) * r;
      }
      const float mg = warp_sum(sg) / C, mgx = warp_sum(sgx) / C;
      T* dx = dinp + row * C;
      for (int c = 4 * lane; c < C; c += 4 * kWarp) {
        const float4 a = load4(x + c), d = load4(dy + c), w = load4(weight + c);
        float4 acc = load4(dx + c);
        const float h0 = (a.x - m) * r, h1 = (a.y - m) * r, h2 = (a.z - m) * r, h3 = (a.w - m) * r;
        acc.x += (d.x * w.x - mg - h0 * mgx) * r;
        acc.y += (d.y * w.y - mg - h1 * mgx) * r;
        acc.z += (d.z * w.z - mg - h2 * mgx) * r;
        acc.w += (d.w * w.w - mg - h3 * mgx) * r;
        store4(dx + c, acc);
        float4* dw4 = reinterpret_cast<float4*>(dw_acc + c);  // 16-byte aligned: C % 4 == 0
        float4* db4 = reinterpret_cast<float4*>(db_acc + c);
        float4 pw = *dw4, pb = *db4;
        pw.x += d.x * h0;
        pw.y += d.y * h1;
        pw.z += d.z * h2;
        pw.w += d.w * h3;
        pb.x += d.x;
        pb.y += d.y;
        pb.z += d.z;
        pb.w += d.w;
        *dw4 = pw;
        *db4 = pb;
      }
    } else {
      for (int c = lane; c < C; c += kWarp) {
        float xhat = (ld(x + c) - m) * r;
        float g = ld(dy + c) * ld(weight + c);
        sg += g;
        sgx += g * xhat;
      }
      float mg = warp_sum(sg) / C, mgx = warp_sum(sgx) / C;
      T* dx = dinp + row * C;
      for (int c = lane; c < C; c += kWarp) {
        float xhat = (ld(x + c) - m) * r;
        float d = ld(dy + c);
        float g = d * ld(weight + c);
        st(dx + c, ld(dx + c) + (g - mg - xhat * mgx) * r);
        dw_acc[c] += d * xhat;
        db_acc[c] += d;
      }
    }
  }
  __syncthreads();
  for (int c = threadIdx.x; c < 2 * C; c += blockDim.x) {
    float s = 0.f;
    for (int w = 0; w < kBwdWarps; ++w) s += smem[w * 2 * C + c];
    partial[(int64_t)blockIdx.x * 2 * C + c] = s;
  }
}

template <class T>
__global__ void layernorm_param_grad_kernel(T* __restrict__ dweight, T* __restrict__ dbias,
                                            const float* __restrict__ partial, int nblocks, int C) {
  int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= C) return;
  float sw = 0.f, sb = 0.f;
  for (int k = 0; k < nblocks; ++k) {
    sw += partial[(int64_t)k * 2 * C + c];
    sb += partial[(int64_t)k * 2 * C + C + c];
  }
  st(dweight + c, ld(dweight + c) + sw);
  st(dbias + c, ld(dbias + c) + sb);
}

}  // namespace

void layernorm_forward(Tensor& out, Tensor& mean, Tensor& rstd, const Tensor& inp, const Tensor& weight,
                       const Tensor& bias) {
  int C = static_cast<int>(inp.size(-1));
  int64_t N = inp.numel() / C;
  if (N == 0) return;
  if (!all_dtype(inp.dtype(), {&out, &mean, &rstd, &weight, &bias})) {
    F32Stage s;
    Tensor o = s.out(out, false), m = s.out(mean, false), r = s.out(rstd, false);
    cuda::layernorm_forward(o, m, r, s.in(inp), s.in(weight), s.in(bias));
    return s.store();
  }
  const int threads = kFwdWarps * kWarp;
  by_storage(inp.dtype(), [&]<class T>() {
    const bool vec = C % 4 == 0 && aligned4(ptr<T>(out)) && aligned4(ptr<T>(inp)) && aligned4(ptr<T>(weight)) &&
                     aligned4(ptr<T>(bias));
    auto kernel = vec ? layernorm_forward_kernel<T, true> : layernorm_forward_kernel<T, false>;
    kernel<<<ceil_div(N, kFwdWarps), threads, 0, current_stream()>>>(ptr<T>(out), ptr<T>(mean), ptr<T>(rstd),
                                                                      ptr<T>(inp), ptr<T>(weight), ptr<T>(bias), N, C);
    SGPT_CUDA_LAUNCH_CHECK("layernorm_forward_kernel");
  });
}

void layernorm_backward(Tensor& dinp, Tensor& dweight, Tensor& dbias, const Tensor& dout, const Tensor& inp,
                        const Tensor& weight, const Tensor& mean, const Tensor& rstd) {
  int C = static_cast<int>(inp.size(-1));
  int64_t N = inp.numel() / C;
  if (N == 0) return;
  if (!all_dtype(inp.dtype(), {&dinp, &dweight, &dbias, &dout, &weight, &mean, &rstd})) {
    F32Stage s;
    Tensor di = s.out(dinp, true), dw = s.out(dweight, true), db = s.out(dbias, true);
    cuda::layernorm_backward(di, dw, db, s.in(dout), s.in(inp), s.in(weight), s.in(mean), s.in(rstd));
    return s.store();
  }
  int nblocks = std::min(ceil_div(N, kBwdWarps), 4 * sm_count());
  std::size_t smem = sizeof(float) * kBwdWarps * 2 * C;
  float* partial = static_cast<float*>(scratch(Scratch::Reduce, sizeof(float) * nblocks * 2 * C, MemCategory::Other));
  by_storage(inp.dtype(), [&]<class T>() {
    const bool vec = C % 4 == 0 && aligned4(ptr<T>(dinp)) && aligned4(ptr<T>(dout)) && aligned4(ptr<T>(inp)) &&
                     aligned4(ptr<T>(weight));
    auto kernel = vec ? layernorm_backward_kernel<T, true> : layernorm_backward_kernel<T, false>;
    if (smem > 48 * 1024) {
      SGPT_CHECK(smem <= static_cast<std::size_t>(device_properties().sharedMemPerBlockOptin),
                 "layernorm_backward: C = ", C, " needs ", smem, " bytes of shared memory");
      SGPT_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
    }
    kernel<<<nblocks, kBwdWarps * kWarp, smem, current_stream()>>>(
        ptr<T>(dinp), partial, ptr<T>(dout), ptr<T>(inp), ptr<T>(weight), ptr<T>(mean), ptr<T>(rstd), N, C);
    SGPT_CUDA_LAUNCH_CHECK("layernorm_backward_kernel");
    layernorm_param_grad_kernel<T><<<ceil_div(C, 256), 256, 0, current_stream()>>>(ptr<T>(dweight), ptr<T>(dbias),
                                                                                   partial, nblocks, C);
    SGPT_CUDA_LAUNCH_CHECK("layernorm_param_grad_kernel");
  });
}

}  // namespace sgpt::cuda
