#pragma once
/// @file cuda_ops.hpp
/// @brief CUDA implementations of the operators in ops.hpp (f32 and bf16 storage). Internal: call the ops in
/// ops.hpp, which check shapes and dispatch here for tensors on Device::CUDA.

#include "core/tensor.hpp"
#include "kernels/ops.hpp"

namespace sgpt::cuda {

/// CUDA implementation of sgpt::encoder_forward (see ops.hpp).
void encoder_forward(Tensor& out, const Tensor& tokens, const Tensor& wte, const Tensor& wpe);
/// CUDA implementation of sgpt::encoder_backward (see ops.hpp).
void encoder_backward(Tensor& dwte, Tensor& dwpe, const Tensor& dout, const Tensor& tokens);
/// CUDA implementation of sgpt::layernorm_forward (see ops.hpp).
void layernorm_forward(Tensor& out, Tensor& mean, Tensor& rstd, const Tensor& inp, const Tensor& weight,
                       const Tensor& bias);
/// CUDA implementation of sgpt::layernorm_backward (see ops.hpp).
void layernorm_backward(Tensor& dinp, Tensor& dweight, Tensor& dbias, const Tensor& dout, const Tensor& inp,
                        const Tensor& weight, const Tensor& mean, const Tensor& rstd);
/// CUDA implementation of sgpt::matmul_forward (see ops.hpp).
void matmul_forward(Tensor& out, const Tensor& inp, const Tensor& weight, const Tensor& bias);
/// CUDA implementation of sgpt::matmul_backward (see ops.hpp).
void matmul_backward(Tensor& dinp, Tensor& dweight, Tensor& dbias, const Tensor& dout, const Tensor& inp,
                     const Tensor& weight);
/// CUDA implementation of sgpt::attention_forward (see ops.hpp).
void attention_forward(Tensor& out, Tensor& att, const Tensor& qkv, int n_head);
/// CUDA implementation of sgpt::attention_backward (see ops.hpp).
void attention_backward(Tensor& dqkv, const Tensor& dout, const Tensor& qkv, const Tensor& att, int n_head);
/// CUDA implementation of sgpt::attention_fused_forward (see ops.hpp; TF32 tensor cores).
void attention_fused_forward(Tensor& out, Tensor& lse, const Tensor& qkv, int n_head);
/// CUDA implementation of sgpt::attention_fused_backward (see ops.hpp).
void attention_fused_backward(Tensor& dqkv, const Tensor& dout, const Tensor& qkv, const Tensor& out,
                              const Tensor& lse, int n_head);
/// Whether the fused attention kernels take head size `head_size` (a multiple of 4, at most 128).
bool attention_fused_supported(int head_size);
/// CUDA implementation of sgpt::gelu_forward (see ops.hpp).
void gelu_forward(Tensor& out, const Tensor& inp);
/// CUDA implementation of sgpt::gelu_backward (see ops.hpp).
void gelu_backward(Tensor& dinp, const Tensor& inp, const Tensor& dout);
/// CUDA implementation of sgpt::residual_forward (see ops.hpp).
void residual_forward(Tensor& out, const Tensor& a, const Tensor& b);
/// CUDA implementation of sgpt::residual_backward (see ops.hpp).
void residual_backward(Tensor& da, Tensor& db, const Tensor& dout);
/// CUDA implementation of sgpt::softmax_crossentropy_forward (see ops.hpp).
void softmax_crossentropy_forward(Tensor& losses, Tensor& probs, const Tensor& logits, const Tensor& targets,
                                  int vocab_size);
/// CUDA implementation of sgpt::softmax_crossentropy_backward (see ops.hpp).
void softmax_crossentropy_backward(Tensor& dlogits, const Tensor& probs, const Tensor& targets, double dloss,
                                   int vocab_size);
/// CUDA implementation of sgpt::axpy_ (see ops.hpp).
void axpy_(Tensor& y, double alpha, const Tensor& x);
/// CUDA implementation of sgpt::scale_ (see ops.hpp).
void scale_(Tensor& x, double alpha);
/// CUDA implementation of sgpt::sum_of_squares (see ops.hpp).
double sum_of_squares(const Tensor& x);
/// CUDA implementation of sgpt::count_nonfinite (see ops.hpp).
int64_t count_nonfinite(const Tensor& x);
/// CUDA implementation of sgpt::copy_cast (see ops.hpp).
void copy_cast(Tensor& dst, const Tensor& src);
/// CUDA implementation of sgpt::adamw_update (see ops.hpp).
void adamw_update(Tensor& param, const Tensor& grad, Tensor& m, Tensor& v, const AdamWConfig& cfg, int64_t t,
                  bool decay);
/// CUDA implementation of sgpt::adamw_update_segments (see ops.hpp): one launch.
void adamw_update_segments(Tensor& param, const Tensor& grad, Tensor& m, Tensor& v, const AdamWConfig& cfg,
                           int64_t t, const std::vector<AdamWSegment>& segments);

}  // namespace sgpt::cuda
