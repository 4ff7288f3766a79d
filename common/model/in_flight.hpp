#pragma once
/// @file in_flight.hpp
/// @brief The micro-batches a pipeline stage holds between their forward and their backward.
///
/// A pipeline stage (PipelineStage, lesson 12's TPStage) keeps each micro-batch's caches from its
/// forward until its backward frees them; the schedules (GPipe, 1F1B) are judged by how many are
/// alive at once. InFlight is that bookkeeping, and the errors for using it out of order, so the
/// stages share one version of it:
///
///     InFlight<MicroBatch> live("pipeline stage 2");
///     live.check_free(mb);              // forward: not already in flight
///     live.add(mb, std::move(caches));  // forward done: alive, peak updated
///     MicroBatch& a = live.for_backward(mb);  ...  live.erase(mb);  // backward
///
/// and microbatch_span names the trace span of a forward or backward the way the pipeline
/// lessons' schedule tests read it.
#include <algorithm>
#include <map>
#include <string>
#include <utility>

#include "core/check.hpp"
#include "core/trace.hpp"

namespace sgpt {

/// The micro-batches in flight on one stage, by id, with the most that were alive at once.
/// `MicroBatch` is whatever the stage caches per micro-batch.
template <class MicroBatch>
class InFlight {
 public:
  /// `owner` names the stage in errors, e.g. "pipeline stage 2".
  explicit InFlight(std::string owner = "pipeline stage") : owner_(std::move(owner)) {}

  /// Throws sgpt::Error when micro-batch `mb` is already in flight (its backward has not run).
  void check_free(int mb) const {
    SGPT_CHECK(!live_.count(mb), owner_, ": micro-batch ", mb, " is already in flight (its backward has not run)");
  }
  /// Keeps `caches` as micro-batch `mb` (check_free first) and updates the peak.
  void add(int mb, MicroBatch&& caches) {
    check_free(mb);
    live_.emplace(mb, std::move(caches));
    peak_ = std::max(peak_, size());
  }
  /// Micro-batch `mb`; throws sgpt::Error when it is not in flight.
  const MicroBatch& at(int mb) const {
    auto it = live_.find(mb);
    SGPT_CHECK(it != live_.end(), owner_, ": micro-batch ", mb, " is not in flight");
    return it->second;
  }
  /// Micro-batch `mb` for its backward; throws sgpt::Error when it is not in flight (no forward
  /// yet, or its backward already ran).
  MicroBatch& for_backward(int mb) {
    auto it = live_.find(mb);
    SGPT_CHECK(it != live_.end(), owner_, ": backward of micro-batch ", mb,
               ", which is not in flight (run its forward first, and each backward once)");
    return it->second;
  }
  /// Frees micro-batch `mb` (its caches are destroyed).
  void erase(int mb) { live_.erase(mb); }
  /// Frees every micro-batch.
  void clear() { live_.clear(); }
  /// Micro-batches alive now.
  int size() const { return static_cast<int>(live_.size()); }
  /// The most alive at once since construction or reset_peak().
  int peak() const { return peak_; }
  /// Sets the peak to the current count.
  void reset_peak() { peak_ = size(); }

 private:
  std::string owner_;
  std::map<int, MicroBatch> live_;
  int peak_ = 0;
};

/// The trace span of one micro-batch's `name` ("forward" or "backward") on pipeline stage
/// `stage`: a Compute event with the args "microbatch" and "stage", from now to the end of the
/// caller's scope (TraceScope span = microbatch_span(...)).
inline TraceScope microbatch_span(const char* name, int mb, int stage) {
  return TraceScope(name, TraceCategory::Compute, {{"microbatch", std::to_string(mb)}, {"stage", std::to_string(stage)}});
}

}  // namespace sgpt
