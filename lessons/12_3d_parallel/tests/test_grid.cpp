// Lesson 12, task 1: the grid's coordinates and its three sub-communicators.

#include "test_util.hpp"

using namespace lesson12_test;

namespace {

// The world ranks of a group's members, in group-rank order (an all-reduce of one-hot rows).
std::vector<int> members(Communicator& group, int world_rank, int world_size) {
  std::vector<double> v(size_t(group.size()) * world_size, 0.0);
  v[size_t(group.rank()) * world_size + world_rank] = 1.0;
  Tensor t = Tensor::from(v, {int64_t(v.size())});
  group.all_reduce(t);
  std::vector<double> w = t.to_vector();
  std::vector<int> out;
  for (int g = 0; g < group.size(); ++g)
    for (int r = 0; r < world_size; ++r)
      if (w[size_t(g) * world_size + r] == 1.0) out.push_back(r);
  return out;
}

}  // namespace

TEST(Grid, CoordinatesPutTensorRanksAdjacent) {
  for (GridShape s : {GridShape{2, 2, 2}, GridShape{1, 2, 4}, GridShape{4, 2, 1}, GridShape{2, 1, 4},
                      GridShape{3, 2, 2}, GridShape{2, 3, 1}}) {
    int rank = 0;
    for (int d = 0; d < s.dp; ++d)  // the tensor coordinate moves fastest, the replica slowest
      for (int p = 0; p < s.pp; ++p)
        for (int t = 0; t < s.tp; ++t, ++rank) {
          const GridCoord want{d, p, t};
          EXPECT_EQ(grid_coords(s, rank), want) << s.str() << " rank " << rank;
          EXPECT_EQ(grid_rank(s, want), rank) << s.str() << " (" << d << "," << p << "," << t << ")";
        }
  }
}

TEST(Grid, SubCommunicatorsHoldTheRightRanks) {
  for (int n : {8, 4}) {
    on_ranks(n, [&](Communicator& world) {
      for (const GridShape& s : grids_of(n)) {
        Grid g = make_grid(world, s);
        const GridCoord c = g.coord;
        const int r = world.rank();
        EXPECT_EQ(c, grid_coords(s, r)) << s.str() << " rank " << r;
        ASSERT_TRUE(g.dp && g.pp && g.tp) << s.str();
        EXPECT_EQ(g.dp->rank(), c.dp) << s.str() << " rank " << r;
        EXPECT_EQ(g.pp->rank(), c.pp) << s.str() << " rank " << r;
        EXPECT_EQ(g.tp->rank(), c.tp) << s.str() << " rank " << r;
        std::vector<int> dp, pp, tp;  // written out from the formula rank = (d*P + p)*T + t
        for (int d = 0; d < s.dp; ++d) dp.push_back((d * s.pp + c.pp) * s.tp + c.tp);
        for (int p = 0; p < s.pp; ++p) pp.push_back((c.dp * s.pp + p) * s.tp + c.tp);
        for (int t = 0; t < s.tp; ++t) tp.push_back((c.dp * s.pp + c.pp) * s.tp + t);
        EXPECT_EQ(members(*g.dp, r, world.size()), dp) << s.str() << " rank " << r << ": the dp group";
        EXPECT_EQ(members(*g.pp, r, world.size()), pp) << s.str() << " rank " << r << ": the pp group";
        EXPECT_EQ(members(*g.tp, r, world.size()), tp) << s.str() << " rank " << r << ": the tp group";
      }
    });
  }
}

TEST(Grid, BadShapesAreClearErrorsOnEveryRank) {
  on_ranks(4, [&](Communicator& world) {
    const std::string e = error_of([&] { make_grid(world, {2, 2, 2}); });
    EXPECT_TRUE(e.find("not implemented") == std::string::npos && e.find('8') != std::string::npos &&
                e.find('4') != std::string::npos)
        << "rank " << world.rank() << ": a 2x2x2 grid on 4 ranks; got: " << e;
    const std::string z = error_of([&] { make_grid(world, {4, 0, 1}); });
    EXPECT_TRUE(z.find("not implemented") == std::string::npos && !z.empty())
        << "rank " << world.rank() << ": a dimension of 0; got: " << z;
  });
  EXPECT_TRUE(error_of([] { grid_coords({2, 2, 2}, 8); }).find('8') != std::string::npos);
}
