#pragma once
/// @file cuda_ops.hpp
/// @brief CUDA implementations of the operators in ops.hpp (f32). Internal: call the ops in
/// ops.hpp, which check shapes and dispatch here for tensors on Device::CUDA.

#include "core/tensor.hpp"
#include "kernels/ops.hpp"

namespace sgpt::cuda {

void encoder_forward(Tensor& out, const Tensor& tokens, const Tensor& wte, const Tensor& wpe);
void encoder_backward(Tensor& dwte, Tensor& dwpe, const Tensor& dout, const Tensor& tokens);
void layernorm_forward(Tensor& out, Tensor& mean, Tensor& rstd, const Tensor& inp, const Tensor& weight,
                       const Tensor& bias);
void layernorm_backward(Tensor& dinp, Tensor& dweight, Tensor& dbias, const Tensor& dout, const Tensor& inp,
                        const Tensor& weight, const Tensor& mean, const Tensor& rstd);
void matmul_forward(Tensor& out, const Tensor& inp, const Tensor& weight, const Tensor& bias);
void matmul_backward(Tensor& dinp, Tensor& dweight, Tensor& dbias, const Tensor& dout, const Tensor& inp,
                     const Tensor& weight);
void attention_forward(Tensor& out, Tensor& att, const Tensor& qkv, int n_head);
void attention_backward(Tensor& dqkv, const Tensor& dout, const Tensor& qkv, const Tensor& att, int n_head);
void gelu_forward(Tensor& out, const Tensor& inp);
void gelu_backward(Tensor& dinp, const Tensor& inp, const Tensor& dout);
void residual_forward(Tensor& out, const Tensor& a, const Tensor& b);
void residual_backward(Tensor& da, Tensor& db, const Tensor& dout);
void softmax_crossentropy_forward(Tensor& losses, Tensor& probs, const Tensor& logits, const Tensor& targets,
                                  int vocab_size);
void softmax_crossentropy_backward(Tensor& dlogits, const Tensor& probs, const Tensor& targets, double dloss,
                                   int vocab_size);
void axpy_(Tensor& y, double alpha, const Tensor& x);
void scale_(Tensor& x, double alpha);
double sum_of_squares(const Tensor& x);
void adamw_update(Tensor& param, const Tensor& grad, Tensor& m, Tensor& v, const AdamWConfig& cfg, int64_t t,
                  bool decay);

}  // namespace sgpt::cuda
