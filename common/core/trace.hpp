#pragma once
/// @file trace.hpp
/// @brief Timed events per rank, written as Chrome trace-event JSON (opens in Perfetto).
///
/// A TraceRecorder holds a list of complete events (name, category, start, duration, rank, track,
/// optional args). Programs record with TraceScope (RAII) or TraceRecorder::add(); the
/// communication layer records its own calls (category Comm). Tests read the events back with
/// TraceRecorder::events() to check schedules (for example the per-rank order of forward and
/// backward micro-batches in 1F1B), or parse a written file with trace_from_json().
///
/// Times are microseconds since the recorder's origin (its construction or reset_origin()); to line
/// up ranks, call reset_origin() on every rank right after a barrier (align_trace_clocks() in
/// comm/trace_gather.hpp does both). Recording is off until set_enabled(true) (or SGPT_TRACE=1 in
/// the environment), so long runs pay nothing.
///
/// Output format: `{"traceEvents": [...], "displayTimeUnit": "ms"}` where each event is
/// `{"name", "cat", "ph": "X", "ts", "dur", "pid": rank, "tid": track, "args": {...}}`, plus
/// metadata events naming each pid "rank r". Perfetto and chrome://tracing open it as is.

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace sgpt {


/// What a span of time was spent on.
enum class TraceCategory { Compute, Comm, Idle, Other };
/// "compute", "comm", "idle", "other".
const char* trace_category_name(TraceCategory c);
/// Inverse of trace_category_name (unknown names give Other).
TraceCategory parse_trace_category(const std::string& name);

/// One complete event ("ph": "X").
struct TraceEvent {
  std::string name;                           ///< e.g. "forward", "all_reduce"
  TraceCategory category = TraceCategory::Other;  ///< becomes the Chrome "cat"
  double start_us = 0;                        ///< microseconds since the recorder's origin
  double duration_us = 0;                     ///< microseconds
  int rank = 0;                               ///< becomes the Chrome "pid"
  int track = 0;                              ///< becomes the Chrome "tid" (0 main, 1 async comm)
  std::map<std::string, std::string> args;    ///< free-form details (micro-batch, bytes, group...)
  /// Integer value of args[key], or `fallback` when absent.
  int64_t arg_int(const std::string& key, int64_t fallback = -1) const;
};

/// A thread-safe list of events for one rank.
class TraceRecorder {
 public:
  /// An empty recorder for `rank`, with its origin at construction; enabled only when
  /// SGPT_TRACE is set (and not "0").
  explicit TraceRecorder(int rank = 0);

  /// The process-wide recorder (one per rank when ranks are processes).
  static TraceRecorder& global();
  /// The recorder of the calling thread: the one installed by ScopedTraceRecorder, else global().
  static TraceRecorder& current();

  /// Turns recording on or off (while off, record() and add() do nothing).
  void set_enabled(bool on);
  /// Whether events are being recorded.
  bool enabled() const;
  /// Rank stamped on events recorded from now on (init_distributed sets it).
  void set_rank(int rank);
  /// Rank stamped on recorded events.
  int rank() const;

  /// Microseconds since the origin.
  double now_us() const;
  /// Makes "now" time zero.
  void reset_origin();

  /// Appends an event if enabled (its rank is overwritten with rank()).
  void record(TraceEvent e);
  /// Appends a complete event if enabled.
  void add(const std::string& name, TraceCategory category, double start_us, double duration_us,
           std::map<std::string, std::string> args = {}, int track = 0);

  /// A copy of the events recorded so far, in recording order.
  std::vector<TraceEvent> events() const;
  /// Events whose name equals `name`, in recording order.
  std::vector<TraceEvent> events_named(const std::string& name) const;
  /// Drops every event.
  void clear();
  /// Appends events as they are (their ranks kept), e.g. those of other ranks' recorders.
  void append(const std::vector<TraceEvent>& events);
  /// Uses the same time zero as `other`.
  void copy_origin(const TraceRecorder& other);

  /// This recorder's events as Chrome trace JSON.
  std::string to_json() const;
  /// Writes to_json() to `path` (throws sgpt::Error if the file cannot be written).
  void write_json(const std::string& path) const;

 private:
  mutable std::mutex mu_;
  std::vector<TraceEvent> events_;
  bool enabled_;
  int rank_;
  int64_t origin_ns_;
};

/// Installs a recorder as the calling thread's current() for the lifetime of this object (the
/// threads backend gives each rank thread its own this way).
class ScopedTraceRecorder {
 public:
  /// Makes `r` (not owned; it must outlive this object) the current() recorder of this thread;
  /// the destructor restores the previous one.
  explicit ScopedTraceRecorder(TraceRecorder& r);
  ~ScopedTraceRecorder();
  ScopedTraceRecorder(const ScopedTraceRecorder&) = delete;
  ScopedTraceRecorder& operator=(const ScopedTraceRecorder&) = delete;

 private:
  TraceRecorder* previous_;
};

/// Records the time from construction to destruction as one event on TraceRecorder::current().
///
///     { TraceScope s("forward", TraceCategory::Compute, {{"microbatch", "3"}}); stage.forward(); }
class TraceScope {
 public:
  /// Starts the span `name` now on TraceRecorder::current(); the destructor adds the event (on
  /// track 0) if that recorder is enabled.
  explicit TraceScope(std::string name, TraceCategory category = TraceCategory::Compute,
                      std::map<std::string, std::string> args = {});
  ~TraceScope();
  TraceScope(const TraceScope&) = delete;
  TraceScope& operator=(const TraceScope&) = delete;

 private:
  TraceRecorder& recorder_;
  std::string name_;
  TraceCategory category_;
  std::map<std::string, std::string> args_;
  double start_us_;
};

/// Events (of any ranks) as Chrome trace JSON.
std::string trace_to_json(const std::vector<TraceEvent>& events);
/// Parses Chrome trace JSON (object with "traceEvents", or a bare array) back into complete
/// events; metadata and other phases are skipped.
std::vector<TraceEvent> trace_from_json(const std::string& json);
/// Reads and concatenates trace files (e.g. one per rank) into one file.
void merge_trace_files(const std::vector<std::string>& inputs, const std::string& output);

}  // namespace sgpt
