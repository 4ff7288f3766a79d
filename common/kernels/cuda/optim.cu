// Optimizer-side ops (CUDA, f32 or bf16 storage): sum_of_squares (for the gradient norm), AdamW,
// and the mixed-precision helpers copy_cast (f32 <-> bf16) and count_nonfinite.
//
// Contract (ops.hpp), tensors of n elements:
//   sum_of_squares(x) = sum x_i^2, accumulated in double; returned to the host (this waits for
//                       the current stream). Deterministic: fixed grid, fixed reduction order.
//   adamw_update (t >= 1, in place on param, m, v), g = grad_scale * grad:
//     m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;  mhat = m/(1-b1^t);  vhat = v/(1-b2^t)
//     param -= lr * (mhat / (sqrt(vhat) + eps) + wd * param)      (wd only if `decay`)
//   One fused kernel; the bias corrections are computed once on the host in double. Its
//   storage types: param and grad each f32 or bf16 (lesson 05: f32 master, bf16 gradients), m
//   and v f32; bf16 moments run on f32 copies (F32Stage).
//   copy_cast(dst, src): dst = src, rounded to nearest even into bf16 or widened (exact) into f32.
//   count_nonfinite(x): the number of inf and NaN elements (returned to the host; waits).

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/stage.hpp"
#include "kernels/cuda_ops.hpp"

#include <cmath>

