// Lesson 11: ZeRO stages 1, 2 and 3. Every stage trains exactly like data parallelism: what
// changes is which rank keeps which bytes, and which collectives move them.

#include "zero.hpp"

#include <cmath>

#include "core/check.hpp"
#include "kernels/ops.hpp"

namespace sgpt::lesson11 {

std::vector<ShardRange> owned_pieces(const std::vector<ShardRange>& units, int world, int rank) {
  // TODO(lesson 11, task 1): this rank's piece of every unit
  // Contract: the comment of this function in the header. Hints: README.md, section "Hints", task 1.
  SGPT_TODO(11, 1, "this rank's piece of every unit");
}

StateBytes predicted_bytes(int stage, Recipe recipe, double psi, int world, int64_t largest_unit) {
  // TODO(lesson 11, task 2): the paper's bytes per rank, plus the transient unit
  // Contract: the comment of this function in the header. Hints: README.md, section "Hints", task 2.
  SGPT_TODO(11, 2, "the paper's bytes per rank, plus the transient unit");
}

ZeroState make_zero_state(const UnitRunner& runner, Communicator& comm, int stage, uint64_t seed,
                          const AdamWConfig& cfg, DType dtype) {
  // TODO(lesson 11, task 3): allocate what the stage keeps
  // Contract: the comment of this function in the header. Hints: README.md, section "Hints", task 3.
  SGPT_TODO(11, 3, "allocate what the stage keeps");
}


// ---- given: the update of one piece, in either recipe ----------------------------------------------

void update_piece(ZeroState& z, size_t u, Tensor& params, const Tensor& grads, double lr, double grad_scale) {
  SGPT_CHECK(u < z.pieces.size() && params.numel() == z.pieces[u].count && grads.numel() == z.pieces[u].count,
             "update_piece: piece ", u, " of ", z.pieces.size(), " has ", u < z.pieces.size() ? z.pieces[u].count : 0,
             " elements; got params of ", params.numel(), " and grads of ", grads.numel());
  if (params.numel() == 0) return;  // an empty piece (a unit smaller than the group) has nothing to update
  if (!z.master.defined()) {        // one dtype: the working parameters are what AdamW updates
    z.opts[u].step(params, grads, lr, grad_scale);
    return;
  }
  // Mixed: AdamW updates the piece's f32 master (its moments are f32 too); the working piece is
  // then the master rounded to nearest even, once (0 + master in f32, rounded on store).
  int64_t at = 0;
  for (size_t i = 0; i < u; ++i) at += z.pieces[i].count;
  Tensor master = z.master.view(at, {params.numel()});
  z.opts[u].step(master, grads, lr, grad_scale);
  params.zero_();
  axpy_(params, 1.0, master);
}

StepStats zero1_step(ZeroState& z, UnitRunner& runner, Communicator& comm, const Tensor& x, const Tensor& y,
                     int64_t micro_batch, double lr, double clip) {
  // TODO(lesson 11, task 3): reduce-scatter, update my piece, all-gather
  // Contract: the comment of this function in the header. Hints: README.md, section "Hints", task 3.
  SGPT_TODO(11, 3, "reduce-scatter, update my piece, all-gather");
}

StepStats zero2_step(ZeroState& z, UnitRunner& runner, Communicator& comm, const Tensor& x, const Tensor& y,
                     int64_t micro_batch, double lr, double clip) {
  // TODO(lesson 11, task 4): reduce-scatter each unit's gradient as backward produces it
  // Contract: the comment of this function in the header. Hints: README.md, section "Hints", task 4.
  SGPT_TODO(11, 4, "reduce-scatter each unit's gradient as backward produces it");
}

StepStats zero3_step(ZeroState& z, UnitRunner& runner, Communicator& comm, const Tensor& x, const Tensor& y,
                     int64_t micro_batch, double lr, double clip) {
  // TODO(lesson 11, task 5): gather each unit just before it runs
  // Contract: the comment of this function in the header. Hints: README.md, section "Hints", task 5.
  SGPT_TODO(11, 5, "gather each unit just before it runs");
}

void save_zero_checkpoint(const std::string& path, const ZeroState& z, const UnitRunner& runner, Communicator& comm,
                          const TrainState& state) {
  // TODO(lesson 11, task 6): gather the pieces, rank 0 writes the single-device file
  // Contract: the comment of this function in the header. Hints: README.md, section "Hints", task 6.
  SGPT_TODO(11, 6, "gather the pieces, rank 0 writes the single-device file");
}

TrainState load_zero_checkpoint(const std::string& path, ZeroState& z, const UnitRunner& runner) {
  // TODO(lesson 11, task 6): read the whole file, keep my pieces
  // Contract: the comment of this function in the header. Hints: README.md, section "Hints", task 6.
  SGPT_TODO(11, 6, "read the whole file, keep my pieces");
}

}  // namespace sgpt::lesson11
