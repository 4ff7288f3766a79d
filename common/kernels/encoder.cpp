// Token + position embedding (GPT-2's "wte" and "wpe").
//   forward:  out[b,t,:] = wte[tokens[b,t], :] + wpe[t, :]
//   backward: dwte[tokens[b,t], :] += dout[b,t,:];  dwpe[t, :] += dout[b,t,:]

#include <omp.h>

#include "kernels/cpu_util.hpp"
#include "kernels/dispatch.hpp"
#include "kernels/half_stage.hpp"
#include "kernels/ops.hpp"
#include "kernels/profile.hpp"

namespace sgpt {

static void check_tokens(const Tensor& tokens, const char* op, int64_t* B, int64_t* T) {
  detail::expect(tokens, op, "tokens", DType::I32, tokens.device());
  SGPT_CHECK(tokens.dim() == 2, op, ": tensor 'tokens' must be [B,T], got ", shape_str(tokens.shape()));
  *B = tokens.size(0);
  *T = tokens.size(1);
}

template <class T>
static void encoder_forward_cpu(T* out, const int32_t* tokens, const T* wte, const T* wpe, int64_t B, int64_t Tn,
                                int64_t C, int64_t V) {
  for (int64_t bt = 0; bt < B * Tn; ++bt)  // checked before the parallel loop: no throwing inside it
    SGPT_CHECK(tokens[bt] >= 0 && tokens[bt] < V, "encoder_forward: token ", tokens[bt], " at position ", bt,
               " is outside [0, ", V, ")");
#pragma omp parallel for schedule(static) if (B * Tn * C >= detail::kParallelMin)
  for (int64_t bt = 0; bt < B * Tn; ++bt) {
    int32_t tok = tokens[bt];
    const T* e = wte + tok * C;
    const T* p = wpe + (bt % Tn) * C;
    T* o = out + bt * C;
    for (int64_t i = 0; i < C; ++i) o[i] = e[i] + p[i];
  }
}

template <class T>
static void encoder_backward_cpu(T* dwte, T* dwpe, const T* dout, const int32_t* tokens, int64_t B, int64_t Tn,
                                 int64_t C) {
  // Several positions can hold the same token, so threads split the channels, not the positions:
  // each thread owns columns [c0, c1) of dwte and dwpe and there are no write conflicts.
#pragma omp parallel if (B * Tn * C >= detail::kParallelMin)
  {
    int nt = omp_get_num_threads(), id = omp_get_thread_num();
    int64_t c0 = C * id / nt, c1 = C * (id + 1) / nt;
    for (int64_t bt = 0; bt < B * Tn; ++bt) {
      const T* g = dout + bt * C;
      T* e = dwte + tokens[bt] * C;
      T* p = dwpe + (bt % Tn) * C;
      for (int64_t i = c0; i < c1; ++i) {
        e[i] += g[i];
        p[i] += g[i];
      }
    }
  }
}

void encoder_forward(Tensor& out, const Tensor& tokens, const Tensor& wte, const Tensor& wpe) {
  const char* op = "encoder_forward";
  detail::OpScope scope(op, wte);
  if (detail::any_cpu_half({&out, &tokens, &wte, &wpe})) {  // 16-bit on the CPU: f32 kernel, round on store
    detail::F32Stage s(op);
    Tensor o = s.out(out, false);
    encoder_forward(o, tokens, s.in(wte), s.in(wpe));
    return s.store();
  }
  int64_t B, T;
  check_tokens(tokens, op, &B, &T);
  SGPT_CHECK(wte.dim() == 2 && wpe.dim() == 2 && wte.size(1) == wpe.size(1), op,
             ": wte [Vp,C] and wpe [maxT,C] must share C, got ", shape_str(wte.shape()), " and ", shape_str(wpe.shape()));
  const int64_t C = wte.size(1);
  SGPT_CHECK(T <= wpe.size(0), op, ": sequence length ", T, " is longer than the context ", wpe.size(0));
  detail::expect_all(op, wte.dtype(), tokens.device(), {{&out, "out", Shape{B, T, C}}, {&wte, "wte", wte.numel()},
                                                        {&wpe, "wpe", wpe.numel()}});
  if (detail::on_cuda(wte, op)) return SGPT_CUDA(op, encoder_forward(out, tokens, wte, wpe));
  SGPT_DISPATCH_FLOAT(wte.dtype(), op,
                      encoder_forward_cpu(out.data<scalar_t>(), tokens.data<int32_t>(), wte.data<scalar_t>(),
                                          wpe.data<scalar_t>(), B, T, C, wte.size(0)));
}

void encoder_backward(Tensor& dwte, Tensor& dwpe, const Tensor& dout, const Tensor& tokens) {
  const char* op = "encoder_backward";
  detail::OpScope scope(op, dwte);
  if (detail::any_cpu_half({&dwte, &dwpe, &dout, &tokens})) {  // 16-bit on the CPU: f32 kernel, round on store
    detail::F32Stage s(op);
    Tensor dw = s.out(dwte, true), dp = s.out(dwpe, true);
    encoder_backward(dw, dp, s.in(dout), tokens);
    return s.store();
  }
  int64_t B, T;
  check_tokens(tokens, op, &B, &T);
  SGPT_CHECK(dwte.dim() == 2 && dwpe.dim() == 2 && dwte.size(1) == dwpe.size(1) && T <= dwpe.size(0), op,
             ": dwte ", shape_str(dwte.shape()), " and dwpe ", shape_str(dwpe.shape()), " do not fit tokens [", B,
             ",", T, "]");
  const int64_t C = dwte.size(1);
  detail::expect_all(op, dwte.dtype(), tokens.device(),
                     {{&dout, "dout", Shape{B, T, C}}, {&dwte, "dwte", dwte.numel()}, {&dwpe, "dwpe", dwpe.numel()}});
  if (detail::on_cuda(dwte, op)) return SGPT_CUDA(op, encoder_backward(dwte, dwpe, dout, tokens));
  const int32_t* tok = tokens.data<int32_t>();
  for (int64_t i = 0; i < B * T; ++i)
    SGPT_CHECK(tok[i] >= 0 && tok[i] < dwte.size(0), op, ": token ", tok[i], " at position ", i, " is outside [0, ",
               dwte.size(0), ")");
  SGPT_DISPATCH_FLOAT(dwte.dtype(), op,
                      encoder_backward_cpu(dwte.data<scalar_t>(), dwpe.data<scalar_t>(), dout.data<scalar_t>(),
                                           tokens.data<int32_t>(), B, T, C));
}

}  // namespace sgpt
