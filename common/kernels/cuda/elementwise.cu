// Element-wise ops (CUDA, f32): GELU, residual, and the helpers axpy_ / scale_.
//
// Contract (ops.hpp), all tensors of n elements:
//   gelu_forward:      out = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))   (=, out may alias inp)
//   gelu_backward:     dinp += gelu'(inp) * dout                                (+=)
//   residual_forward:  out = a + b                                              (=)
//   residual_backward: da += dout; db += dout                                   (+=)
//   axpy_:             y += alpha * x;     scale_: x *= alpha
// Grid-stride loops; 16-byte (float4) accesses when every pointer is 16-byte aligned.

#include "kernels/cuda/common.cuh"
#include "kernels/cuda_ops.hpp"

namespace sgpt::cuda {
namespace {

using namespace detail;

constexpr float kGeluS = 0.7978845608028654f;  // sqrt(2/pi)
constexpr float kGeluC = 0.044715f;

__device__ __forceinline__ float gelu(float x) {
  float u = kGeluS * (x + kGeluC * x * x * x);
  return 0.5f * x * (1.f + tanhf(u));
}
__device__ __forceinline__ float gelu_grad(float x) {
  float u = kGeluS * (x + kGeluC * x * x * x);
  float th = tanhf(u);
  float sech2 = 1.f - th * th;
  return 0.5f * (1.f + th) + 0.5f * x * sech2 * kGeluS * (1.f + 3.f * kGeluC * x * x);
}

// Applies f(i) to every index of [0, n) where f does its own loads/stores; the vector variant
// handles groups of 4 (n4 = n / 4 groups) and the tail with the scalar path.
template <class F4, class F1>
__global__ void map_kernel(int64_t n, bool vec, F4 f4, F1 f1) {
  int64_t stride = (int64_t)gridDim.x * blockDim.x;
  int64_t start = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (vec) {
    int64_t n4 = n / 4;
    for (int64_t i = start; i < n4; i += stride) f4(i);
    for (int64_t i = n4 * 4 + start; i < n; i += stride) f1(i);
  } else {
    for (int64_t i = start; i < n; i += stride) f1(i);
  }
}

template <class F4, class F1>
void launch_map(const char* name, int64_t n, bool vec, F4 f4, F1 f1) {
  if (n == 0) return;
  const int threads = 256;
  map_kernel<<<grid_for(vec ? (n + 3) / 4 : n, threads), threads, 0, current_stream()>>>(n, vec, f4, f1);
  SGPT_CUDA_LAUNCH_CHECK(name);
}

template <class... P>
bool all_aligned(const P*... p) {
  return (aligned16(p) && ...);
}

__device__ __forceinline__ float4 ld4(const float* p, int64_t i) { return reinterpret_cast<const float4*>(p)[i]; }
__device__ __forceinline__ void st4(float* p, int64_t i, float4 v) { reinterpret_cast<float4*>(p)[i] = v; }

}  // namespace

void gelu_forward(Tensor& out, const Tensor& inp) {
  float* o = out.data<float>();
  const float* x = inp.data<float>();
  launch_map(
      "gelu_forward", inp.numel(), all_aligned(o, x),
      [=] __device__(int64_t i) {
        float4 v = ld4(x, i);
        st4(o, i, make_float4(gelu(v.x), gelu(v.y), gelu(v.z), gelu(v.w)));
      },
      [=] __device__(int64_t i) { o[i] = gelu(x[i]); });
}

void gelu_backward(Tensor& dinp, const Tensor& inp, const Tensor& dout) {
  float* dx = dinp.data<float>();
  const float* x = inp.data<float>();
  const float* dy = dout.data<float>();
  launch_map(
      "gelu_backward", inp.numel(), all_aligned(dx, x, dy),
      [=] __device__(int64_t i) {
        float4 v = ld4(x, i), g = ld4(dy, i), a = ld4(dx, i);
        a.x += gelu_grad(v.x) * g.x;
        a.y += gelu_grad(v.y) * g.y;
        a.z += gelu_grad(v.z) * g.z;
        a.w += gelu_grad(v.w) * g.w;
        st4(dx, i, a);
      },
      [=] __device__(int64_t i) { dx[i] += gelu_grad(x[i]) * dy[i]; });
}

void residual_forward(Tensor& out, const Tensor& a, const Tensor& b) {
  float* o = out.data<float>();
  const float* pa = a.data<float>();
  const float* pb = b.data<float>();
  launch_map(
      "residual_forward", a.numel(), all_aligned(o, pa, pb),
      [=] __device__(int64_t i) {
        float4 x = ld4(pa, i), y = ld4(pb, i);
        st4(o, i, make_float4(x.x + y.x, x.y + y.y, x.z + y.z, x.w + y.w));
      },
      [=] __device__(int64_t i) { o[i] = pa[i] + pb[i]; });
}

void residual_backward(Tensor& da, Tensor& db, const Tensor& dout) {
  float* pa = da.data<float>();
  float* pb = db.data<float>();
  const float* g = dout.data<float>();
  if (pa == pb) {  // the same tensor twice: da += 2 dout
    launch_map(
        "residual_backward", dout.numel(), all_aligned(pa, g),
        [=] __device__(int64_t i) {
          float4 x = ld4(pa, i), y = ld4(g, i);
          st4(pa, i, make_float4(x.x + 2.f * y.x, x.y + 2.f * y.y, x.z + 2.f * y.z, x.w + 2.f * y.w));
        },
        [=] __device__(int64_t i) { pa[i] += 2.f * g[i]; });
    return;
  }
  launch_map(
      "residual_backward", dout.numel(), all_aligned(pa, pb, g),
      [=] __device__(int64_t i) {
        float4 y = ld4(g, i), x = ld4(pa, i), z = ld4(pb, i);
        st4(pa, i, make_float4(x.x + y.x, x.y + y.y, x.z + y.z, x.w + y.w));
        st4(pb, i, make_float4(z.x + y.x, z.y + y.y, z.z + y.z, z.w + y.w));
      },
      [=] __device__(int64_t i) {
        float y = g[i];
        pa[i] += y;
        pb[i] += y;
      });
}

void axpy_(Tensor& y, double alpha, const Tensor& x) {
  float* py = y.data<float>();
  const float* px = x.data<float>();
  float al = static_cast<float>(alpha);
  launch_map(
      "axpy_", x.numel(), all_aligned(py, px),
      [=] __device__(int64_t i) {
        float4 a = ld4(py, i), b = ld4(px, i);
        st4(py, i, make_float4(a.x + al * b.x, a.y + al * b.y, a.z + al * b.z, a.w + al * b.w));
      },
      [=] __device__(int64_t i) { py[i] += al * px[i]; });
}

void scale_(Tensor& x, double alpha) {
  float* p = x.data<float>();
  float al = static_cast<float>(alpha);
  launch_map(
      "scale_", x.numel(), all_aligned(p),
      [=] __device__(int64_t i) {
        float4 a = ld4(p, i);
        st4(p, i, make_float4(al * a.x, al * a.y, al * a.z, al * a.w));
      },
      [=] __device__(int64_t i) { p[i] *= al; });
}

}  // namespace sgpt::cuda
