// Causal multi-head self-attention (Vaswani et al., 2017; GPT-2's masked variant).
// qkv [B,T,3C] holds q | k | v; head h uses channels [h*HS, (h+1)*HS) of each. For each (b, h):
//   forward:  pre[t,s] = q[t].k[s] / sqrt(HS) for s <= t      (future positions masked)
//             att[t,:] = softmax(pre[t,:])                    (saved: [B,NH,T,T], zero above diagonal)
//             out[t]   = sum_s att[t,s] v[s]
//   backward: datt[t,s] = dout[t].v[s];          dv[s] += att[t,s] dout[t]
//             dpre[t,s] = att[t,s] (datt[t,s] - sum_s' att[t,s'] datt[t,s'])
//             dq[t] += sum_s dpre[t,s] k[s] / sqrt(HS);   dk[s] += dpre[t,s] q[t] / sqrt(HS)
// Memory: att is B*NH*T*T values per layer, the term that grows with T^2 (lesson 03 recomputes it).

#include <omp.h>

#include <cmath>
#include <vector>

#include "kernels/cpu_util.hpp"
#include "kernels/dispatch.hpp"
#include "kernels/half_stage.hpp"
#include "kernels/ops.hpp"
#include "kernels/profile.hpp"
#if SGPT_WITH_CUDA
#include "kernels/cuda/cuda_context.hpp"
#endif

namespace sgpt {

template <class T>
static void attention_forward_cpu(T* out, T* att, const T* qkv, int64_t B, int64_t Tn, int64_t C, int64_t NH) {
  const int64_t HS = C / NH, C3 = 3 * C;
  const T scale = T(1) / std::sqrt(T(HS));
#pragma omp parallel for collapse(3) schedule(static) if (B * NH * Tn * Tn * HS >= detail::kParallelMin)
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < NH; ++h)
      for (int64_t t = 0; t < Tn; ++t) {
        const T* q = qkv + (b * Tn + t) * C3 + h * HS;
        T* a = att + ((b * NH + h) * Tn + t) * Tn;
        T maxv = -INFINITY;
        for (int64_t s = 0; s <= t; ++s) {
          const T* k = qkv + (b * Tn + s) * C3 + C + h * HS;
          T dot = 0;
          for (int64_t i = 0; i < HS; ++i) dot += q[i] * k[i];
          a[s] = dot * scale;
          maxv = std::max(maxv, a[s]);
        }
        T sum = 0;
        for (int64_t s = 0; s <= t; ++s) {
          a[s] = std::exp(a[s] - maxv);
          sum += a[s];
        }
        const T inv = T(1) / sum;
        for (int64_t s = 0; s <= t; ++s) a[s] *= inv;
        for (int64_t s = t + 1; s < Tn; ++s) a[s] = T(0);
        T* o = out + (b * Tn + t) * C + h * HS;
        for (int64_t i = 0; i < HS; ++i) o[i] = T(0);
        for (int64_t s = 0; s <= t; ++s) {
          const T* v = qkv + (b * Tn + s) * C3 + 2 * C + h * HS;
          for (int64_t i = 0; i < HS; ++i) o[i] += a[s] * v[i];
        }
      }
}

template <class T>
static void attention_backward_cpu(T* dqkv, const T* dout, const T* qkv, const T* att, int64_t B, int64_t Tn,
                                   int64_t C, int64_t NH) {
  const int64_t HS = C / NH, C3 = 3 * C;
  const T scale = T(1) / std::sqrt(T(HS));
  // One (b, h) pair per task: its dk and dv rows are written by that task alone.
#pragma omp parallel if (B * NH * Tn * Tn * HS >= detail::kParallelMin)
  {
    std::vector<T> datt(Tn);
#pragma omp for collapse(2) schedule(static)
    for (int64_t b = 0; b < B; ++b)
      for (int64_t h = 0; h < NH; ++h)
        for (int64_t t = 0; t < Tn; ++t) {
          const T* a = att + ((b * NH + h) * Tn + t) * Tn;
          const T* g = dout + (b * Tn + t) * C + h * HS;
          const T* q = qkv + (b * Tn + t) * C3 + h * HS;
          T* dq = dqkv + (b * Tn + t) * C3 + h * HS;
          T dot_a_datt = 0;
          for (int64_t s = 0; s <= t; ++s) {
            const T* v = qkv + (b * Tn + s) * C3 + 2 * C + h * HS;
            T* dv = dqkv + (b * Tn + s) * C3 + 2 * C + h * HS;
            T d = 0;
            for (int64_t i = 0; i < HS; ++i) {
              d += g[i] * v[i];
              dv[i] += a[s] * g[i];
            }
            datt[s] = d;
            dot_a_datt += a[s] * d;
          }
          for (int64_t s = 0; s <= t; ++s) {
            const T dpre = a[s] * (datt[s] - dot_a_datt) * scale;
            const T* k = qkv + (b * Tn + s) * C3 + C + h * HS;
            T* dk = dqkv + (b * Tn + s) * C3 + C + h * HS;
            for (int64_t i = 0; i < HS; ++i) {
              dq[i] += dpre * k[i];
              dk[i] += dpre * q[i];
            }
          }
        }
  }
}

