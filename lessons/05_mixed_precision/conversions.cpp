// Lesson 05, tasks 1 and 2: f32 <-> bf16 and f32 <-> fp16, bit by bit.
//
// All four functions work on the bit patterns (std::bit_cast), so they do not depend on the
// FPU's rounding mode or on compiler flags. Layouts (sign | exponent | mantissa):
//   f32   1 | 8 (bias 127) | 23        bf16  1 | 8 (bias 127) | 7        fp16  1 | 5 (bias 15) | 10

#include <bit>

#include "mixed_precision.hpp"

namespace sgpt::lesson05 {

uint16_t float_to_bf16(float x) {
  // TODO(lesson 05, task 1): f32 to bf16 and back
  // Contract: the comment of this function in the header. Hints: README.md, section "Hints", task 1.
  SGPT_TODO(5, 1, "f32 to bf16 and back");
}

float bf16_to_float(uint16_t h) {
  // TODO(lesson 05, task 1): f32 to bf16 and back
  // Contract: the comment of this function in the header. Hints: README.md, section "Hints", task 1.
  SGPT_TODO(5, 1, "f32 to bf16 and back");
}

uint16_t float_to_fp16(float x) {
  // TODO(lesson 05, task 2): f32 to fp16 and back
  // Contract: the comment of this function in the header. Hints: README.md, section "Hints", task 2.
  SGPT_TODO(5, 2, "f32 to fp16 and back");
}

float fp16_to_float(uint16_t h) {
  // TODO(lesson 05, task 2): f32 to fp16 and back
  // Contract: the comment of this function in the header. Hints: README.md, section "Hints", task 2.
  SGPT_TODO(5, 2, "f32 to fp16 and back");
}

// ---- given: whole tensors --------------------------------------------------------------------------------

void cast_into(Tensor& dst, const Tensor& src) {
  SGPT_CHECK(dst.defined() && src.defined() && dst.numel() == src.numel(), "cast_into: ", dtype_name(src.dtype()),
             shape_str(src.shape()), " into ", dtype_name(dst.dtype()), shape_str(dst.shape()));
  if (dst.dtype() == src.dtype()) return dst.copy_from(src);
  if (dst.device() == Device::CUDA && src.device() == Device::CUDA && dst.dtype() != DType::F16 &&
      src.dtype() != DType::F16)
    return copy_cast(dst, src);  // on the GPU: the library's kernel (same rounding, round to nearest even)
  if (dst.device() != Device::CPU || src.device() != Device::CPU) {  // through the host (slow, correct)
    Tensor d = Tensor::empty(dst.shape(), dst.dtype(), Device::CPU), s = src.to(Device::CPU);
    cast_into(d, s);
    return dst.copy_from(d);
  }
  const int64_t n = dst.numel();
  if (src.dtype() == DType::F32 && dst.dtype() == DType::BF16) {
    const float* s = src.data<float>();
    bf16_t* d = dst.data<bf16_t>();
    for (int64_t i = 0; i < n; ++i) d[i].bits = float_to_bf16(s[i]);
  } else if (src.dtype() == DType::F32 && dst.dtype() == DType::F16) {
    const float* s = src.data<float>();
    f16_t* d = dst.data<f16_t>();
    for (int64_t i = 0; i < n; ++i) d[i].bits = float_to_fp16(s[i]);
  } else if (src.dtype() == DType::BF16 && dst.dtype() == DType::F32) {
    const bf16_t* s = src.data<bf16_t>();
    float* d = dst.data<float>();
    for (int64_t i = 0; i < n; ++i) d[i] = bf16_to_float(s[i].bits);
  } else if (src.dtype() == DType::F16 && dst.dtype() == DType::F32) {
    const f16_t* s = src.data<f16_t>();
    float* d = dst.data<float>();
    for (int64_t i = 0; i < n; ++i) d[i] = fp16_to_float(s[i].bits);
  } else {
    SGPT_FAIL("cast_into: from ", dtype_name(src.dtype()), " to ", dtype_name(dst.dtype()),
              " is not supported (one side must be f32, the other bf16 or f16)");
  }
}

}  // namespace sgpt::lesson05
