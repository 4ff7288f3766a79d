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
  const uint32_t u = std::bit_cast<uint32_t>(x);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x0040u);  // NaN: quiet it
  // Round to nearest even on the 16 dropped bits: add just under one half (0x7fff), plus one when
  // the kept part is odd. The carry reaches bit 16 exactly when rounding up is right, and a carry
  // out of the mantissa correctly bumps the exponent (the largest values become inf).
  return static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
  // END TODO
}

float bf16_to_float(uint16_t h) {
  // TODO(lesson 05, task 1): f32 to bf16 and back
  uint32_t u = static_cast<uint32_t>(h) << 16;
  if ((u & 0x7fffffffu) > 0x7f800000u) u |= 0x00400000u;  // NaN comes out quiet
  return std::bit_cast<float>(u);
  // END TODO
}

uint16_t float_to_fp16(float x) {
  // TODO(lesson 05, task 2): f32 to fp16 and back
  const uint32_t u = std::bit_cast<uint32_t>(x);
  const uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  const uint32_t a = u & 0x7fffffffu;                        // |x|
  if (a > 0x7f800000u) return static_cast<uint16_t>(sign | 0x7e00u | ((a >> 13) & 0x3ffu));
  if (a >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // |x| >= 65520 = 65504 + half an ulp
  if (a >= 0x38800000u) {                                    // |x| >= 2^-14: a normal fp16
    const uint32_t r = a - ((127u - 15u) << 23);            // exponent bias 127 -> 15
    return static_cast<uint16_t>(sign | ((r + 0xfffu + ((r >> 13) & 1u)) >> 13));
  }
  // Subnormal: count units of 2^-24. |x| = m24 * 2^(E-150) (m24: mantissa with its hidden bit),
  // so the count is m24 / 2^(126-E), rounded to nearest even.
  const uint32_t e = a >> 23;
  if (e < 102) return sign;  // |x| < 2^-25: below half the smallest subnormal
  const uint32_t m24 = (a & 0x7fffffu) | 0x800000u, shift = 126 - e;
  uint32_t q = m24 >> shift;
  const uint32_t rem = m24 & ((1u << shift) - 1u), half = 1u << (shift - 1);
  if (rem > half || (rem == half && (q & 1u))) ++q;  // a carry into 0x400 is the smallest normal: right
  return static_cast<uint16_t>(sign | q);
  // END TODO
}

float fp16_to_float(uint16_t h) {
  // TODO(lesson 05, task 2): f32 to fp16 and back
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
  if (e == 0x1f) return std::bit_cast<float>(sign | 0x7f800000u | (m << 13) | (m ? 0x00400000u : 0u));
  if (e != 0) return std::bit_cast<float>(sign | ((e + 112u) << 23) | (m << 13));  // bias 15 -> 127
  if (m == 0) return std::bit_cast<float>(sign);
  // Subnormal m * 2^-24: shift the leading one up into the hidden bit, one exponent step per shift.
  uint32_t exp = 113, mm = m;  // 113: the f32 exponent field of 2^-14
  while (!(mm & 0x400u)) {
    mm <<= 1;
    --exp;
  }
  return std::bit_cast<float>(sign | (exp << 23) | ((mm & 0x3ffu) << 13));
  // END TODO
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
