// The collective suite on the MPI world (registered at 1, 2, 3 and 4 processes).

#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

#include "comm/testing/mpi_test.hpp"
#include "comm_suite.hpp"

namespace sgpt::commtest {

#define SGPT_MPI_CASE(Name, fn) \
  TEST(CommMpi, Name) { fn(::sgpt::testing::world()); }
SGPT_COMM_SUITE(SGPT_MPI_CASE)
#undef SGPT_MPI_CASE

TEST(CommMpi, WorldMatchesLauncher) {
  Communicator& w = ::sgpt::testing::world();
  LaunchInfo info = detect_launch();
  // The world is MPI unless SGPT_COMM_BACKEND asks for NCCL (the same suite runs on GPUs).
  const char* want = std::getenv("SGPT_COMM_BACKEND");
  EXPECT_EQ(w.backend(), want && std::string(want) == "nccl" ? Backend::NCCL : Backend::MPI);
  EXPECT_EQ(w.name(), "world");
  if (info.launcher == "openmpi") {
    EXPECT_EQ(info.rank, w.rank());
    EXPECT_EQ(info.world, w.size());
  }
  EXPECT_EQ(process_rank(), w.rank());
}

}  // namespace sgpt::commtest
