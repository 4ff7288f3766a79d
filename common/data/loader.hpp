#pragma once
/// @file loader.hpp
/// @brief A deterministic, shardable loader of (input, target) batches from a token sequence.
///
/// The token sequence is cut into global batches of B rows of T tokens. The global batch at
/// position p holds, for row i in [0, B),
///
///     inputs[i]  = tokens[p + i*T,     p + i*T + T)
///     targets[i] = tokens[p + i*T + 1, p + i*T + T + 1)     (the next token of each input)
///
/// and after it the position moves to p + B*T. When the following batch would need a token past
/// the end (p + B*T + 1 > size), the position wraps to 0 and the epoch counter goes up.
///
/// With `world` ranks, rank r receives rows [r*B/world, (r+1)*B/world) of every global batch, so
/// the ranks' batches stacked in rank order are exactly the batch a single rank would see (the
/// data-parallel lessons rely on this). The whole state is (position, epoch): saving it in a
/// checkpoint and restoring it continues the same sequence of batches.

#include <cstdint>

#include "core/tensor.hpp"
#include "data/token_file.hpp"

namespace sgpt {

/// Where a DataLoader is in its data: everything a checkpoint needs to resume it.
struct LoaderState {
  int64_t position = 0;  ///< index of the first token of the next global batch
  int64_t epoch = 0;     ///< completed passes over the data
  /// Equal when position and epoch are.
  bool operator==(const LoaderState&) const = default;
};

/// Deterministic loader of next-token batches, sharded over data-parallel ranks.
class DataLoader {
 public:
  /// A loader over `tokens` (which must outlive it) with global batch `global_batch` (B) and
  /// sequence length `seq_len` (T), for rank `rank` of `world`. Throws sgpt::Error when B or T is
  /// not positive, B is not divisible by world, rank is outside [0, world), or the data holds
  /// fewer than B*T + 1 tokens (one batch and its last target).
  DataLoader(const TokenFile& tokens, int64_t global_batch, int64_t seq_len, int rank = 0, int world = 1);

  /// Fills this rank's rows of the next global batch and advances. `inputs` and `targets` are
  /// int32 tensors of shape [B/world, T]: undefined tensors are allocated on the CPU; defined ones
  /// must already have that shape and dtype (on any device) and are filled in place.
  void next(Tensor& inputs, Tensor& targets);

  /// The current state (position of the next batch, epoch).
  LoaderState state() const { return state_; }
  /// Resumes from a saved state. Throws sgpt::Error when the position cannot start a batch.
  void set_state(const LoaderState& state);
  /// Back to position 0, epoch 0.
  void reset() { state_ = LoaderState{}; }

  /// B, the rows of a global batch.
  int64_t global_batch() const { return B_; }
  /// B/world, the rows this rank receives.
  int64_t local_batch() const { return B_ / world_; }
  /// T, the sequence length.
  int64_t seq_len() const { return T_; }
  /// Global batches per epoch (before the position wraps to 0).
  int64_t batches_per_epoch() const;
  /// This loader's data-parallel rank.
  int rank() const { return rank_; }
  /// Number of data-parallel ranks sharing each global batch.
  int world() const { return world_; }

 private:
  const TokenFile* tokens_;
  int64_t B_, T_;
  int rank_, world_;
  LoaderState state_;
};

}  // namespace sgpt
