#pragma once
/// @file convert.hpp
/// @brief f32 <-> bf16 conversion on the GPU: the casts that mixed precision needs (internal to
/// the CUDA backend; lesson 05's recipe may call them). Both run on cuda::current_stream().

#include <cuda_bf16.h>

#include <cstdint>

namespace sgpt::cuda {

/// dst[i] = src[i] rounded to the nearest bf16 (ties to even), for i < n. Device pointers.
void f32_to_bf16(__nv_bfloat16* dst, const float* src, int64_t n);
/// dst[i] = src[i] widened to f32 (exact), for i < n. Device pointers.
void bf16_to_f32(float* dst, const __nv_bfloat16* src, int64_t n);

}  // namespace sgpt::cuda
