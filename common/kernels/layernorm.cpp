// LayerNorm over the last dimension C (Ba, Kiros & Hinton, 2016), as GPT-2 uses it.
//   forward:  mean = sum(x)/C,  var = sum((x-mean)^2)/C (biased),  rstd = 1/sqrt(var + eps)
//             xhat = (x - mean) * rstd,  out = xhat * w + b
//   backward: dxhat = dout * w
//             dx    = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat))
//             dw   += sum over rows of dout * xhat,  db += sum over rows of dout

#include <omp.h>

#include <cmath>
#include <vector>

#include "kernels/cpu_util.hpp"
#include "kernels/dispatch.hpp"
#include "kernels/half_stage.hpp"
#include "kernels/ops.hpp"
#include "kernels/profile.hpp"

namespace sgpt {

constexpr double kLayerNormEps = 1e-5;

template <class T>
static void layernorm_forward_cpu(T* out, T* mean, T* rstd, const T* inp, const T* w, const T* b, int64_t rows,
                                  int64_t C) {
#pragma omp parallel for schedule(static) if (rows * C >= detail::kParallelMin)
  for (int64_t r = 0; r < rows; ++r) {
    const T* x = inp + r * C;
    T m = 0;
    for (int64_t i = 0; i < C; ++i) m += x[i];
    m /= T(C);
    T v = 0;
    for (int64_t i = 0; i < C; ++i) v += (x[i] - m) * (x[i] - m);
    v /= T(C);
    T s = T(1) / std::sqrt(v + T(kLayerNormEps));
    T* o = out + r * C;
    for (int64_t i = 0; i < C; ++i) o[i] = (x[i] - m) * s * w[i] + b[i];
    mean[r] = m;
    rstd[r] = s;
  }
}

template <class T>
static void layernorm_backward_cpu(T* dinp, T* dw, T* db, const T* dout, const T* inp, const T* w, const T* mean,
                                   const T* rstd, int64_t rows, int64_t C) {
  // Each thread accumulates dw, db for its own contiguous block of rows; the partial sums are
  // then added in thread order, so the result does not depend on timing.
  int nt = rows * C < detail::kParallelMin ? 1 : omp_get_max_threads();
  std::vector<T> partial(static_cast<size_t>(nt) * 2 * C, T(0));
#pragma omp parallel num_threads(nt)
  {
    int id = omp_get_thread_num();
    T* pdw = partial.data() + static_cast<size_t>(id) * 2 * C;
    T* pdb = pdw + C;
    for (int64_t r = rows * id / nt; r < rows * (id + 1) / nt; ++r) {
      const T* x = inp + r * C;
      const T* g = dout + r * C;
      T m = mean[r], s = rstd[r];
      T mean_dxhat = 0, mean_dxhat_xhat = 0;
      for (int64_t i = 0; i < C; ++i) {
        T xhat = (x[i] - m) * s;
        T dxhat = g[i] * w[i];
        mean_dxhat += dxhat;
        mean_dxhat_xhat += dxhat * xhat;
      }
      mean_dxhat /= T(C);
      mean_dxhat_xhat /= T(C);
      T* dx = dinp + r * C;
      for (int64_t i = 0; i < C; ++i) {
        T xhat = (x[i] - m) * s;
        T dxhat = g[i] * w[i];
        dx[i] += s * (dxhat - mean_dxhat - xhat * mean_dxhat_xhat);
        pdw[i] += g[i] * xhat;
        pdb[i] += g[i];
      }
    }
  }
  for (int id = 0; id < nt; ++id) {
    const T* pdw = partial.data() + static_cast<size_t>(id) * 2 * C;
    for (int64_t i = 0; i < C; ++i) {
      dw[i] += pdw[i];
      db[i] += pdw[C + i];
    }
  }
}

void layernorm_forward(Tensor& out, Tensor& mean, Tensor& rstd, const Tensor& inp, const Tensor& weight,
                       const Tensor& bias) {
  const char* op = "layernorm_forward";
  detail::OpScope scope(op, inp);
  if (detail::any_cpu_half({&out, &mean, &rstd, &inp, &weight, &bias})) {  // 16-bit on the CPU: f32 kernel, round on store
    detail::F32Stage s(op);
    Tensor o = s.out(out, false), mu = s.out(mean, false), r = s.out(rstd, false);
    layernorm_forward(o, mu, r, s.in(inp), s.in(weight), s.in(bias));
    return s.store();
  }
  SGPT_CHECK(inp.defined() && inp.dim() >= 1, op, ": tensor 'inp' must have at least one dimension");
  const int64_t C = inp.size(-1), rows = inp.numel() / C;
  const DType dt = inp.dtype();
  const Device dev = inp.device();
  detail::expect_all(op, dt, dev,
                     {{&out, "out", inp.shape()}, {&mean, "mean", rows}, {&rstd, "rstd", rows}, {&weight, "weight", C},
                      {&bias, "bias", C}});
  if (detail::on_cuda(inp, op)) return SGPT_CUDA(op, layernorm_forward(out, mean, rstd, inp, weight, bias));
  SGPT_DISPATCH_FLOAT(dt, op,
                      layernorm_forward_cpu(out.data<scalar_t>(), mean.data<scalar_t>(), rstd.data<scalar_t>(),
                                            inp.data<scalar_t>(), weight.data<scalar_t>(), bias.data<scalar_t>(),
                                            rows, C));
}

void layernorm_backward(Tensor& dinp, Tensor& dweight, Tensor& dbias, const Tensor& dout, const Tensor& inp,
                        const Tensor& weight, const Tensor& mean, const Tensor& rstd) {
  const char* op = "layernorm_backward";
  detail::OpScope scope(op, inp);
  if (detail::any_cpu_half({&dinp, &dweight, &dbias, &dout, &inp, &weight, &mean, &rstd})) {  // 16-bit on the CPU: f32 kernel, round on store
    detail::F32Stage s(op);
    Tensor di = s.out(dinp, true), dw = s.out(dweight, true), db = s.out(dbias, true);
    layernorm_backward(di, dw, db, s.in(dout), s.in(inp), s.in(weight), s.in(mean), s.in(rstd));
    return s.store();
  }
  SGPT_CHECK(inp.defined() && inp.dim() >= 1, op, ": tensor 'inp' must have at least one dimension");
  const int64_t C = inp.size(-1), rows = inp.numel() / C;
  const DType dt = inp.dtype();
  const Device dev = inp.device();
  detail::expect_all(op, dt, dev,
                     {{&dinp, "dinp", inp.shape()}, {&dout, "dout", inp.shape()}, {&dweight, "dweight", C},
                      {&dbias, "dbias", C}, {&weight, "weight", C}, {&mean, "mean", rows}, {&rstd, "rstd", rows}});
  if (detail::on_cuda(inp, op)) return SGPT_CUDA(op, layernorm_backward(dinp, dweight, dbias, dout, inp, weight, mean, rstd));
  SGPT_DISPATCH_FLOAT(dt, op,
                      layernorm_backward_cpu(dinp.data<scalar_t>(), dweight.data<scalar_t>(), dbias.data<scalar_t>(),
                                             dout.data<scalar_t>(), inp.data<scalar_t>(), weight.data<scalar_t>(),
                                             mean.data<scalar_t>(), rstd.data<scalar_t>(), rows, C));
}

}  // namespace sgpt
