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
