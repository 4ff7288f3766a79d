#pragma once
// The collective test suite, written once over a Communicator& and run by every backend:
// test_comm_mpi.cpp calls each check on the MPI world (1-4 processes), test_comm_threads.cpp on
// run_threads groups of 1-4 threads. Values are small integers (also in f32), so every sum is
// exact whatever order a backend adds in; check_bf16 is the exception (bf16 sums round, so it
// compares with an f64 reference within a stated number of bf16 roundings).

#include "comm/communicator.hpp"

namespace sgpt::commtest {

void check_barrier(Communicator& c);
void check_broadcast(Communicator& c);
void check_all_reduce(Communicator& c);
void check_reduce_scatter(Communicator& c);
void check_all_gather(Communicator& c);
void check_send_recv(Communicator& c);
void check_split(Communicator& c);
void check_async(Communicator& c);
void check_accounting(Communicator& c);
void check_mismatch(Communicator& c);
void check_trace(Communicator& c);
void check_bf16(Communicator& c);

/// Every check above, in order (used as one list by both test binaries).
#define SGPT_COMM_SUITE(X)                  \
  X(Barrier, check_barrier)                 \
  X(Broadcast, check_broadcast)             \
  X(AllReduce, check_all_reduce)            \
  X(ReduceScatter, check_reduce_scatter)    \
  X(AllGather, check_all_gather)            \
  X(SendRecv, check_send_recv)              \
  X(Split, check_split)                     \
  X(Async, check_async)                     \
  X(Accounting, check_accounting)           \
  X(Mismatch, check_mismatch)               \
  X(Trace, check_trace)                     \
  X(Bf16, check_bf16)

}  // namespace sgpt::commtest
