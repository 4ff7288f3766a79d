#pragma once
// Internal to common/kernels: shape checks and the CPU/CUDA, f32/f64 dispatch shared by the ops.

#include <initializer_list>
#include <utility>

#include "core/tensor.hpp"

/// @cond INTERNAL
namespace sgpt::detail {

/// Checks that `t` is defined, has dtype `dt` and lives on `dev`; names op and tensor otherwise.
inline void expect(const Tensor& t, const char* op, const char* name, DType dt, Device dev) {
  SGPT_CHECK(t.defined(), op, ": tensor '", name, "' is undefined");
  SGPT_CHECK(t.dtype() == dt, op, ": tensor '", name, "' is ", dtype_name(t.dtype()), ", expected ", dtype_name(dt));
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

#if SGPT_WITH_CUDA
#include "kernels/cuda_ops.hpp"
/// On a CUDA tensor, checks f32 and runs the CUDA implementation `cuda::call` and returns.
#define SGPT_DISPATCH_CUDA(t, op, call)                                                        \
  if ((t).device() == ::sgpt::Device::CUDA) {                                                  \
    SGPT_CHECK((t).dtype() == ::sgpt::DType::F32, op, ": CUDA kernels take f32, got ", ::sgpt::dtype_name((t).dtype())); \
    ::sgpt::cuda::call;                                                                        \
    return;                                                                                    \
  }
#else
#define SGPT_DISPATCH_CUDA(t, op, call) \
  SGPT_CHECK((t).device() == ::sgpt::Device::CPU, op, ": this build has no CUDA backend (use the 'cuda' preset)");
#endif
/// @endcond
