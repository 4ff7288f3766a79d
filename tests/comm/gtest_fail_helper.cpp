// A GoogleTest case that fails on rank 1 only, without leaving anybody in a collective. The
// listener of sgpt_gtest_mpi_main must make it fail on every rank, so rank 0 (the only one that
// prints) reports it. Registered with a PASS_REGULAR_EXPRESSION on rank 0's summary line.

#include <gtest/gtest.h>

#include "comm/testing/mpi_test.hpp"

TEST(FailHelper, FailsOnRankOneOnly) {
  sgpt::Communicator& w = sgpt::testing::world();
  EXPECT_NE(w.rank(), 1) << "deliberate failure on rank 1";
  w.barrier();
}

TEST(FailHelper, PassesEverywhere) { sgpt::testing::world().barrier(); }
