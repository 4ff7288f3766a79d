// Lesson 11 hidden tests: units smaller than the number of ranks (empty pieces), and five steps of
// every stage with three layers, three micro-batches and another seed, in f64 against data
// parallelism and in mixed precision against lesson 05's recipe.

#include <gtest/gtest.h>

#include "tests/test_util.hpp"

using namespace sgpt;
using namespace sgpt::lesson11;
using namespace lesson11_test;

TEST(HiddenZero, TinyUnitsWithEmptyPieces) {
  const std::vector<ShardRange> units{{0, 2}, {2, 1}, {3, 0}, {3, 5}, {8, 13}};
  for (int d = 1; d <= 7; ++d) {
    for (int r = 0; r < d; ++r) {
      const std::vector<ShardRange> pieces = owned_pieces(units, d, r);
      ASSERT_EQ(pieces.size(), units.size());
      for (size_t u = 0; u < units.size(); ++u) {
        const ShardRange s = shard_range(units[u].count, d, r);
        EXPECT_EQ(pieces[u], (ShardRange{units[u].begin + s.begin, s.count})) << "d=" << d << " r=" << r << " unit " << u;
      }
    }
  }
}

TEST(HiddenZero, FiveStepsThreeMicroBatchesOtherSeed) {
  on_groups([](Communicator& c) {
    for (int stage = 1; stage <= 3; ++stage) expect_matches_dp(c, stage, 5, 24, 3, 77, tiny_config(3), where(c) + " hidden");
  });
}

TEST(HiddenZero, MixedFiveStepsThreeLayersOtherSeed) {
  on_groups([](Communicator& c) {
    const int d = c.size();
    for (int stage = 1; stage <= 3; ++stage) {
      const std::string at = where(c) + " hidden mixed stage " + std::to_string(stage);
      const MixedDiff w = mixed_vs_one_device(c, stage, 5, 24, 3, 55, tiny_config(3), at);
      const int64_t k_run = (24 / d) % 3 == 0 ? 3 : 1;
      expect_mixed_close(w, d == 1 && (stage == 1 || k_run == 1), d, 5, at);
    }
  });
}