namespace sgpt::cuda {
namespace {

using namespace detail;

constexpr int kSsqThreads = 512;

// MODE 0: sum of squares (double); MODE 1: count of inf/NaN elements (as a double).
template <int MODE>
__device__ __forceinline__ double reduce_term(float x) {
  if constexpr (MODE == 0)
    return (double)x * x;
  else
    return isfinite(x) ? 0.0 : 1.0;
}

template <class T, int MODE>
__global__ void __launch_bounds__(kSsqThreads)
    sum_of_squares_partial_kernel(double* __restrict__ partial, const T* __restrict__ x, int64_t n, bool vec) {
  __shared__ double buf[kWarp];
  double s = 0.0;
  int64_t stride = (int64_t)gridDim.x * blockDim.x;
  int64_t start = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (vec) {
    int64_t n4 = n / 4;
    for (int64_t i = start; i < n4; i += stride) {
      float4 v = load4(x + 4 * i);
      s += reduce_term<MODE>(v.x) + reduce_term<MODE>(v.y) + reduce_term<MODE>(v.z) + reduce_term<MODE>(v.w);
    }
    for (int64_t i = n4 * 4 + start; i < n; i += stride) s += reduce_term<MODE>(ld(x + i));
  } else {
    for (int64_t i = start; i < n; i += stride) s += reduce_term<MODE>(ld(x + i));
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

template <class TP, class TG>
__global__ void adamw_kernel(TP* __restrict__ p, const TG* __restrict__ g, float* __restrict__ m,
                             float* __restrict__ v, int64_t n, bool vec, AdamWArgs a) {
  int64_t stride = (int64_t)gridDim.x * blockDim.x;
  int64_t start = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  int64_t done = 0;
  if (vec) {
    int64_t n4 = n / 4;
    float4* m4 = reinterpret_cast<float4*>(m);
    float4* v4 = reinterpret_cast<float4*>(v);
    for (int64_t i = start; i < n4; i += stride) {
      float4 P = load4(p + 4 * i), G = load4(g + 4 * i), M = m4[i], Vv = v4[i];
      adamw_one(P.x, G.x, M.x, Vv.x, a);
      adamw_one(P.y, G.y, M.y, Vv.y, a);
      adamw_one(P.z, G.z, M.z, Vv.z, a);
      adamw_one(P.w, G.w, M.w, Vv.w, a);
      store4(p + 4 * i, P);
      m4[i] = M;
      v4[i] = Vv;
    }
    done = n4 * 4;
  }
  for (int64_t i = done + start; i < n; i += stride) {
    float P = ld(p + i);
    adamw_one(P, ld(g + i), m[i], v[i], a);
    st(p + i, P);
  }
}

// adamw_update_segments: up to kMaxSegments segments a launch, their bounds and decay flags passed
// by value (under the 4 KB kernel-parameter limit) and copied to shared memory. A thread walks its
// grid-stride groups of 4 in increasing order, so a cursor finds each group's segment; a group
// inside one segment takes the 16-byte path, one that straddles a boundary or a gap goes element
// by element (a handful a step).
constexpr int kMaxSegments = 192;
struct SegmentTable {
  int64_t begin[kMaxSegments], end[kMaxSegments];
  float wd[kMaxSegments];  // weight decay of the segment (0 without decay)
  int count;
};

template <class TP, class TG>
__global__ void __launch_bounds__(256) adamw_segments_kernel(TP* __restrict__ p, const TG* __restrict__ g,
                                                             float* __restrict__ m, float* __restrict__ v,
                                                             bool vec, AdamWArgs a, const SegmentTable tab) {
  __shared__ int64_t sb[kMaxSegments], se[kMaxSegments];
  __shared__ float sw[kMaxSegments];
  for (int i = threadIdx.x; i < tab.count; i += blockDim.x) {
    sb[i] = tab.begin[i];
    se[i] = tab.end[i];
    sw[i] = tab.wd[i];
  }
  __syncthreads();
  const int nseg = tab.count;
  const int64_t lo = sb[0], hi = se[nseg - 1];
  const int64_t stride = (int64_t)gridDim.x * blockDim.x;
  auto one = [&](int64_t i, int& c) {  // element i, cursor c (segments before c end at or before i)
    while (c < nseg && se[c] <= i) ++c;
    if (c == nseg || i < sb[c]) return;  // in a gap
    AdamWArgs b = a;
    b.wd = sw[c];
    float P = ld(p + i);
    adamw_one(P, ld(g + i), m[i], v[i], b);
    st(p + i, P);
  };
  int c = 0;
  if (vec) {
    for (int64_t i = (lo / 4 + blockIdx.x * (int64_t)blockDim.x + threadIdx.x) * 4; i < hi; i += 4 * stride) {
      while (c < nseg && se[c] <= i) ++c;
      if (c < nseg && i >= sb[c] && i + 4 <= se[c]) {
        AdamWArgs b = a;
        b.wd = sw[c];
        float4 P = load4(p + i), G = load4(g + i);
        float4 M = *reinterpret_cast<float4*>(m + i), Vv = *reinterpret_cast<float4*>(v + i);
        adamw_one(P.x, G.x, M.x, Vv.x, b);
        adamw_one(P.y, G.y, M.y, Vv.y, b);
        adamw_one(P.z, G.z, M.z, Vv.z, b);
        adamw_one(P.w, G.w, M.w, Vv.w, b);
        store4(p + i, P);
        *reinterpret_cast<float4*>(m + i) = M;
        *reinterpret_cast<float4*>(v + i) = Vv;
      } else {
        int ce = c;
        for (int64_t j = i; j < i + 4 && j < hi; ++j) one(j, ce);
      }
    }
  } else {
    for (int64_t i = lo + blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < hi; i += stride) one(i, c);
  }
}

// Sum (MODE 0: of squares; 1: of non-finite flags) of x's n elements in double, to the host.
template <int MODE, class T>
double reduce_to_host(const T* px, int64_t n) {
  if (n == 0) return 0.0;
  int parts = std::min(grid_for(n, kSsqThreads), 4 * sm_count());
  double* buf = static_cast<double*>(scratch(Scratch::Reduce, sizeof(double) * (parts + 1), MemCategory::Other));
  sum_of_squares_partial_kernel<T, MODE><<<parts, kSsqThreads, 0, current_stream()>>>(buf + 1, px, n, aligned4(px));
  SGPT_CUDA_LAUNCH_CHECK("sum_of_squares_partial_kernel");
  sum_of_squares_final_kernel<<<1, kSsqThreads, 0, current_stream()>>>(buf, buf + 1, parts);
  SGPT_CUDA_LAUNCH_CHECK("sum_of_squares_final_kernel");
  double* host = static_cast<double*>(pinned_host(sizeof(double)));
  SGPT_CUDA_CHECK(cudaMemcpyAsync(host, buf, sizeof(double), cudaMemcpyDeviceToHost, current_stream()));
  synchronize();
  return *host;
}

}  // namespace

double sum_of_squares(const Tensor& x) {
  double r = 0.0;
  by_storage(x.dtype(), [&]<class T>() { r = reduce_to_host<0>(ptr<T>(x), x.numel()); });
  return r;
}

int64_t count_nonfinite(const Tensor& x) {
  double r = 0.0;
  by_storage(x.dtype(), [&]<class T>() { r = reduce_to_host<1>(ptr<T>(x), x.numel()); });
  return static_cast<int64_t>(r);
}

void copy_cast(Tensor& dst, const Tensor& src) {
  const int64_t n = src.numel();
  if (dst.dtype() == src.dtype()) return dst.copy_from(src);
  if (dst.dtype() == DType::BF16)
    f32_to_bf16(ptr<bf16>(dst), ptr<float>(src), n);
  else
    bf16_to_f32(ptr<float>(dst), ptr<bf16>(src), n);
}

namespace {
AdamWArgs adamw_args(const AdamWConfig& cfg, int64_t t, bool decay) {
  AdamWArgs a;
  a.lr = static_cast<float>(cfg.lr);
  a.b1 = static_cast<float>(cfg.beta1);
  a.b2 = static_cast<float>(cfg.beta2);
  a.eps = static_cast<float>(cfg.eps);
  a.wd = decay ? static_cast<float>(cfg.weight_decay) : 0.f;
  a.inv_bc1 = static_cast<float>(1.0 / (1.0 - std::pow(cfg.beta1, static_cast<double>(t))));
  a.inv_bc2 = static_cast<float>(1.0 / (1.0 - std::pow(cfg.beta2, static_cast<double>(t))));
  a.gs = static_cast<float>(cfg.grad_scale);
  return a;
}
}  // namespace

void adamw_update(Tensor& param, const Tensor& grad, Tensor& m, Tensor& v, const AdamWConfig& cfg, int64_t t,
                  bool decay) {
  SGPT_CHECK(t >= 1, "adamw_update: step t = ", t, " must be >= 1");
  int64_t n = param.numel();
  if (n == 0) return;
  const AdamWArgs a = adamw_args(cfg, t, decay);
  if (!all_dtype(DType::F32, {&m, &v})) {  // bf16 moments: f32 copies
    F32Stage s;
    Tensor mm = s.out(m, true), vv = s.out(v, true);
    cuda::adamw_update(param, grad, mm, vv, cfg, t, decay);
    return s.store();
  }
  float* pm = m.data<float>();
  float* pv = v.data<float>();
  by_storage(param.dtype(), [&]<class TP>() {
    by_storage(grad.dtype(), [&]<class TG>() {
      TP* pp = ptr<TP>(param);
      const TG* pg = ptr<TG>(grad);
      bool vec = aligned4(pp) && aligned4(pg) && aligned16(pm) && aligned16(pv);
      const int threads = 256;
      adamw_kernel<TP, TG><<<grid_for(vec ? (n + 3) / 4 : n, threads), threads, 0, current_stream()>>>(pp, pg, pm, pv,
                                                                                                       n, vec, a);
      SGPT_CUDA_LAUNCH_CHECK("adamw_kernel");
    });
  });
}

// Callers (sgpt::adamw_update_segments) pass f32 moments and checked, sorted, disjoint segments.
void adamw_update_segments(Tensor& param, const Tensor& grad, Tensor& m, Tensor& v, const AdamWConfig& cfg,
                           int64_t t, const std::vector<AdamWSegment>& segments) {
  SGPT_CHECK(t >= 1, "adamw_update_segments: step t = ", t, " must be >= 1");
  AdamWArgs a = adamw_args(cfg, t, false);
  const float wd = static_cast<float>(cfg.weight_decay);
  float* pm = m.data<float>();
  float* pv = v.data<float>();
  for (std::size_t first = 0; first < segments.size(); first += kMaxSegments) {  // one launch per 192
    SegmentTable tab{};
    tab.count = 0;
    for (std::size_t s = first; s < segments.size() && tab.count < kMaxSegments; ++s) {
      if (segments[s].numel == 0) continue;
      tab.begin[tab.count] = segments[s].begin;
      tab.end[tab.count] = segments[s].begin + segments[s].numel;
      tab.wd[tab.count] = segments[s].decay ? wd : 0.f;
      ++tab.count;
    }
    if (tab.count == 0) continue;
    const int64_t span = tab.end[tab.count - 1] - tab.begin[0];
    by_storage(param.dtype(), [&]<class TP>() {
      by_storage(grad.dtype(), [&]<class TG>() {
        TP* pp = ptr<TP>(param);
        const TG* pg = ptr<TG>(grad);
        const bool vec = aligned4(pp) && aligned4(pg) && aligned16(pm) && aligned16(pv);
        const int threads = 256;
        adamw_segments_kernel<TP, TG><<<grid_for(vec ? span / 4 + 2 : span, threads), threads, 0, current_stream()>>>(
            pp, pg, pm, pv, vec, a, tab);
        SGPT_CUDA_LAUNCH_CHECK("adamw_segments_kernel");
      });
    });
  }
}

}  // namespace sgpt::cuda
