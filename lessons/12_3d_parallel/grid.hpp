#pragma once
/// @file grid.hpp
/// @brief Lesson 12, task 1: the process grid of 3D parallelism.
///
/// A world of N = D·P·T ranks is a grid of D data-parallel replicas, each a pipeline of P stages,
/// each stage a tensor-parallel group of T ranks. Rank ↔ coordinates, tensor coordinate fastest:
///
///     rank = (dp · P + pp) · T + tp        0 <= dp < D, 0 <= pp < P, 0 <= tp < T
///
/// so the T ranks of one tensor-parallel group are adjacent (on one node: they talk twice per
/// block, forward and backward), the P stages of a pipeline are T apart, and the D replicas of a
/// stage are P·T apart (they talk once per step).
///
/// Given: Communicator::split(color, key, name) (comm/communicator.hpp).
/// You write grid_coords, grid_rank and make_grid in grid.cpp.

#include <memory>
#include <string>

#include "comm/communicator.hpp"

namespace sgpt::lesson12 {

/// The shape of the grid: D replicas × P stages × T tensor ranks.
struct GridShape {
  int dp = 1;  ///< D, data-parallel replicas
  int pp = 1;  ///< P, pipeline stages
  int tp = 1;  ///< T, tensor-parallel ranks per stage
  /// D·P·T, the ranks the grid needs.
  int size() const { return dp * pp * tp; }
  /// "2x2x2" (dp x pp x tp).
  std::string str() const { return std::to_string(dp) + "x" + std::to_string(pp) + "x" + std::to_string(tp); }
};

/// One rank's place in the grid.
struct GridCoord {
  int dp = 0;  ///< which replica
  int pp = 0;  ///< which pipeline stage
  int tp = 0;  ///< which tensor-parallel rank of the stage
  /// Equal when every field is.
  bool operator==(const GridCoord&) const = default;
};

/// A rank's grid: its coordinates and the three groups it belongs to.
struct Grid {
  GridShape shape;                    ///< the grid's shape
  GridCoord coord;                    ///< this rank's coordinates
  std::shared_ptr<Communicator> dp;   ///< the D ranks with this rank's (pp, tp): replicas of the same shard
  std::shared_ptr<Communicator> pp;   ///< the P ranks with this rank's (dp, tp): one pipeline, in stage order
  std::shared_ptr<Communicator> tp;   ///< the T ranks with this rank's (dp, pp): one stage, in tp order
};

/// Task 1a: the coordinates of `rank` in a grid of shape `s` (formula of the file comment).
/// Throws sgpt::Error naming the numbers when a dimension is < 1 or rank is outside [0, s.size()).
GridCoord grid_coords(const GridShape& s, int rank);

/// Task 1b: the rank at coordinates `c` (the inverse of grid_coords). Throws sgpt::Error when a
/// coordinate is outside its dimension.
int grid_rank(const GridShape& s, const GridCoord& c);

/// Task 1c: this rank's Grid over `world` (collective: every rank of `world` calls it). Each
/// sub-communicator comes from one world.split, with ranks ordered by their coordinate along the
/// group's dimension (so dp->rank() == coord.dp, pp->rank() == coord.pp, tp->rank() ==
/// coord.tp), named "dp", "pp" and "tp". Throws sgpt::Error naming the numbers, on every rank and
/// before any communication, when D·P·T is not world.size() or a dimension is < 1.
Grid make_grid(Communicator& world, const GridShape& s);

}  // namespace sgpt::lesson12
