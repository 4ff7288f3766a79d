#pragma once
/// @file zero.hpp
/// @brief Lesson 11: ZeRO — data parallelism without the d copies of the model state.
///
/// Data parallelism (lesson 06) keeps on every rank the parameters, the gradients and the AdamW
/// moments of the whole model. ZeRO (Rajbhandari et al. 2020) cuts the flat buffer into shards and
/// keeps each shard's state on one rank only:
///
///     stage 1  optimizer state sharded          params full, grads full,  moments 1/d
///     stage 2  + gradients sharded              params full, grads 1/d (+ one unit), moments 1/d
///     stage 3  + parameters sharded             params 1/d (+ one gathered unit), grads 1/d (+ one unit), moments 1/d
///
/// Units and pieces. The flat buffer is cut into contiguous units (stage_units): stage 1 has one
/// unit, the whole buffer; stages 2 and 3 use the UnitRunner's units (embeddings, each block, the
/// head), so a unit's gradients can be handed over as soon as backward has computed them and a
/// unit's parameters gathered just before it runs. Every unit is split over the d ranks by the
/// library's rule shard_range(unit count, d, rank) (comm/communicator.hpp: the first count % d
/// ranks get one element more), which is what reduce_scatter and all_gather use; a rank's piece of
/// a unit is that shard, as a range of the flat buffer. A rank keeps everything sharded in
/// "packed" tensors: its pieces one after the other, in unit order.
///
/// The model runs through a UnitRunner (parallel/unit_runner.hpp): forward(u, params of unit u)
/// for u = 0 .. L+1, then backward(u, params, grads of unit u, scale) for u = L+1 .. 0. The
/// runner keeps only activations; every parameter and gradient buffer is this lesson's.
///
/// You write the functions below in zero.cpp.

#include <cstdint>
#include <string>
#include <vector>

#include "comm/communicator.hpp"
#include "core/tensor.hpp"
#include "optim/optim.hpp"
#include "parallel/unit_runner.hpp"
#include "train/checkpoint.hpp"

