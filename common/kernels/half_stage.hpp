#pragma once
// Internal to common/kernels: 16-bit (bf16, fp16) tensors on the CPU.
//
// The CPU kernels compute in f32 (or f64). An op called with a 16-bit CPU tensor runs its f32
// kernel on f32 copies of the 16-bit tensors and rounds its outputs back on store (round to
// nearest even, core/half.hpp): "compute in f32, round on store", the numerics of a GPU kernel
// that loads bf16, accumulates in f32 and stores bf16. f32 and 16-bit tensors may be mixed in
// one call (an f32 master weight with bf16 gradients, an f32 accumulator += bf16 gradients); f64
// never mixes. The copies are temporaries charged to MemCategory::Other, so the categories that
// lessons measure (parameters, gradients, optimizer state, activations) hold only the real
// buffers. CUDA tensors never come here.

#include <initializer_list>
#include <vector>

#include "core/half.hpp"
#include "core/tensor.hpp"

/// @cond INTERNAL
namespace sgpt::detail {

/// True for a defined CPU tensor of a 16-bit type.
inline bool cpu_half(const Tensor& t) { return t.defined() && t.device() == Device::CPU && is_half(t.dtype()); }

/// True when any of the tensors is a 16-bit CPU tensor: the op then runs through F32Stage.
inline bool any_cpu_half(std::initializer_list<const Tensor*> ts) {
  for (const Tensor* t : ts)
    if (cpu_half(*t)) return true;
  return false;
}

/// The f32 copies of one op call's 16-bit tensors. in() and out() return the tensor itself when
/// it is not 16-bit (or undefined), so an op passes every argument through them.
class F32Stage {
 public:
  explicit F32Stage(const char* op) : op_(op) {}

  /// An f32 copy of an input.
  Tensor in(const Tensor& t) const {
    if (!cpu_half(t)) return check(t);
    Tensor f = Tensor::empty(t.shape(), DType::F32, Device::CPU, MemCategory::Other);
    widen(f.data<float>(), t);
    return f;
  }
  /// An f32 copy of an output, rounded back into `t` by store(). `keep` copies its values in
  /// (outputs that accumulate, +=, or are updated in place); otherwise it starts uninitialised.
  Tensor out(Tensor& t, bool keep) {
    if (!cpu_half(t)) return check(t);
    Tensor f = keep ? in(t) : Tensor::empty(t.shape(), DType::F32, Device::CPU, MemCategory::Other);
    outs_.push_back({t, f});
    return f;
  }
  /// Rounds every output copy back into its 16-bit tensor.
  void store() const {
    for (const auto& [dst, src] : outs_) {
      const float* s = src.data<float>();
      const int64_t n = dst.numel();
      if (dst.dtype() == DType::BF16) {
        bf16_t* d = dst.data<bf16_t>();
#pragma omp parallel for schedule(static) if (n >= (1 << 15))
        for (int64_t i = 0; i < n; ++i) d[i].bits = f32_to_bf16(s[i]);
      } else {
        f16_t* d = dst.data<f16_t>();
#pragma omp parallel for schedule(static) if (n >= (1 << 15))
        for (int64_t i = 0; i < n; ++i) d[i].bits = f32_to_f16(s[i]);
      }
    }
  }

 private:
  // A non-16-bit tensor passes through; f64 next to a 16-bit tensor is an error, not a silent cast.
  const Tensor& check(const Tensor& t) const {
    SGPT_CHECK(!t.defined() || t.dtype() != DType::F64, op_,
               ": f64 tensors do not mix with bf16/f16 ones (16-bit ops compute in f32)");
    return t;
  }
  static void widen(float* d, const Tensor& t) {
    const int64_t n = t.numel();
    if (t.dtype() == DType::BF16) {
      const bf16_t* s = t.data<bf16_t>();
#pragma omp parallel for schedule(static) if (n >= (1 << 15))
      for (int64_t i = 0; i < n; ++i) d[i] = bf16_to_f32(s[i].bits);
    } else {
      const f16_t* s = t.data<f16_t>();
#pragma omp parallel for schedule(static) if (n >= (1 << 15))
      for (int64_t i = 0; i < n; ++i) d[i] = f16_to_f32(s[i].bits);
    }
  }

  const char* op_;
  std::vector<std::pair<Tensor, Tensor>> outs_;  // (16-bit destination, f32 copy)
};

}  // namespace sgpt::detail
/// @endcond
