#pragma once
// Internal to the CUDA backend: ops called with f32 and bf16 tensors mixed in a combination that
// has no kernel of its own (the hot combinations do: all f32, all bf16, and the optimizer's f32
// master/moments with bf16 gradients). Like the CPU's F32Stage (half_stage.hpp), it makes f32
// copies of the bf16 tensors on the GPU, runs the f32 kernel and rounds the outputs back on store:
// the same numerics as a kernel that loads bf16 and computes in f32, at the price of the copies
// (charged to MemCategory::Other).

#include <utility>
#include <vector>

#include "core/tensor.hpp"
#include "kernels/cuda/convert.hpp"

namespace sgpt::cuda::detail {

/// The f32 copies of one op call's bf16 tensors (see the file comment). in()/out() return f32 and
/// undefined tensors themselves.
class F32Stage {
 public:
  /// An f32 copy of an input.
  Tensor in(const Tensor& t) const {
    if (!t.defined() || t.dtype() != DType::BF16) return t;
    Tensor f = Tensor::empty(t.shape(), DType::F32, Device::CUDA, MemCategory::Other);
    bf16_to_f32(f.data<float>(), static_cast<const __nv_bfloat16*>(t.raw()), t.numel());
    return f;
  }
  /// An f32 copy of an output, rounded back into `t` by store(); `keep` copies its values in
  /// (outputs that accumulate or are updated in place).
  Tensor out(Tensor& t, bool keep) {
    if (!t.defined() || t.dtype() != DType::BF16) return t;
    Tensor f = keep ? in(t) : Tensor::empty(t.shape(), DType::F32, Device::CUDA, MemCategory::Other);
    outs_.emplace_back(t, f);
    return f;
  }
  /// Rounds every output copy back into its bf16 tensor (stream-ordered after the op).
  void store() const {
    for (const auto& [dst, src] : outs_)
      f32_to_bf16(static_cast<__nv_bfloat16*>(dst.raw()), src.data<float>(), dst.numel());
  }

 private:
  std::vector<std::pair<Tensor, Tensor>> outs_;  // (bf16 destination, f32 copy)
};

}  // namespace sgpt::cuda::detail
