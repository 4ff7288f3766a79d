#pragma once
/// @file mpi_test.hpp
/// @brief What a multi-rank GoogleTest binary (linked with sgpt_gtest_mpi_main) can use.
///
/// The main of sgpt_gtest_mpi_main initialises the distributed runtime (the MPI backend, or the
/// one named by SGPT_COMM_BACKEND), makes every rank run every test, lets only rank 0 print the
/// usual GoogleTest output (other ranks print their own failures, prefixed "[rank r]"), and after
/// each test combines the pass/fail state of all ranks: a failure on any rank fails the test on
/// every rank. A rank that failed waits at most SGPT_TEST_ABORT_TIMEOUT seconds (default 20) for
/// the others to finish the test; if they do not (they are stuck in a collective the failed rank
/// left), it calls MPI_Abort, so the job ends instead of hanging.
///
/// Register such a test with sgpt_add_mpi_test (cmake/ScaleGPTMPI.cmake).

#include "comm/communicator.hpp"

namespace sgpt::testing {

/// The world communicator of this test run.
Communicator& world();

}  // namespace sgpt::testing
