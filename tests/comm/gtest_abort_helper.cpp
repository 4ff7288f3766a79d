// A GoogleTest case in which rank 1 fails (throws) and leaves the other ranks inside a collective.
// The listener of sgpt_gtest_mpi_main must abort the job after SGPT_TEST_ABORT_TIMEOUT seconds.

#include <gtest/gtest.h>

#include "comm/testing/mpi_test.hpp"

TEST(AbortHelper, RankOneThrowsOutOfACollective) {
  sgpt::Communicator& w = sgpt::testing::world();
  sgpt::Tensor t = sgpt::Tensor::zeros({8});
  if (w.rank() == 1) throw sgpt::Error("deliberate failure on rank 1");
  w.all_reduce(t);
}
