// Lesson 12, task 1: the process grid. Tensor-parallel ranks are adjacent, so a group that talks
// on every block stays inside a node; data-parallel replicas are the farthest apart, since they
// talk once per step.

#include "grid.hpp"

#include "core/check.hpp"

namespace sgpt::lesson12 {

namespace {
[[maybe_unused]] void check_shape(const GridShape& s) {
  SGPT_CHECK(s.dp >= 1 && s.pp >= 1 && s.tp >= 1, "grid ", s.str(), ": every dimension (dp x pp x tp) must be >= 1");
}
}  // namespace

GridCoord grid_coords(const GridShape& s, int rank) {
  // TODO(lesson 12, task 1): rank -> (dp, pp, tp), tensor coordinate fastest
  // Contract: the comment of this function in the header. Hints: README.md, section "Hints", task 1.
  SGPT_TODO(12, 1, "rank -> (dp, pp, tp), tensor coordinate fastest");
}

int grid_rank(const GridShape& s, const GridCoord& c) {
  // TODO(lesson 12, task 1): (dp, pp, tp) -> rank
  // Contract: the comment of this function in the header. Hints: README.md, section "Hints", task 1.
  SGPT_TODO(12, 1, "(dp, pp, tp) -> rank");
}

Grid make_grid(Communicator& world, const GridShape& s) {
  // TODO(lesson 12, task 1): the grid and its three sub-communicators
  // Contract: the comment of this function in the header. Hints: README.md, section "Hints", task 1.
  SGPT_TODO(12, 1, "the grid and its three sub-communicators");
}

}  // namespace sgpt::lesson12
