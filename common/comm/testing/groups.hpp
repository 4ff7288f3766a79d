#pragma once
/// @file groups.hpp
/// @brief The rank groups a multi-rank lesson test runs its checks on, and cross-rank checks.
///
/// A lesson's multi-rank test binary is registered by ctest at several rank counts (`.np1` ...
/// `.np4`). With one process, on_groups() runs the check on in-process groups (threads backend) of
/// each size asked for; under `mpirun -np N` (N > 1), on the MPI world of N processes. Together the
/// runs cover both backends at every rank count, without N processes each running thread groups.

#include <gtest/gtest.h>
#include <omp.h>

#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "comm/communicator.hpp"
#include "comm/testing/mpi_test.hpp"

namespace sgpt::testing {

/// Runs `fn` on every group this process checks: thread groups of each size in `sizes` (one OpenMP
/// thread per rank: the ranks already share the cores) when the world has one rank, else the world.
inline void on_groups(const std::vector<int>& sizes, const std::function<void(Communicator&)>& fn) {
  Communicator& w = world();
  if (w.size() > 1) {
    SCOPED_TRACE("MPI world of " + std::to_string(w.size()) + " ranks");
    w.barrier();
    fn(w);
    return;
  }
  for (int p : sizes) {
    SCOPED_TRACE("threads group of " + std::to_string(p) + " ranks");
    run_threads(p, [&](Communicator& c) {
      omp_set_num_threads(1);
      fn(c);
    });
  }
}

/// "[p=4 rank 2]", for failure messages.
inline std::string where(const Communicator& c) {
  return "[p=" + std::to_string(c.size()) + " rank " + std::to_string(c.rank()) + "]";
}

/// True on every rank when `t` (a CPU tensor) holds the same bytes on every rank of `comm`: rank 0's
/// copy is broadcast and compared. Both calls count in comm's stats: call it outside a counted window.
inline bool identical_on_all_ranks(Communicator& comm, const Tensor& t) {
  Tensor root = Tensor::empty(t.shape(), t.dtype());
  root.copy_from(t);
  comm.broadcast(root, 0);
  const bool same = root.nbytes() == t.nbytes() && std::memcmp(root.raw(), t.raw(), t.nbytes()) == 0;
  Tensor flag = Tensor::from(std::vector<int32_t>{same ? 1 : 0}, {1});
  comm.all_reduce(flag);  // every rank learns whether every rank matched
  return flag.data<int32_t>()[0] == comm.size();
}

}  // namespace sgpt::testing
