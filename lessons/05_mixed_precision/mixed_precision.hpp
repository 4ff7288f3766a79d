#pragma once
/// @file mixed_precision.hpp
/// @brief Lesson 05: mixed precision — bf16 and fp16, fp32 master weights, dynamic loss scaling,
/// bytes per parameter.
///
/// You write the functions marked "Task k" in conversions.cpp (tasks 1-2), loss_scaler.cpp
/// (task 3) and mixed_precision.cpp (tasks 4-5). The library has its own conversions
/// (core/half.hpp): do not call them; the tests check yours against hand-picked bit patterns and
/// a brute-force search, not against the library.
///
/// The recipe (Micikevicius et al. 2018), as MixedPrecisionTrainer::step runs it:
///
///     master (f32) --round--> working copy (bf16/fp16) --forward/backward--> grads (bf16/fp16)
///        ^                                                                      |
///        +------------- AdamW in f32 (moments f32) <---- unscale, clip ---------+
///
/// scalegpt-train --dtype f32|bf16|fp16 trains with this class, so the trainer runs whatever
/// your files hold.

#include <cstdint>
#include <string>

#include "core/tensor.hpp"
#include "kernels/ops.hpp"
#include "model/config.hpp"
#include "model/gpt.hpp"
#include "optim/optim.hpp"

namespace sgpt::lesson05 {

// ---- tasks 1 and 2: conversions (conversions.cpp) ---------------------------------------------------

/// Task 1a: the bf16 bit pattern nearest to `x` (round to nearest, ties to even). Values whose
/// rounding passes the largest finite bf16 become infinity; a NaN stays NaN with its sign and the
/// top 7 bits of its payload, and comes out quiet (mantissa bit 6 set).
uint16_t float_to_bf16(float x);
/// Task 1b: the f32 value of a bf16 bit pattern (exact). A NaN keeps sign and payload and comes
/// out quiet (f32 mantissa bit 22 set).
float bf16_to_float(uint16_t h);
/// Task 2a: the IEEE 754 binary16 bit pattern nearest to `x` (round to nearest, ties to even), with
/// subnormals: magnitudes below 2^-14 are multiples of 2^-24, and those at or below 2^-25 round to
/// a signed zero. |x| >= 65520 becomes infinity. A NaN stays NaN with its sign and the top 10 bits
/// of its payload, and comes out quiet (mantissa bit 9 set).
uint16_t float_to_fp16(float x);
/// Task 2b: the f32 value of a binary16 bit pattern (exact, subnormals included). A NaN keeps sign
/// and payload and comes out quiet.
float fp16_to_float(uint16_t h);

/// Given (conversions.cpp): dst = src element by element with the four functions above. One of
/// them is f32, the other bf16 or f16 (same dtype is a plain copy); same numel. f32 <-> bf16 with
/// both tensors on the GPU runs the library's kernel (sgpt::copy_cast); other CUDA tensors are
/// converted on the host (slow, correct).
void cast_into(Tensor& dst, const Tensor& src);

// ---- task 3: dynamic loss scaling (loss_scaler.cpp) ------------------------------------------------

/// Constants of the dynamic loss scaler (the defaults are PyTorch's GradScaler's).
struct LossScalerConfig {
  double init_scale = 65536.0;     ///< 2^16
  double growth_factor = 2.0;      ///< scale *= this after growth_interval good steps in a row
  double backoff_factor = 0.5;     ///< scale *= this after a step whose gradients overflowed
  int64_t growth_interval = 2000;  ///< good steps in a row before the scale grows
};

/// Task 3a: true when any element of `t` (a CPU tensor of f32, bf16 or f16) is +-inf or NaN.
/// (Given: a GPU tensor is checked by the library's kernel, sgpt::count_nonfinite.)
bool has_inf_or_nan(const Tensor& t);

/// The loss scale of fp16 training and its update rule. The caller multiplies the loss by scale()
/// before the backward pass, checks the gradients, and calls update() once per step.
class DynamicLossScaler {
 public:
  /// Starts at cfg.init_scale; throws sgpt::Error for a non-positive scale, growth_factor <= 1,
  /// backoff_factor outside (0, 1) or growth_interval < 1.
  explicit DynamicLossScaler(const LossScalerConfig& cfg = {});

  /// The scale to multiply the loss by in this step.
  double scale() const { return scale_; }
  /// Task 3b: the end of a step whose (scaled) gradients held an inf or NaN (`found_inf`) or not.
  /// Returns whether the optimizer may apply this step. An overflow skips the step, multiplies
  /// the scale by backoff_factor and restarts the count of good steps; a good step counts, and
  /// the growth_interval-th good step in a row multiplies the scale by growth_factor (after the
  /// step, which used the old scale) and restarts the count.
  bool update(bool found_inf);

  /// Good steps since the last overflow or growth.
  int64_t good_steps() const { return good_steps_; }
  /// Steps skipped so far.
  int64_t skipped_steps() const { return skipped_; }
  /// The constants.
  const LossScalerConfig& config() const { return cfg_; }

