// The optimizer's kernels: the sum of squares (for the gradient norm and clipping) and the AdamW
// update over a flat buffer. Their CUDA twins are in cuda/optim.cu; the policy around them (decay
// segments, schedules, clipping) is in optim/.

#include <cmath>

#include "kernels/cpu_util.hpp"
#include "kernels/dispatch.hpp"
#include "kernels/half_stage.hpp"
#include "kernels/ops.hpp"
#include "kernels/profile.hpp"

namespace sgpt {

using detail::expect;
using detail::expect_numel;

double sum_of_squares(const Tensor& x) {
  const char* op = "sum_of_squares";
  detail::OpScope scope(op, x);
  SGPT_CHECK(x.defined(), op, ": tensor 'x' is undefined");
  if (detail::cpu_half(x)) return sum_of_squares(detail::F32Stage(op).in(x));  // summed in double from f32
#if SGPT_WITH_CUDA  // (SGPT_CUDA names a void error in a CPU build; this op returns a value)
  if (detail::on_cuda(x, op)) return cuda::sum_of_squares(x);
#endif
  double result = 0.0;
  SGPT_DISPATCH_FLOAT(x.dtype(), op, {
    const scalar_t* p = x.data<scalar_t>();
    result = detail::parallel_sum(x.numel(), [p](int64_t i) { return double(p[i]) * double(p[i]); });
  });
  return result;
}

int64_t count_nonfinite(const Tensor& x) {
  const char* op = "count_nonfinite";
  detail::OpScope scope(op, x);
  SGPT_CHECK(x.defined(), op, ": tensor 'x' is undefined");
#if SGPT_WITH_CUDA  // (SGPT_CUDA names a void error in a CPU build; this op returns a value)
  if (detail::on_cuda(x, op)) return cuda::count_nonfinite(x);
#endif
  if (detail::cpu_half(x)) return count_nonfinite(detail::F32Stage(op).in(x));  // widening keeps inf and NaN
  double result = 0.0;
  SGPT_DISPATCH_FLOAT(x.dtype(), op, {
    const scalar_t* p = x.data<scalar_t>();
    result = detail::parallel_sum(x.numel(), [p](int64_t i) { return std::isfinite(p[i]) ? 0.0 : 1.0; });
  });
  return static_cast<int64_t>(result);
}

void copy_cast(Tensor& dst, const Tensor& src) {
  const char* op = "copy_cast";
  detail::OpScope scope(op, src);
  SGPT_CHECK(dst.defined() && src.defined(), op, ": tensors must be defined");
  SGPT_CHECK(dst.numel() == src.numel() && dst.device() == src.device(), op, ": ", dtype_name(src.dtype()),
             shape_str(src.shape()), " on ", device_name(src.device()), " into ", dtype_name(dst.dtype()),
             shape_str(dst.shape()), " on ", device_name(dst.device()), " (needs the same numel and device)");
  if (dst.dtype() == src.dtype()) return dst.copy_from(src);
  SGPT_CHECK(src.dtype() == DType::F32 || dst.dtype() == DType::F32, op, ": from ", dtype_name(src.dtype()), " to ",
             dtype_name(dst.dtype()), " is not supported (one side must be f32)");
  if (detail::on_cuda(src, op) && detail::on_cuda(dst, op)) return SGPT_CUDA(op, copy_cast(dst, src));
  if (src.dtype() == DType::F32) {  // round on store (F32Stage's store), from an f32 "output" copy
    detail::F32Stage s(op);
    s.out(dst, false).copy_from(src);
    return s.store();
  }
  dst.copy_from(detail::F32Stage(op).in(src));  // widen
}

// ---- AdamW ---------------------------------------------------------------------------------------------------

template <class T>
static void adamw_cpu(T* param, const T* grad, T* m, T* v, int64_t n, const AdamWConfig& c, int64_t t, bool decay) {
  const double bc1 = 1.0 - std::pow(c.beta1, double(t));
  const double bc2 = 1.0 - std::pow(c.beta2, double(t));
  const T b1 = T(c.beta1), b2 = T(c.beta2), lr = T(c.lr), eps = T(c.eps);
  const T wd = decay ? T(c.weight_decay) : T(0);
  const T ibc1 = T(1.0 / bc1), ibc2 = T(1.0 / bc2), gs = T(c.grad_scale);
#pragma omp parallel for schedule(static) if (n >= detail::kParallelMin)
  for (int64_t i = 0; i < n; ++i) {
    T g = c.grad_scale == 1.0 ? grad[i] : grad[i] * gs;  // exactly the old update when unscaled
    T mi = b1 * m[i] + (T(1) - b1) * g;
    T vi = b2 * v[i] + (T(1) - b2) * g * g;
    m[i] = mi;
    v[i] = vi;
    T mhat = mi * ibc1, vhat = vi * ibc2;
    param[i] -= lr * (mhat / (std::sqrt(vhat) + eps) + wd * param[i]);
  }
}

void adamw_update(Tensor& param, const Tensor& grad, Tensor& m, Tensor& v, const AdamWConfig& cfg, int64_t t,
                  bool decay) {
  const char* op = "adamw_update";
  detail::OpScope scope(op, param);
  if (detail::any_cpu_half({&param, &grad, &m, &v})) {  // 16-bit on the CPU: f32 kernel, round on store
    detail::F32Stage s(op);
    Tensor p = s.out(param, true), mm = s.out(m, true), vv = s.out(v, true);
    adamw_update(p, s.in(grad), mm, vv, cfg, t, decay);
    return s.store();
  }
  SGPT_CHECK(t >= 1, op, ": the step t is 1-based, got ", t);
  const int64_t n = param.numel();
  detail::expect_all(op, param.dtype(), param.device(),
                     {{&param, "param", n}, {&grad, "grad", n}, {&m, "m", n}, {&v, "v", n}});
  if (detail::on_cuda(param, op)) return SGPT_CUDA(op, adamw_update(param, grad, m, v, cfg, t, decay));
  SGPT_DISPATCH_FLOAT(param.dtype(), op,
                      adamw_cpu(param.data<scalar_t>(), grad.data<scalar_t>(), m.data<scalar_t>(), v.data<scalar_t>(),
                                param.numel(), cfg, t, decay));
}

void adamw_update_segments(Tensor& param, const Tensor& grad, Tensor& m, Tensor& v, const AdamWConfig& cfg,
                           int64_t t, const std::vector<AdamWSegment>& segments) {
  const char* op = "adamw_update_segments";
  const int64_t n = param.numel();
  SGPT_CHECK(grad.numel() == n && m.numel() == n && v.numel() == n, op, ": param (", n, "), grad (", grad.numel(),
             "), m (", m.numel(), ") and v (", v.numel(), ") must have the same number of elements");
  int64_t end = 0;
  for (const AdamWSegment& s : segments) {
    SGPT_CHECK(s.begin >= end && s.numel >= 0 && s.begin + s.numel <= n, op, ": segment [", s.begin, ", ",
               s.begin + s.numel, ") overlaps the previous one or leaves the ", n, " elements (sorted, disjoint)");
    end = s.begin + s.numel;
  }
  const bool gpu_fast = param.device() == Device::CUDA && m.dtype() == DType::F32 && v.dtype() == DType::F32 &&
                        grad.device() == Device::CUDA && m.device() == Device::CUDA && v.device() == Device::CUDA && t >= 1;
#if SGPT_WITH_CUDA
  if (gpu_fast && !segments.empty()) {
    detail::OpScope scope(op, param);
    return cuda::adamw_update_segments(param, grad, m, v, cfg, t, segments);
  }
#else
  (void)gpu_fast;
#endif
  for (const AdamWSegment& s : segments) {  // the CPU (and any other case): one update per segment
    Tensor p = param.view(s.begin, {s.numel}), mm = m.view(s.begin, {s.numel}), vv = v.view(s.begin, {s.numel});
    adamw_update(p, grad.view(s.begin, {s.numel}), mm, vv, cfg, t, s.decay);
  }
}

}  // namespace sgpt
