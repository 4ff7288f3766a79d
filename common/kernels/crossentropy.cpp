// Fused softmax + cross-entropy over the vocabulary (GPT-2's language-model loss).
// logits [B,T,Vp]: only the first V columns are real tokens; the rest pad Vp for fast matmuls.
//   forward:  probs[:, v] = exp(logits[v] - max) / sum_{v'<V} exp(logits[v'] - max)   (v < V; 0 for v >= V)
//             losses[b,t] = -log probs[target[b,t]]
//   backward: dlogits[v] = (probs[v] - [v == target]) * dloss     (overwrites; 0 for v >= V)

#include <cmath>

#include "kernels/cpu_util.hpp"
#include "kernels/dispatch.hpp"
#include "kernels/half_stage.hpp"
#include "kernels/ops.hpp"
#include "kernels/profile.hpp"

namespace sgpt {

template <class T>
static void ce_forward_cpu(T* losses, T* probs, const T* logits, const int32_t* targets, int64_t rows, int64_t Vp,
                           int64_t V) {
#pragma omp parallel for schedule(static) if (rows * Vp >= detail::kParallelMin)
  for (int64_t r = 0; r < rows; ++r) {
    const T* x = logits + r * Vp;
    T* p = probs + r * Vp;  // may be the same memory as x: each element is read before it is written
    T maxv = -INFINITY;
    for (int64_t v = 0; v < V; ++v) maxv = std::max(maxv, x[v]);
    T sum = 0;
    for (int64_t v = 0; v < V; ++v) {
      p[v] = std::exp(x[v] - maxv);
      sum += p[v];
    }
    const T inv = T(1) / sum;
    for (int64_t v = 0; v < V; ++v) p[v] *= inv;
    for (int64_t v = V; v < Vp; ++v) p[v] = T(0);
    losses[r] = -std::log(p[targets[r]]);
  }
}

template <class T>
static void ce_backward_cpu(T* dlogits, const T* probs, const int32_t* targets, T dloss, int64_t rows, int64_t Vp,
                            int64_t V) {
#pragma omp parallel for schedule(static) if (rows * Vp >= detail::kParallelMin)
  for (int64_t r = 0; r < rows; ++r) {
    const T* p = probs + r * Vp;
    T* d = dlogits + r * Vp;
    for (int64_t v = 0; v < V; ++v) d[v] = (p[v] - (v == targets[r] ? T(1) : T(0))) * dloss;
    for (int64_t v = V; v < Vp; ++v) d[v] = T(0);
  }
}

// Reads rows and Vp from logits [.., Vp]; checks the targets.
static void ce_shapes(const char* op, const Tensor& logits, const Tensor& targets, int vocab_size, int64_t* rows,
                      int64_t* Vp) {
  SGPT_CHECK(logits.defined() && logits.dim() >= 1, op, ": tensor 'logits' must be [B,T,Vp]");
  *Vp = logits.size(-1);
  *rows = logits.numel() / *Vp;
  SGPT_CHECK(vocab_size > 0 && vocab_size <= *Vp, op, ": vocab_size ", vocab_size, " must be in [1, Vp = ", *Vp, "]");
  detail::expect(targets, op, "targets", DType::I32, logits.device());
  detail::expect_numel(targets, op, "targets", *rows);
  if (targets.device() == Device::CPU) {
    const int32_t* t = targets.data<int32_t>();
    for (int64_t r = 0; r < *rows; ++r)
      SGPT_CHECK(t[r] >= 0 && t[r] < vocab_size, op, ": target ", t[r], " at position ", r, " is outside [0, ",
                 vocab_size, ")");
  }
}

void softmax_crossentropy_forward(Tensor& losses, Tensor& probs, const Tensor& logits, const Tensor& targets,
                                  int vocab_size) {
  const char* op = "softmax_crossentropy_forward";
  detail::OpScope scope(op, logits);
  if (detail::any_cpu_half({&losses, &probs, &logits, &targets})) {  // 16-bit on the CPU: f32 kernel, round on store
    detail::F32Stage s(op);
    Tensor l = s.in(logits), lo = s.out(losses, false), p = s.out(probs, false);  // probs may alias logits
    softmax_crossentropy_forward(lo, p, l, targets, vocab_size);
    return s.store();
  }
  int64_t rows, Vp;
  ce_shapes(op, logits, targets, vocab_size, &rows, &Vp);
  detail::expect_all(op, logits.dtype(), logits.device(), {{&losses, "losses", rows}, {&probs, "probs", logits.shape()}});
  if (detail::on_cuda(logits, op)) return SGPT_CUDA(op, softmax_crossentropy_forward(losses, probs, logits, targets, vocab_size));
  SGPT_DISPATCH_FLOAT(logits.dtype(), op,
                      ce_forward_cpu(losses.data<scalar_t>(), probs.data<scalar_t>(), logits.data<scalar_t>(),
                                     targets.data<int32_t>(), rows, Vp, vocab_size));
}

void softmax_crossentropy_backward(Tensor& dlogits, const Tensor& probs, const Tensor& targets, double dloss,
                                   int vocab_size) {
  const char* op = "softmax_crossentropy_backward";
  detail::OpScope scope(op, probs);
  if (detail::any_cpu_half({&dlogits, &probs, &targets})) {  // 16-bit on the CPU: f32 kernel, round on store
    detail::F32Stage s(op);
    Tensor p = s.in(probs), d = s.out(dlogits, false);  // dlogits may alias probs
    softmax_crossentropy_backward(d, p, targets, dloss, vocab_size);
    return s.store();
  }
  int64_t rows, Vp;
  ce_shapes(op, probs, targets, vocab_size, &rows, &Vp);
  detail::expect_all(op, probs.dtype(), probs.device(), {{&dlogits, "dlogits", probs.shape()}});
  if (detail::on_cuda(probs, op)) return SGPT_CUDA(op, softmax_crossentropy_backward(dlogits, probs, targets, dloss, vocab_size));
  SGPT_DISPATCH_FLOAT(probs.dtype(), op,
                      ce_backward_cpu(dlogits.data<scalar_t>(), probs.data<scalar_t>(), targets.data<int32_t>(),
                                      static_cast<scalar_t>(dloss), rows, Vp, vocab_size));
}

}  // namespace sgpt
