#pragma once
// Internal to common/kernels: shape checks and the CPU/CUDA, f32/f64 dispatch shared by the ops.

#include <initializer_list>
#include <utility>

#include "core/tensor.hpp"

#ifndef SGPT_WITH_CUDA
#define SGPT_WITH_CUDA 0
#endif

/// @cond INTERNAL
namespace sgpt::detail {

/// True when a tensor of dtype `got` may stand where an op expects `want` on `dev`: the same
/// dtype, or on the GPU f32 and bf16 mixed (the CUDA kernels compute in f32 and store either;
/// on the CPU, 16-bit tensors never get here: they go through F32Stage first).
inline bool dtype_fits(DType got, DType want, Device dev) {
  if (got == want) return true;
  auto gpu_float = [](DType d) { return d == DType::F32 || d == DType::BF16; };
  return dev == Device::CUDA && gpu_float(got) && gpu_float(want);
}

/// Checks that `t` is defined, has dtype `dt` (see dtype_fits) and lives on `dev`; names op and
/// tensor otherwise.
inline void expect(const Tensor& t, const char* op, const char* name, DType dt, Device dev) {
  SGPT_CHECK(t.defined(), op, ": tensor '", name, "' is undefined");
  SGPT_CHECK(dtype_fits(t.dtype(), dt, dev), op, ": tensor '", name, "' is ", dtype_name(t.dtype()), ", expected ",
             dtype_name(dt), dev == Device::CUDA ? " (the GPU takes f32 and bf16)" : "");
  SGPT_CHECK(t.device() == dev, op, ": tensor '", name, "' is on ", device_name(t.device()), ", expected ",
             device_name(dev));
}

/// Checks the exact shape of `t`.
inline void expect_shape(const Tensor& t, const char* op, const char* name, const Shape& s) {
  SGPT_CHECK(t.shape() == s, op, ": tensor '", name, "' has shape ", shape_str(t.shape()), ", expected ",
             shape_str(s));
}

/// Checks that `t` has `n` elements (for tensors whose leading shape is free).
inline void expect_numel(const Tensor& t, const char* op, const char* name, int64_t n) {
  SGPT_CHECK(t.numel() == n, op, ": tensor '", name, "' has ", t.numel(), " elements (shape ", shape_str(t.shape()),
             "), expected ", n);
}

/// One tensor argument of an op: its name and either its exact shape or (for tensors whose
/// leading shape is free, such as per-row statistics) its number of elements.
struct TensorArg {
  TensorArg(const Tensor* t, const char* n, Shape s) : tensor(t), name(n), shape(std::move(s)), numel(-1) {}
  TensorArg(const Tensor* t, const char* n, int64_t count) : tensor(t), name(n), numel(count) {}
  const Tensor* tensor;
  const char* name;
  Shape shape;
  int64_t numel;
};

/// Checks dtype, device and shape (or element count) of several arguments at once.
inline void expect_all(const char* op, DType dt, Device dev, std::initializer_list<TensorArg> args) {
  for (const TensorArg& a : args) {
    expect(*a.tensor, op, a.name, dt, dev);
    if (a.numel >= 0)
      expect_numel(*a.tensor, op, a.name, a.numel);
    else
      expect_shape(*a.tensor, op, a.name, a.shape);
  }
}

/// `s` with its last dimension replaced by `last`.
inline Shape with_last(Shape s, int64_t last) {
  s.back() = last;
  return s;
}

}  // namespace sgpt::detail

/// Runs `body` with `scalar_t` bound to float or double according to `dtype` (CPU kernels).
#define SGPT_DISPATCH_FLOAT(dtype, op, ...)                                             \
  do {                                                                                  \
    if ((dtype) == ::sgpt::DType::F32) {                                                \
      using scalar_t = float;                                                           \
      __VA_ARGS__;                                                                      \
    } else if ((dtype) == ::sgpt::DType::F64) {                                         \
      using scalar_t = double;                                                          \
      __VA_ARGS__;                                                                      \
    } else {                                                                            \
      SGPT_FAIL(op, ": dtype ", ::sgpt::dtype_name(dtype), " is not supported on the CPU"); \
    }                                                                                   \
  } while (0)

namespace sgpt::detail {

/// True when `t` lives on the GPU: the op then runs its CUDA implementation (which takes f32 and
/// bf16 tensors, mixed; this checks `t`). A build without CUDA has no GPU tensors, so there it is
/// always false.
inline bool on_cuda(const Tensor& t, const char* op) {
  if (t.device() != Device::CUDA) return false;
  SGPT_CHECK(SGPT_WITH_CUDA, op, ": this build has no CUDA backend (use the 'cuda' preset)");
  SGPT_CHECK(t.dtype() == DType::F32 || t.dtype() == DType::BF16, op, ": CUDA kernels take f32 and bf16, got ",
             dtype_name(t.dtype()));
  return true;
}

/// Reached only through on_cuda() in a build without CUDA, which never returns true.
[[noreturn]] inline void no_cuda_backend(const char* op) { SGPT_FAIL(op, ": this build has no CUDA backend"); }

}  // namespace sgpt::detail

// SGPT_CUDA(op, call): names the CUDA implementation `sgpt::cuda::call` of an op; in a CPU-only build,
// where those functions do not exist, it names an error instead. Use it as
//   if (detail::on_cuda(t, op)) return SGPT_CUDA(op, matmul_forward(out, inp, weight, bias));
#if SGPT_WITH_CUDA
#include "kernels/cuda_ops.hpp"
#define SGPT_CUDA(op, call) ::sgpt::cuda::call
#else
#define SGPT_CUDA(op, call) ::sgpt::detail::no_cuda_backend(op)
#endif
/// @endcond
