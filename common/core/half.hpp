#pragma once
/// @file half.hpp
/// @brief 16-bit floating-point storage types (bf16 and fp16) and the library's conversions.
///
/// On the CPU, bf16 and fp16 are storage formats only: kernels load them into f32, compute in
/// f32 and round on store. The conversions below are the library's own (kernels, Tensor::cast);
/// lesson 05 has the student write them again, and its tests check the student's version against
/// hand-picked bit patterns and a brute-force search, never against these.
///
///     format  sign exponent mantissa  bias  largest finite      smallest normal  smallest subnormal
///     f32      1     8        23      127   3.40e38             2^-126           2^-149
///     bf16     1     8         7      127   3.39e38 (0x7f7f)    2^-126           2^-133
///     fp16     1     5        10       15   65504   (0x7bff)    2^-14            2^-24
///
/// Narrowing (f32 -> 16 bits) rounds to nearest, ties to even; values past the largest finite
/// (after rounding) become infinity; NaN stays NaN with its sign and the top bits of its payload,
/// and comes out quiet (the mantissa's top bit set). Widening (16 bits -> f32) is exact; a NaN
/// keeps sign and payload and comes out quiet.

#include <bit>
#include <cstddef>
#include <cstdint>

namespace sgpt {

/// A bf16 value as stored in memory (the top 16 bits of an f32). A distinct type, so that
/// Tensor::data<bf16_t>() checks the dtype.
struct bf16_t {
  uint16_t bits;  ///< sign, 8 exponent bits, 7 mantissa bits
};
/// An IEEE 754 binary16 value as stored in memory.
struct f16_t {
  uint16_t bits;  ///< sign, 5 exponent bits, 10 mantissa bits
};

// The conversions work on the bit patterns, so the result does not depend on the FPU's rounding
// mode or on compiler flags (-ffast-math would break a floating-point formulation of
// round-to-nearest-even). They are inline: the CPU kernels convert every element they load and
// store, and inlined they vectorise.

/// f32 -> bf16 bits, round to nearest even (see the file comment for NaN and overflow).
inline uint16_t f32_to_bf16(float x) {
  const uint32_t u = std::bit_cast<uint32_t>(x);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x0040u);  // quiet NaN
  // Adding 0x7fff (+1 when the kept part is odd) carries into bit 16 exactly when the dropped
  // half is above one half ulp, or equal to it with an odd kept part; a carry out of the
  // mantissa moves into the exponent, which is right (and turns the largest values into inf).
  const uint32_t rounded = u + 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(rounded >> 16);
}

/// bf16 bits -> f32 (exact; NaN comes out quiet).
inline float bf16_to_f32(uint16_t h) {
  uint32_t u = static_cast<uint32_t>(h) << 16;
  if ((u & 0x7fffffffu) > 0x7f800000u) u |= 0x00400000u;
  return std::bit_cast<float>(u);
}

/// f32 -> fp16 bits, round to nearest even, subnormals as IEEE 754 (values at or below 2^-25 flush to 0).
inline uint16_t f32_to_f16(float x) {
  const uint32_t u = std::bit_cast<uint32_t>(x);
  const uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  const uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return static_cast<uint16_t>(sign | 0x7e00u | ((a >> 13) & 0x3ffu));  // quiet NaN
  if (a >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // >= 65520 rounds to inf
  if (a >= 0x38800000u) {                                               // normal in fp16 (>= 2^-14)
    const uint32_t r = a - ((127u - 15u) << 23);                       // re-bias the exponent
    return static_cast<uint16_t>(sign | ((r + 0xfffu + ((r >> 13) & 1u)) >> 13));
  }
  // Subnormal in fp16: the result counts units of 2^-24. The f32 value is m24 * 2^(E-150) with
  // m24 the mantissa with its hidden bit, so the count is m24 >> (126 - E), rounded.
  const uint32_t e = a >> 23;
  if (e < 102) return sign;  // below 2^-25: less than half the smallest subnormal
  const uint32_t m24 = (a & 0x7fffffu) | 0x800000u;
  const uint32_t shift = 126 - e;  // 14..24
  uint32_t q = m24 >> shift;
  const uint32_t rem = m24 & ((1u << shift) - 1u), half = 1u << (shift - 1);
  if (rem > half || (rem == half && (q & 1u))) ++q;  // may carry into the smallest normal: still right
  return static_cast<uint16_t>(sign | q);
}

/// fp16 bits -> f32 (exact; NaN comes out quiet).
inline float f16_to_f32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
  if (e == 0x1f) return std::bit_cast<float>(sign | 0x7f800000u | (m << 13) | (m ? 0x00400000u : 0u));
  if (e != 0) return std::bit_cast<float>(sign | ((e + 112u) << 23) | (m << 13));
  if (m == 0) return std::bit_cast<float>(sign);
  // Subnormal: m * 2^-24, exact in f32. Normalise: shift the leading 1 into the hidden bit.
  int exp = 113;  // the f32 biased exponent of 2^-14; each shift halves it
  uint32_t mm = m;
  while (!(mm & 0x400u)) {
    mm <<= 1;
    --exp;
  }
  return std::bit_cast<float>(sign | (static_cast<uint32_t>(exp) << 23) | ((mm & 0x3ffu) << 13));
}

}  // namespace sgpt
