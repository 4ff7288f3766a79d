// Element-wise ops (CUDA, f32 or bf16 storage, f32 arithmetic): GELU, residual, and the helpers axpy_ / scale_.
//
// Contract (ops.hpp), all tensors of n elements:
//   gelu_forward:      out = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))   (=, out may alias inp)
//   gelu_backward:     dinp += gelu'(inp) * dout                                (+=)
//   residual_forward:  out = a + b                                              (=)
//   residual_backward: da += dout; db += dout                                   (+=)
//   axpy_:             y += alpha * x;     scale_: x *= alpha
// Grid-stride loops; groups of 4 elements (16 bytes of f32, 8 of bf16) when every pointer is
// aligned for them.

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/stage.hpp"
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
  return (aligned4(p) && ...);
}

// The kernels: one per op, templated on the storage types (f32 or bf16; computed in f32,
// rounded on store).
template <class T>
void gelu_forward_t(T* o, const T* x, int64_t n) {
  launch_map(
      "gelu_forward", n, all_aligned(o, x),
      [=] __device__(int64_t i) {
        float4 v = load4(x + 4 * i);
        store4(o + 4 * i, make_float4(gelu(v.x), gelu(v.y), gelu(v.z), gelu(v.w)));
      },
      [=] __device__(int64_t i) { st(o + i, gelu(ld(x + i))); });
}

template <class T>
void gelu_backward_t(T* dx, const T* x, const T* dy, int64_t n) {
  launch_map(
      "gelu_backward", n, all_aligned(dx, x, dy),
      [=] __device__(int64_t i) {
        float4 v = load4(x + 4 * i), g = load4(dy + 4 * i), a = load4(dx + 4 * i);
        a.x += gelu_grad(v.x) * g.x;
        a.y += gelu_grad(v.y) * g.y;
        a.z += gelu_grad(v.z) * g.z;
        a.w += gelu_grad(v.w) * g.w;
        store4(dx + 4 * i, a);
      },
      [=] __device__(int64_t i) { st(dx + i, ld(dx + i) + gelu_grad(ld(x + i)) * ld(dy + i)); });
}

template <class T>
void residual_forward_t(T* o, const T* pa, const T* pb, int64_t n) {
  launch_map(
      "residual_forward", n, all_aligned(o, pa, pb),
      [=] __device__(int64_t i) {
        float4 x = load4(pa + 4 * i), y = load4(pb + 4 * i);
        store4(o + 4 * i, make_float4(x.x + y.x, x.y + y.y, x.z + y.z, x.w + y.w));
      },
      [=] __device__(int64_t i) { st(o + i, ld(pa + i) + ld(pb + i)); });
}

template <class T>
void residual_backward_t(T* pa, T* pb, const T* g, int64_t n) {
  launch_map(
      "residual_backward", n, all_aligned(pa, pb, g),
      [=] __device__(int64_t i) {
        float4 y = load4(g + 4 * i), x = load4(pa + 4 * i), z = load4(pb + 4 * i);
        store4(pa + 4 * i, make_float4(x.x + y.x, x.y + y.y, x.z + y.z, x.w + y.w));
        store4(pb + 4 * i, make_float4(z.x + y.x, z.y + y.y, z.z + y.z, z.w + y.w));
      },
      [=] __device__(int64_t i) {
        float y = ld(g + i);
        st(pa + i, ld(pa + i) + y);
        st(pb + i, ld(pb + i) + y);
      });
}

// y (TY) += alpha * x (TX): all four combinations (an f32 accumulator of bf16 gradients is
// lesson 05's fp32_grad_accum).
template <class TY, class TX>
void axpy_t(TY* py, float al, const TX* px, int64_t n) {
  launch_map(
      "axpy_", n, aligned4(py) && aligned4(px),
      [=] __device__(int64_t i) {
        float4 a = load4(py + 4 * i), b = load4(px + 4 * i);
        store4(py + 4 * i, make_float4(a.x + al * b.x, a.y + al * b.y, a.z + al * b.z, a.w + al * b.w));
      },
      [=] __device__(int64_t i) { st(py + i, ld(py + i) + al * ld(px + i)); });
}

template <class T>
void scale_t(T* p, float al, int64_t n) {
  launch_map(
      "scale_", n, aligned4(p),
      [=] __device__(int64_t i) {
        float4 a = load4(p + 4 * i);
        store4(p + 4 * i, make_float4(al * a.x, al * a.y, al * a.z, al * a.w));
      },
      [=] __device__(int64_t i) { st(p + i, al * ld(p + i)); });
}

}  // namespace

// Combinations without a kernel (e.g. gelu with an f32 input and a bf16 output) run the f32
// kernel on f32 copies (F32Stage).

void gelu_forward(Tensor& out, const Tensor& inp) {
  if (!all_dtype(inp.dtype(), {&out})) {
    F32Stage s;
    Tensor i = s.in(inp), o = s.out(out, false);
    cuda::gelu_forward(o, i);
    return s.store();
  }
  by_storage(inp.dtype(), [&]<class T>() { gelu_forward_t<T>(ptr<T>(out), ptr<T>(inp), inp.numel()); });
}

void gelu_backward(Tensor& dinp, const Tensor& inp, const Tensor& dout) {
  if (!all_dtype(inp.dtype(), {&dinp, &dout})) {
    F32Stage s;
    Tensor di = s.out(dinp, true);
    cuda::gelu_backward(di, s.in(inp), s.in(dout));
    return s.store();
  }
  by_storage(inp.dtype(),
             [&]<class T>() { gelu_backward_t<T>(ptr<T>(dinp), ptr<T>(inp), ptr<T>(dout), inp.numel()); });
}

void residual_forward(Tensor& out, const Tensor& a, const Tensor& b) {
  if (!all_dtype(a.dtype(), {&out, &b})) {
    F32Stage s;
    Tensor ia = s.in(a), ib = s.in(b), o = s.out(out, false);
    cuda::residual_forward(o, ia, ib);
    return s.store();
  }
  by_storage(a.dtype(), [&]<class T>() { residual_forward_t<T>(ptr<T>(out), ptr<T>(a), ptr<T>(b), a.numel()); });
}

void residual_backward(Tensor& da, Tensor& db, const Tensor& dout) {
  if (da.raw() == db.raw() || !all_dtype(dout.dtype(), {&da, &db})) {  // the same tensor twice, or mixed
    cuda::axpy_(da, 1.0, dout);
    cuda::axpy_(db, 1.0, dout);
    return;
  }
  by_storage(dout.dtype(),
             [&]<class T>() { residual_backward_t<T>(ptr<T>(da), ptr<T>(db), ptr<T>(dout), dout.numel()); });
}

void axpy_(Tensor& y, double alpha, const Tensor& x) {
  const float al = static_cast<float>(alpha);
  by_storage(y.dtype(), [&]<class TY>() {
    by_storage(x.dtype(), [&]<class TX>() { axpy_t<TY, TX>(ptr<TY>(y), al, ptr<TX>(x), x.numel()); });
  });
}

void scale_(Tensor& x, double alpha) {
  by_storage(x.dtype(), [&]<class T>() { scale_t<T>(ptr<T>(x), static_cast<float>(alpha), x.numel()); });
}

}  // namespace sgpt::cuda
