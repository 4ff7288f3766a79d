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
  check_shape(s);
  SGPT_CHECK(rank >= 0 && rank < s.size(), "grid ", s.str(), ": rank ", rank, " is outside [0, ", s.size(), ")");
  GridCoord c;
  c.tp = rank % s.tp;
  c.pp = (rank / s.tp) % s.pp;
  c.dp = rank / (s.tp * s.pp);
  return c;
  // END TODO
}

int grid_rank(const GridShape& s, const GridCoord& c) {
  // TODO(lesson 12, task 1): (dp, pp, tp) -> rank
  check_shape(s);
  SGPT_CHECK(c.dp >= 0 && c.dp < s.dp && c.pp >= 0 && c.pp < s.pp && c.tp >= 0 && c.tp < s.tp, "grid ", s.str(),
             ": coordinates (", c.dp, ", ", c.pp, ", ", c.tp, ") are outside the grid");
  return (c.dp * s.pp + c.pp) * s.tp + c.tp;
  // END TODO
}

Grid make_grid(Communicator& world, const GridShape& s) {
  // TODO(lesson 12, task 1): the grid and its three sub-communicators
  check_shape(s);
  SGPT_CHECK(s.size() == world.size(), "grid ", s.str(), " needs dp*pp*tp = ", s.size(), " ranks, but the world has ",
             world.size());
  Grid g;
  g.shape = s;
  g.coord = grid_coords(s, world.rank());
  const GridCoord& c = g.coord;
  // Color: the coordinates the group shares, as one number; key: the coordinate along the group.
  g.dp = world.split(c.pp * s.tp + c.tp, c.dp, "dp");
  g.pp = world.split(c.dp * s.tp + c.tp, c.pp, "pp");
  g.tp = world.split(c.dp * s.pp + c.pp, c.tp, "tp");
  return g;
  // END TODO
}

}  // namespace sgpt::lesson12
