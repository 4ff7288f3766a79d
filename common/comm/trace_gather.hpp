#pragma once
/// @file
/// Trace collectives: gathering every rank's trace events and aligning their clocks. They live in
/// comm/ because they talk over a Communicator; the recorder itself (core/trace.hpp) needs none.

#include <vector>

#include "comm/communicator.hpp"
#include "core/trace.hpp"

namespace sgpt {

/// Collective: every rank sends its recorder's events to `root`, which returns all of them (rank
/// 0's first, then rank 1's, ...); other ranks return an empty list. Uses send/recv on `comm`
/// (counted in its Send/Recv stats).
std::vector<TraceEvent> gather_trace(Communicator& comm, const TraceRecorder& recorder, int root = 0);
/// Collective: barrier, then reset_origin() on `recorder`, so all ranks share time zero.
void align_trace_clocks(Communicator& comm, TraceRecorder& recorder);

}  // namespace sgpt