// Reads B, T, C from qkv [B,T,3C] and checks the head count.
static void attention_shapes(const char* op, const Tensor& qkv, int n_head, int64_t* B, int64_t* T, int64_t* C) {
  SGPT_CHECK(qkv.defined() && qkv.dim() == 3 && qkv.size(2) % 3 == 0, op, ": tensor 'qkv' must be [B,T,3C], got ",
             qkv.defined() ? shape_str(qkv.shape()) : "undefined");
  *B = qkv.size(0);
  *T = qkv.size(1);
  *C = qkv.size(2) / 3;
  SGPT_CHECK(n_head > 0 && *C % n_head == 0, op, ": ", n_head, " heads do not divide the width C = ", *C);
}

void attention_forward(Tensor& out, Tensor& att, const Tensor& qkv, int n_head) {
  const char* op = "attention_forward";
  detail::OpScope scope(op, qkv);
  if (detail::any_cpu_half({&out, &att, &qkv})) {  // 16-bit on the CPU: f32 kernel, round on store
    detail::F32Stage s(op);
    Tensor o = s.out(out, false), a = s.out(att, false);
    attention_forward(o, a, s.in(qkv), n_head);
    return s.store();
  }
  int64_t B, T, C;
  attention_shapes(op, qkv, n_head, &B, &T, &C);
  detail::expect_all(op, qkv.dtype(), qkv.device(), {{&out, "out", Shape{B, T, C}}, {&att, "att", Shape{B, n_head, T, T}}});
  if (detail::on_cuda(qkv, op)) return SGPT_CUDA(op, attention_forward(out, att, qkv, n_head));
  SGPT_DISPATCH_FLOAT(qkv.dtype(), op,
                      attention_forward_cpu(out.data<scalar_t>(), att.data<scalar_t>(), qkv.data<scalar_t>(), B, T, C,
                                            n_head));
}

void attention_backward(Tensor& dqkv, const Tensor& dout, const Tensor& qkv, const Tensor& att, int n_head) {
  const char* op = "attention_backward";
  detail::OpScope scope(op, qkv);
  if (detail::any_cpu_half({&dqkv, &dout, &qkv, &att})) {  // 16-bit on the CPU: f32 kernel, round on store
    detail::F32Stage s(op);
    Tensor d = s.out(dqkv, true);
    attention_backward(d, s.in(dout), s.in(qkv), s.in(att), n_head);
    return s.store();
  }
  int64_t B, T, C;
  attention_shapes(op, qkv, n_head, &B, &T, &C);
  detail::expect_all(op, qkv.dtype(), qkv.device(),
                     {{&dqkv, "dqkv", qkv.shape()}, {&dout, "dout", Shape{B, T, C}}, {&att, "att", Shape{B, n_head, T, T}}});
  if (detail::on_cuda(qkv, op)) return SGPT_CUDA(op, attention_backward(dqkv, dout, qkv, att, n_head));
  SGPT_DISPATCH_FLOAT(qkv.dtype(), op,
                      attention_backward_cpu(dqkv.data<scalar_t>(), dout.data<scalar_t>(), qkv.data<scalar_t>(),
                                             att.data<scalar_t>(), B, T, C, n_head));
}

void attention_fused_forward(Tensor& out, Tensor& lse, const Tensor& qkv, int n_head) {
  const char* op = "attention_fused_forward";
  detail::OpScope scope(op, qkv);
  int64_t B, T, C;
  attention_shapes(op, qkv, n_head, &B, &T, &C);
  detail::expect_all(op, qkv.dtype(), qkv.device(), {{&out, "out", Shape{B, T, C}}, {&lse, "lse", Shape{B, n_head, T}}});
  if (detail::on_cuda(qkv, op)) return SGPT_CUDA(op, attention_fused_forward(out, lse, qkv, n_head));
  SGPT_FAIL(op, ": the fused attention runs on CUDA only; on the CPU use attention_forward");
}

void attention_fused_backward(Tensor& dqkv, const Tensor& dout, const Tensor& qkv, const Tensor& out,
                              const Tensor& lse, int n_head) {
  const char* op = "attention_fused_backward";
  detail::OpScope scope(op, qkv);
  int64_t B, T, C;
  attention_shapes(op, qkv, n_head, &B, &T, &C);
  detail::expect_all(op, qkv.dtype(), qkv.device(),
                     {{&dqkv, "dqkv", qkv.shape()}, {&dout, "dout", Shape{B, T, C}}, {&out, "out", Shape{B, T, C}},
                      {&lse, "lse", Shape{B, n_head, T}}});
  if (detail::on_cuda(qkv, op)) return SGPT_CUDA(op, attention_fused_backward(dqkv, dout, qkv, out, lse, n_head));
  SGPT_FAIL(op, ": the fused attention runs on CUDA only; on the CPU use attention_backward");
}

bool attention_fused_available(Device dev, int head_size) {
#if SGPT_WITH_CUDA
  return dev == Device::CUDA && cuda::fused_attention() && cuda::attention_fused_supported(head_size);
#else
  (void)dev;
  (void)head_size;
  return false;
#endif
}

}  // namespace sgpt
