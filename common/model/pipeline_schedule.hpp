#pragma once
/// @file pipeline_schedule.hpp
/// @brief Pipeline schedules as data: per-rank lists of forward/backward micro-batch operations,
/// read back from a trace, simulated with unit costs, and drawn as a per-rank timeline.
///
/// A schedule gives each of p ranks an ordered list of operations F(i) (forward of micro-batch
/// i on that rank's stage) and B(i) (its backward). simulate_pipeline() runs such lists on an
/// ideal machine: each rank executes its list in order, one operation at a time; F(i) on rank r
/// starts after F(i) on rank r - 1 ended (it needs that output), B(i) on rank r after B(i) on
/// rank r + 1 (it needs that gradient) and after its own F(i). A forward costs t_forward, a
/// backward t_backward; communication is free. The result is every operation's start and end,
/// the makespan, and the bubble: the idle fraction of the p x makespan rank-time.
///
/// For GPipe and 1F1B with m micro-batches on p stages the bubble is (p - 1) / (m + p - 1) for any
/// t_forward, t_backward (lessons 08 and 09 prove it with these functions).

#include <string>
#include <vector>

#include "core/trace.hpp"

namespace sgpt {

/// One operation of a pipeline schedule.
struct PipeOp {
  /// Forward or backward.
  enum Kind {
    Forward,  ///< F(i): the forward of a micro-batch on this stage
    Backward  ///< B(i): its backward
  };
  Kind kind = Forward;  ///< which of the two
  int microbatch = 0;  ///< which micro-batch
  /// Equal when kind and micro-batch are.
  bool operator==(const PipeOp&) const = default;
};

/// "F0 F1 B1 B0": an operation list as text (F for forward, B for backward, then the micro-batch).
std::string pipe_ops_string(const std::vector<PipeOp>& ops);
/// The inverse of pipe_ops_string (throws sgpt::Error on a malformed token).
std::vector<PipeOp> parse_pipe_ops(const std::string& text);

/// The operations rank `rank` ran, in order, from trace events: the "forward" and "backward"
/// events of that rank (PipelineStage records them, with args "microbatch").
std::vector<PipeOp> pipe_ops_from_trace(const std::vector<TraceEvent>& events, int rank);

/// One simulated operation on one rank.
struct PipeSpan {
  PipeOp op;          ///< what ran
  double start = 0;   ///< when it started
  double end = 0;     ///< when it ended
};

/// What simulate_pipeline() computes.
struct PipelineTimeline {
  std::vector<std::vector<PipeSpan>> ranks;  ///< per rank, its operations in order
  double makespan = 0;                       ///< end of the last operation
  std::vector<double> busy;                  ///< per rank, the time spent computing
  /// Idle fraction of the p x makespan rank-time: 1 - sum(busy) / (p * makespan).
  double bubble() const;
};

/// Runs per-rank operation lists on the ideal machine described in the file comment. Every rank
/// must list F(i) and B(i) exactly once for each micro-batch i in [0, m), the same m on every
/// rank; otherwise, or when the lists can never finish (a rank waits for an operation that waits
/// for it: the schedule deadlocks), throws sgpt::Error naming the ranks and operations.
PipelineTimeline simulate_pipeline(const std::vector<std::vector<PipeOp>>& ops, double t_forward = 1.0,
                                   double t_backward = 2.0);

/// A timeline as an SVG picture: one row per rank, forwards and backwards in two colours with
/// their micro-batch number, idle time blank. Spans are in any time unit (unit-cost simulations,
/// or measured microseconds from a trace with timeline_from_trace()).
std::string pipeline_timeline_svg(const PipelineTimeline& t, const std::string& title, const std::string& time_unit);

/// The measured timeline of ranks [0, p) from trace events: each rank's "forward"/"backward"
/// events as spans (microseconds, shifted so the earliest starts at 0); busy is their total time.
PipelineTimeline timeline_from_trace(const std::vector<TraceEvent>& events, int p);

}  // namespace sgpt