namespace sgpt::lesson11 {

/// Given: the units of ZeRO stage `stage` (1, 2 or 3) as ranges of the flat buffer, in buffer
/// order: one unit (the whole buffer) for stage 1, the runner's units for stages 2 and 3.
inline std::vector<ShardRange> stage_units(const UnitRunner& runner, int stage) {
  if (stage == 1) return {ShardRange{0, runner.layout().numel()}};
  std::vector<ShardRange> units;
  for (int u = 0; u < runner.num_units(); ++u) {
    const auto [b, e] = runner.unit_range(u);
    units.push_back(ShardRange{b, e - b});
  }
  return units;
}

/// Task 1: this rank's piece of every unit, as ranges of the flat buffer (global offsets), in
/// unit order: unit i's piece is shard_range(units[i].count, world, rank) moved to start at
/// units[i].begin. A piece may be empty (count 0) when a unit has fewer elements than ranks.
/// Throws sgpt::Error naming the numbers when world < 1 or rank is not in [0, world).
std::vector<ShardRange> owned_pieces(const std::vector<ShardRange>& units, int world, int rank);

/// How the model state is stored (bytes per parameter, Rajbhandari et al. 2020, section 3.1).
enum class Recipe {
  FP32,   ///< fp32 parameters (4), fp32 gradients (4), AdamW moments m and v (4 + 4)
  Mixed,  ///< lesson 05: bf16 parameters (2) and gradients (2); fp32 master, m and v (K = 12)
};

/// Model-state bytes per rank, by category.
struct StateBytes {
  double params = 0;     ///< parameters (plus, at stage 3, one gathered unit)
  double grads = 0;      ///< gradients (plus, at stages 2 and 3, one unit being reduced)
  double optimizer = 0;  ///< optimizer state (moments; with Mixed also the fp32 master weights)
  /// Their sum.
  double total() const { return params + grads + optimizer; }
};

/// Task 2: the bytes of model state one rank keeps at `stage` (0 = plain data parallelism, 1, 2,
/// 3) for a model of `psi` parameters on `world` ranks with `recipe`, as the paper's formula
/// gives them, plus the transient unit: at stages 2 and 3 the gradients of one unit of
/// `largest_unit` elements, at stage 3 also the parameters of one gathered unit (in the 16-bit
/// type with Mixed). Shards count psi / world elements (not rounded). Throws sgpt::Error naming
/// the numbers when stage is not in 0..3, psi < 0, world < 1 or largest_unit < 0.
StateBytes predicted_bytes(int stage, Recipe recipe, double psi, int world, int64_t largest_unit = 0);

/// One rank's ZeRO state, in one of two recipes chosen by make_zero_state's dtype:
///  - one dtype (F32, or F64 for exact tests): parameters, gradients and moments in it;
///  - mixed (BF16, lesson 05's recipe): parameters and gradients in bf16 (the working copy, 2 + 2
///    bytes per element), and for this rank's pieces only the f32 master weights and f32 moments
///    (the K = 12 bytes of the paper's optimizer state, sharded with the moments from stage 1 on).
struct ZeroState {
  int stage = 1;                    ///< 1, 2 or 3
  std::vector<ShardRange> units;    ///< stage_units(runner, stage)
  std::vector<ShardRange> pieces;   ///< owned_pieces(units, world, rank)
  Tensor full_params;   ///< stages 1, 2: every parameter [numel] (Parameters); stage 3: undefined
  Tensor full_grads;    ///< stage 1: every gradient [numel] (Gradients); stages 2, 3: undefined
  Tensor shard_params;  ///< stage 3: this rank's pieces, packed (Parameters); else undefined
  Tensor shard_grads;   ///< stages 2, 3: this rank's pieces of the gradient, packed (Gradients)
  Tensor unit_grads;    ///< stages 2, 3: one unit's gradients [largest unit] (Gradients)
  Tensor unit_params;   ///< stage 3: one gathered unit's parameters [largest unit] (Parameters)
  std::vector<AdamW> opts;  ///< one AdamW per piece (AdamW(layout, cfg, dtype, dev, piece.begin, piece.count); f32 when mixed)
  /// Mixed recipe only: this rank's pieces of the f32 master weights, packed (OptimizerState),
  /// initialised as the f32 single-device model; undefined in the one-dtype recipe.
  Tensor master;
};

/// Task 3 (a): the state of `stage` (1, 2 or 3) on this rank of `comm`, holding exactly what the
/// table in the file comment says and nothing more (the tests read the memory tracker), with
/// the parameters (or this rank's pieces of them) initialised as the single-device model under
/// `seed` (init_parameters of each range) and moments at zero. `dtype` F32 or F64: everything in
/// it. `dtype` BF16, the mixed recipe (see ZeroState): parameters and gradients in bf16 as the
/// table says, plus `master` (f32, OptimizerState, this rank's pieces packed, init_parameters of
/// each piece) and the AdamW moments in f32. Throws sgpt::Error naming the stage when it is not
/// 1, 2 or 3.
ZeroState make_zero_state(const UnitRunner& runner, Communicator& comm, int stage, uint64_t seed,
                          const AdamWConfig& cfg, DType dtype = DType::F32);

/// Given: the AdamW update of this rank's piece `u` (unit order), for either recipe. `params` is the
/// piece of the working parameters (a view of full_params at the piece, or of shard_params), `grads`
/// the piece's averaged gradient; AdamW sees grad_scale * grads, so clipping is a factor here and a
/// 16-bit gradient is never rescaled in place (lesson 05). One dtype: AdamW z.opts[u] updates
/// `params`. Mixed: it updates the piece's f32 master weights, and `params` becomes their rounding
/// to bf16. An empty piece is left alone. Throws sgpt::Error when the sizes are not the piece's.
void update_piece(ZeroState& z, size_t u, Tensor& params, const Tensor& grads, double lr, double grad_scale = 1.0);

/// What a training step reports.
struct StepStats {
  double loss = 0;       ///< mean loss of the global batch, the same on every rank
  double grad_norm = 0;  ///< global norm of the averaged gradient before clipping
};

/// Task 3 (b): one ZeRO stage-1 step. (x, y) are this rank's rows [b, T] of the global batch,
/// trained in k = b / micro_batch micro-batches (loss scale 1/k into full_grads, zeroed once);
/// then the gradient is reduce-scattered (average over the ranks) so each rank holds its piece of
/// the average; the global norm is clipped to `clip` (<= 0: off; as clip_grad_norm does, over the whole
/// gradient: the factor clip / (norm + 1e-6) when norm > clip, handed to update_piece); each rank
/// updates its pieces with update_piece; the parameters are all-gathered. Every stage runs
/// unchanged in both recipes: the collectives move the working dtype (bf16 when mixed). Communication: one
/// reduce_scatter and one all_gather of the whole buffer, and two one-element f64 all-reduces
/// (the loss, the squared norm). Throws sgpt::Error naming the numbers, before any
/// communication, when micro_batch is not positive or does not divide b.
StepStats zero1_step(ZeroState& z, UnitRunner& runner, Communicator& comm, const Tensor& x, const Tensor& y,
                     int64_t micro_batch, double lr, double clip);

/// Task 4: one ZeRO stage-2 step: as stage 1, but no rank ever holds a whole gradient buffer.
/// Each unit's gradient is computed into unit_grads during backward and at once reduce-scattered
/// (average) and added into this rank's piece in shard_grads, in every micro-batch. After the
/// update, each unit's parameters are all-gathered into full_params. Communication per step with
/// k micro-batches: k reduce_scatters and one all_gather per unit, two one-element all-reduces.
StepStats zero2_step(ZeroState& z, UnitRunner& runner, Communicator& comm, const Tensor& x, const Tensor& y,
                     int64_t micro_batch, double lr, double clip);

/// Task 5: one ZeRO stage-3 step: as stage 2, but parameters are sharded too. Before each unit's
/// forward and again before its backward, its parameters are all-gathered into unit_params (the
/// only gathered buffer: one unit at a time); the update changes only shard_params. Communication
/// per micro-batch: two all_gathers and one reduce_scatter per unit; two one-element all-reduces
/// per step.
StepStats zero3_step(ZeroState& z, UnitRunner& runner, Communicator& comm, const Tensor& x, const Tensor& y,
                     int64_t micro_batch, double lr, double clip);

/// Given: the step of z.stage.
inline StepStats zero_step(ZeroState& z, UnitRunner& runner, Communicator& comm, const Tensor& x, const Tensor& y,
                           int64_t micro_batch, double lr, double clip) {
  if (z.stage == 1) return zero1_step(z, runner, comm, x, y, micro_batch, lr, clip);
  if (z.stage == 2) return zero2_step(z, runner, comm, x, y, micro_batch, lr, clip);
  return zero3_step(z, runner, comm, x, y, micro_batch, lr, clip);
}

/// Task 6 (a): the consolidated checkpoint: gathers the parameters (the f32 master in the mixed
/// recipe, as lesson 05's trainer saves it) and both moments of every piece
/// and has rank 0 write, with save_checkpoint, exactly the file a single-device run (a GPT of the
/// runner's configuration and one AdamW over the whole buffer, at the same step) writes; the other
/// ranks return once it is complete. Collective over `comm`.
void save_zero_checkpoint(const std::string& path, const ZeroState& z, const UnitRunner& runner, Communicator& comm,
                          const TrainState& state);

/// Task 6 (b): loads a consolidated checkpoint (written by any d, or by a single-device run) into
/// this rank's state: its pieces of the parameters and moments (and the full parameters where the
/// stage keeps them; mixed: the master pieces, and the working parameters as their rounding), and
/// the step counter. Returns the TrainState.
TrainState load_zero_checkpoint(const std::string& path, ZeroState& z, const UnitRunner& runner);

}  // namespace sgpt::lesson11
