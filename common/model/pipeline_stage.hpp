#pragma once
/// @file pipeline_stage.hpp
/// @brief One pipeline stage of the GPT: a range of blocks (plus the embedding on the first
/// stage, the final LayerNorm, head and loss on the last), its slice of the flat parameter
/// buffer, and the activations of every micro-batch in flight.
///
/// The model is cut into p stages; stage r owns blocks [first_layer, end_layer) and the elements
/// [param_begin, param_end) of the single-device flat buffer (the layout is embeddings, blocks in
/// order, final LayerNorm, lm_head, so a stage's parameters are one contiguous range). Which
/// layers go where is the pipeline lesson's business (lesson 08 writes the split); this class
/// runs whatever split it is given:
///
///     Tensor y  = stage.forward(i, x, targets);      // keeps micro-batch i's activations
///     Tensor dx = stage.backward(i, dy, 1.0 / m);    // uses them, adds into grads(), frees them
///
/// Activations are objects (DESIGN.md §3.3): every forward allocates micro-batch i's caches
/// (MemCategory::Activations) and its backward frees them, so in_flight() is the number of
/// micro-batches whose activations are alive, and the memory tracker sees the same thing.
/// Every forward and backward records a trace event ("forward"/"backward", category Compute,
/// args "microbatch" and "stage") when the current TraceRecorder is enabled, so tests read a
/// schedule's real per-rank order back from the trace.

#include <cstdint>
#include <vector>

#include "core/tensor.hpp"
#include "model/config.hpp"
#include "model/gpt.hpp"
#include "model/in_flight.hpp"
#include "model/layout.hpp"

namespace sgpt {

/// Where one stage of a p-stage pipeline sits in the model.
struct StageSpec {
  int stage = 0;             ///< this stage's index r, 0 <= r < num_stages
  int num_stages = 1;        ///< p
  int first_layer = 0;       ///< first block this stage runs
  int end_layer = 0;         ///< one past the last block this stage runs
  int64_t param_begin = 0;   ///< first element of the flat parameter buffer this stage owns
  int64_t param_end = 0;     ///< one past the last element it owns
  /// True on the stage that embeds the tokens (stage 0).
  bool is_first() const { return stage == 0; }
  /// True on the stage that computes the head and the loss (stage p - 1).
  bool is_last() const { return stage == num_stages - 1; }
  /// Blocks on this stage.
  int num_layers() const { return end_layer - first_layer; }
  /// Parameters (elements) this stage allocates.
  int64_t num_params() const { return param_end - param_begin; }
  /// Equal when every field is.
  bool operator==(const StageSpec&) const = default;
};

/// One pipeline stage: its parameters, gradients, and the caches of the micro-batches in flight.
class PipelineStage {
 public:
  /// Allocates parameters [spec.num_params()] (MemCategory::Parameters) and zero gradients
  /// (MemCategory::Gradients) and initialises them as the single-device model would under `seed`
  /// (init_parameters of the range), so the stage holds exactly its slice of that model. Throws
  /// sgpt::Error naming the problem when the spec cannot run: a stage index outside [0, p), an
  /// empty or out-of-range block range, a first stage that does not start at block 0 or a last
  /// stage that does not end at block L, a parameter range that misses one of the stage's
  /// parameters, or tied embeddings on more than one stage (the embedding and the head would live
  /// on different ranks; build the model with tied_embeddings = false).
  PipelineStage(const GPTConfig& cfg, const StageSpec& spec, uint64_t seed, DType dtype = DType::F32,
                Device device = Device::CPU);

  /// The model configuration.
  const GPTConfig& config() const { return cfg_; }
  /// Where this stage sits.
  const StageSpec& spec() const { return spec_; }
  /// The single-device parameter layout (offsets are global; params() starts at param_begin).
  const ParameterLayout& layout() const { return layout_; }
  /// This stage's parameters: elements [param_begin, param_end) of the single-device buffer.
  Tensor& params() { return params_; }
  /// This stage's gradients, same range as params().
  Tensor& grads() { return grads_; }
  /// Sets every gradient to zero.
  void zero_grad() { grads_.zero_(); }
  /// The view of parameter `name` (a single-device name) in params() (throws if not on this stage).
  Tensor param(const std::string& name) const;
  /// The view of the gradient of `name` in grads() (throws if not on this stage).
  Tensor grad(const std::string& name) const;

  /// Forward of micro-batch `mb` (any int id not in flight). `x` is the token batch (i32 [b,T])
  /// on the first stage and the previous stage's output ([b,T,C], this stage's dtype) elsewhere;
  /// it is copied, so the caller may reuse it at once. `targets` (i32 [b,T]) is required on the
  /// last stage and ignored elsewhere. Returns the output [b,T,C] to send to the next stage (a
  /// view of this micro-batch's cache, valid until backward(mb)), or an undefined Tensor on the
  /// last stage, whose mean loss loss(mb) then holds.
  Tensor forward(int mb, const Tensor& x, const Tensor& targets = Tensor());
  /// Mean loss of micro-batch `mb` (last stage only, while mb is in flight).
  double loss(int mb) const;
  /// Backward of micro-batch `mb` (in flight). `dout` is the gradient of the loss w.r.t. this
  /// stage's output ([b,T,C]; ignored on the last stage, which starts from its own loss with
  /// weight `loss_scale`, e.g. 1/m for the mean over m micro-batches). Adds into grads() (+=),
  /// frees mb's activations, and returns the gradient w.r.t. this stage's input [b,T,C] to send
  /// to the previous stage (a new tensor), or an undefined Tensor on the first stage.
  Tensor backward(int mb, const Tensor& dout, double loss_scale = 1.0);

  /// Shape [b,T,C] of the activations micro-batch `mb` passes between stages (in flight only):
  /// the size of the gradient its backward receives and sends.
  Shape boundary_shape(int mb) const;

  /// Micro-batches whose activations are alive now (forward done, backward not yet).
  int in_flight() const { return live_.size(); }
  /// The largest in_flight() since construction or reset_peak_in_flight().
  int peak_in_flight() const { return live_.peak(); }
  /// Sets the peak to the current value.
  void reset_peak_in_flight() { live_.reset_peak(); }
  /// Forwards and backwards run so far.
  int64_t forwards() const { return forwards_; }
  /// Backwards run so far.
  int64_t backwards() const { return backwards_; }
  /// Bytes of activations one micro-batch of shape [b,T] keeps alive on this stage between its
  /// forward and its backward (what each unit of in_flight() costs).
  int64_t activation_bytes_per_microbatch(int64_t b, int64_t T) const;
  /// Frees every micro-batch in flight and the backward scratch.
  void free_activations();

 private:
  struct MicroBatch {
    Tensor tokens, targets, input;  // input: the embedding output (first stage) or the received x
    std::vector<BlockCache> blocks;
    HeadCache head;
    double loss = 0;
  };
  Tensor block_input(const MicroBatch& a, int i) const;
  OuterParams outer_of(const Tensor& flat) const;  // the embeddings / head views this stage owns
  OuterParams outer_params() const { return outer_of(params_); }
  OuterParams outer_grads() const { return outer_of(grads_); }

  GPTConfig cfg_;
  StageSpec spec_;
  ParameterLayout layout_;
  DType dtype_;
  Device device_;
  Tensor params_, grads_;
  InFlight<MicroBatch> live_;
  BlockGradScratch scratch_;
  int64_t scratch_b_ = 0, scratch_t_ = 0;
  int64_t forwards_ = 0, backwards_ = 0;
};

}  // namespace sgpt
