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

/// f32 -> bf16 bits, round to nearest even (see the file comment for NaN and overflow).
uint16_t f32_to_bf16(float x);
/// bf16 bits -> f32 (exact; NaN comes out quiet).
float bf16_to_f32(uint16_t h);
/// f32 -> fp16 bits, round to nearest even, subnormals as IEEE 754 (values below 2^-25 flush to 0).
uint16_t f32_to_f16(float x);
/// fp16 bits -> f32 (exact; NaN comes out quiet).
float f16_to_f32(uint16_t h);

}  // namespace sgpt