 private:
  LossScalerConfig cfg_;
  double scale_;
  int64_t good_steps_ = 0;
  int64_t skipped_ = 0;
};

// ---- task 4: the mixed-precision step (mixed_precision.cpp) ------------------------------------------

/// The element type of the working copy: parameters, gradients and activations.
enum class Precision { F32, BF16, FP16 };
/// The DType of a precision (F32, BF16, F16).
DType precision_dtype(Precision p);
/// "f32", "bf16" or "fp16".
const char* precision_name(Precision p);
/// Parses "f32", "bf16" or "fp16" (throws sgpt::Error naming the accepted values otherwise).
Precision parse_precision(const std::string& name);

/// A training recipe.
struct Recipe {
  Precision precision = Precision::BF16;  ///< working copy, gradients and activations
  bool fp32_grad_accum = false;  ///< sum the micro-batch gradients in an f32 buffer (bf16/fp16 only)
  bool loss_scaling = false;     ///< dynamic loss scaling (what fp16 needs; bf16 does not)
  LossScalerConfig scaler;       ///< its constants
};

/// What one step reports.
struct StepResult {
  double loss = 0;        ///< mean loss over the batch (unscaled)
  double grad_norm = 0;   ///< global norm of the unscaled gradient before clipping (inf/NaN if skipped)
  double loss_scale = 1;  ///< the scale this step's backward used (1 without loss scaling)
  bool skipped = false;   ///< true when the scaler rejected the step (nothing was updated)
};

/// A GPT trained with a mixed-precision recipe: the fp32 master weights and the AdamW moments
/// (f32), the working model in the recipe's precision, the optional f32 gradient accumulator and
/// the loss scaler.
///
/// Memory, by tracker category: parameters = the working copy (2 bytes per parameter in
/// bf16/fp16); gradients = the working gradients (2), plus the f32 accumulator (4) when the recipe
/// has one; optimizer state = the master copy (4) and the two moments (8), as ZeRO counts them.
/// For Precision::F32 there is no separate master: the model's f32 parameters are the master.
class MixedPrecisionTrainer {
 public:
  /// Given: builds everything from `seed` (the master is the f32 model's initialisation, the
  /// working copy its rounding). Throws sgpt::Error for fp32_grad_accum with Precision::F32.
  MixedPrecisionTrainer(const GPTConfig& cfg, uint64_t seed, const Recipe& recipe, const AdamWConfig& adamw,
                        Device device = Device::CPU);

  /// Task 4: one optimizer step on the batch (x, y) [rows, T] (i32), in rows / micro_batch
  /// micro-batches (micro_batch must divide rows). Runs forward and backward on the working model
  /// (each backward scaled by the loss scale and 1/k), with the gradients summed in the working
  /// precision or, with fp32_grad_accum, in the f32 accumulator; with loss scaling, asks the
  /// scaler whether to apply the step; unscales and clips the global norm to `clip` (<= 0: off)
  /// and steps AdamW on the master (AdamW::step's grad_scale takes the factor, so 16-bit gradients
  /// are never rescaled in place); finally refreshes the working copy from the master.
  StepResult step(const Tensor& x, const Tensor& y, int64_t micro_batch, double lr, double clip);

  /// The working model (its parameters are the rounded master after every step).
  GPT& model() { return model_; }
  /// The fp32 master weights [N] (for Precision::F32 the model's own parameters).
  Tensor& master() { return master_; }
  /// AdamW (f32 moments) on the master.
  AdamW& optimizer() { return opt_; }
  /// The loss scaler (used only when the recipe has loss_scaling).
  DynamicLossScaler& scaler() { return scaler_; }
  /// The f32 gradient accumulator [N] (undefined unless recipe().fp32_grad_accum).
  Tensor& grad_accum() { return accum_; }
  /// The recipe.
  const Recipe& recipe() const { return recipe_; }

 private:
  Recipe recipe_;
  GPT model_;
  Tensor master_;
  AdamW opt_;
  DynamicLossScaler scaler_;
  Tensor accum_;
};

// ---- task 5: bytes (mixed_precision.cpp) ---------------------------------------------------------------

/// Model-state bytes per tracker category.
struct ModelStateBytes {
  int64_t parameters = 0;       ///< the working copy
  int64_t gradients = 0;        ///< working gradients (+ the f32 accumulator)
  int64_t optimizer_state = 0;  ///< master copy (if separate) + AdamW moments
  /// Sum of the three.
  int64_t total() const { return parameters + gradients + optimizer_state; }
};

/// Task 5a: the bytes that a MixedPrecisionTrainer with `recipe` holds for a model of
/// `n_params` parameters, per category (see the class comment).
ModelStateBytes model_state_bytes(const Recipe& recipe, int64_t n_params);
/// Task 5b: the activation bytes that GPT allocates for a batch [B,T] with element type `dtype`
/// (F32, BF16 or F16): every cache and scratch tensor of ModelActivations::ensure (which calls
/// make_block_cache, make_head_cache and make_block_grad_scratch in common/model/gpt.cpp), in
/// `dtype`, plus the i32 tokens and targets. (GPT's default: every block keeps its fch_gelu;
/// GPT::set_recompute_gelu, off by default, would remove L*4*B*T*C elements.)
int64_t activation_bytes(const GPTConfig& cfg, int64_t B, int64_t T, DType dtype);

}  // namespace sgpt::lesson05
