#pragma once
/// @file unit_runner.hpp
/// @brief The GPT run one unit at a time, with each unit's parameters and gradients supplied by
/// the caller: what ZeRO (lesson 11) needs to gather a block's parameters just before it runs
/// and to hand a block's gradients over as soon as they are computed.
///
/// The flat buffer (model/layout.hpp) is cut into L + 2 contiguous units:
///
///     unit 0        the embeddings (wte, wpe)
///     unit 1 .. L   block 0 .. L-1
///     unit L + 1    the head: final LayerNorm and lm_head
///
/// A step runs forward(0), forward(1), ..., forward(L + 1), then backward(L + 1), ..., backward(0).
/// Each call receives a tensor holding exactly its unit's elements (a view of a full buffer, or a
/// buffer of its own), so the runner never needs the whole model at once. Tied embeddings would put
/// wte in units 0 and L + 1 both; the runner refuses them (build with tied_embeddings = false).
/// Activations are allocated once per batch shape (MemCategory::Activations), as GPT does.

#include <cstdint>
#include <utility>
#include <vector>

#include "model/gpt.hpp"

namespace sgpt {

/// A GPT whose parameters and gradients live outside it, run unit by unit.
class UnitRunner {
 public:
  /// A runner for `cfg` (tied_embeddings must be false: sgpt::Error otherwise) in `dtype` on `device`.
  UnitRunner(const GPTConfig& cfg, DType dtype = DType::F32, Device device = Device::CPU);

  /// The configuration.
  const GPTConfig& config() const { return cfg_; }
  /// The single-device parameter layout (unit ranges are ranges of it).
  const ParameterLayout& layout() const { return layout_; }
  /// L + 2.
  int num_units() const { return cfg_.n_layer + 2; }
  /// [begin, end) of unit `u` in the flat buffer.
  std::pair<int64_t, int64_t> unit_range(int u) const;
  /// Elements of the largest unit.
  int64_t largest_unit() const;

  /// Starts a micro-batch: tokens and targets i32 [B,T] (copied).
  void start(const Tensor& tokens, const Tensor& targets);
  /// Forward of unit `u` with `params` = its elements [unit_range(u)] (any tensor of that many
  /// elements, this runner's dtype). Units run in order 0 .. L+1 after start().
  void forward(int u, const Tensor& params);
  /// Mean loss of the micro-batch (after forward(L + 1)).
  double loss() const { return loss_; }
  /// Backward of unit `u`: `grads` (its elements, like `params`) += d(loss_scale * mean loss)/d(unit).
  /// Units run in order L+1 .. 0 after the forward; `params` must hold the same values as in forward.
  void backward(int u, const Tensor& params, Tensor& grads, double loss_scale);
  /// Frees the activations (the tracker shows them gone).
  void free_activations();

 private:
  void check_unit(int u, const Tensor& t, const char* what) const;
  OuterParams outer(int u, const Tensor& flat) const;

  GPTConfig cfg_;
  ParameterLayout layout_;
  DType dtype_;
  Device device_;
  int next_forward_ = 0, next_backward_ = -1;
  double loss_ = 0;
  ModelActivations act_;
};

}  // namespace sgpt
