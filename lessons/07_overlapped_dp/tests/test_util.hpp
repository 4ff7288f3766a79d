#pragma once
// Shared by the public and hidden tests of lesson 07: the groups a check runs on (as in lesson 06:
// threads groups of 1-4 ranks under -np 1, the MPI world under -np 2..4), the bucket rule written
// out, the naive data-parallel reference (one library all-reduce after the whole backward — lesson
// 06's result, written here with the library so these tests need only lesson 07's files), the
// one-rank reference, and readers of the recorded trace.

#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "comm/testing/dp_testing.hpp"
#include "comm/testing/groups.hpp"
#include "comm/testing/mpi_test.hpp"
#include "core/testing.hpp"
#include "core/trace.hpp"
#include "overlapped_dp.hpp"

namespace lesson07_test {

using namespace sgpt;
using sgpt::testing::identical_on_all_ranks;
using sgpt::testing::where;

// The groups every check runs on (comm/testing/groups.hpp): threads groups of 1-4 ranks under
// -np 1, the MPI world under -np 2..4.
inline void on_groups(const std::function<void(Communicator&)>& fn) { sgpt::testing::on_groups({1, 2, 3, 4}, fn); }


// The README's rule, written out independently: (first element, elements) of each bucket, in
// backward order.
inline std::vector<std::pair<int64_t, int64_t>> expected_buckets(const ParameterLayout& layout, int64_t cap,
                                                                 int64_t es) {
  std::vector<std::pair<int64_t, int64_t>> out;
  int64_t end = layout.numel(), bytes = 0;
  const auto& ps = layout.params();
  for (size_t j = ps.size(); j-- > 0;) {
    const int64_t pb = ps[j].numel * es;
    if (bytes > 0 && bytes + pb > cap) {
      out.push_back({end - bytes / es, bytes / es});
      end -= bytes / es;
      bytes = 0;
    }
    bytes += pb;
  }
  if (bytes > 0) out.push_back({end - bytes / es, bytes / es});
  return out;
}

using sgpt::testing::rows_of;

inline std::pair<Tensor, Tensor> global_batch(int64_t gbs, int64_t T, int V, uint64_t seed) {
  return {sgpt::testing::random_tokens(gbs, T, V, seed, "lesson07-x"),
          sgpt::testing::random_tokens(gbs, T, V, seed, "lesson07-y")};
}

using sgpt::testing::max_diff;

inline void dirty(Tensor& t, double value) { sgpt::testing::fill_constant(t, value); }

inline bool bit_equal(const Tensor& a, const Tensor& b) {
  return a.nbytes() == b.nbytes() && std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
}

using sgpt::testing::data_parallel_step;

// The recorded events of one step, read back for the schedule checks.
struct StepTrace {
  std::vector<TraceEvent> reduces;  // "all_reduce_async" events (issue .. completion seen), by issue time
  std::vector<TraceEvent> stages;   // backward_head / backward_block / backward_embed, in time order
  std::vector<TraceEvent> steps;    // optimizer_step events
};
inline StepTrace read_trace(const std::vector<TraceEvent>& ev) {
  StepTrace t;
  for (const TraceEvent& e : ev) {
    if (e.name == "all_reduce_async") t.reduces.push_back(e);
    if (e.name == "backward_head" || e.name == "backward_block" || e.name == "backward_embed") t.stages.push_back(e);
    if (e.name == "optimizer_step") t.steps.push_back(e);
  }
  auto by_start = [](const TraceEvent& a, const TraceEvent& b) { return a.start_us < b.start_us; };
  std::stable_sort(t.reduces.begin(), t.reduces.end(), by_start);
  std::stable_sort(t.stages.begin(), t.stages.end(), by_start);
  return t;
}

// first_final after a backward stage, as GPT::backward reports it (see GPT::GradsReadyHook).
inline int64_t stage_frontier(const TraceEvent& e, const ParameterLayout& layout, int n_layer) {
  if (e.name == "backward_head") return layout.layer_range(n_layer - 1).second;
  if (e.name == "backward_block") return layout.layer_range(int(e.arg_int("layer"))).first;
  return 0;  // backward_embed
}

// Exact equality is expected where the backend sums every element in the same order.
inline bool same_order(const Communicator& c) { return c.backend() == Backend::Threads || c.size() <= 2; }

using sgpt::testing::expect_clear_error;

// Checks one step's trace against the buckets: count, backward order, issued right after the
// stage that finished the bucket (not before it ended, not after the next stage began), in the last
// of k micro-batches, and completed before the optimizer step started.
inline void expect_overlapped_schedule(const std::vector<TraceEvent>& events, const std::vector<lesson07::Bucket>& buckets,
                                const GPT& m, int64_t k, int64_t es, const std::string& at) {
  const StepTrace t = read_trace(events);
  ASSERT_EQ(t.reduces.size(), buckets.size()) << at << " async all-reduces in the step (one per bucket; "
                                              << "a missing one was never issued or never waited for)";
  const int n_layer = m.config().n_layer;
  const size_t per_backward = size_t(n_layer) + 2;
  ASSERT_EQ(t.stages.size(), per_backward * size_t(k)) << at << " backward stages recorded";
  const size_t last = per_backward * size_t(k - 1);  // the last micro-batch's first stage
  for (size_t i = 0; i < buckets.size(); ++i) {
    const TraceEvent& e = t.reduces[i];
    const std::string b = at + " bucket " + std::to_string(i);
    EXPECT_EQ(e.arg_int("bytes"), buckets[i].count * es) << b << " issued out of backward order";
    size_t ready = last;  // the stage after which the bucket's gradients are final
    while (ready < t.stages.size() && stage_frontier(t.stages[ready], m.layout(), n_layer) > buckets[i].begin) ++ready;
    ASSERT_LT(ready, t.stages.size()) << b;
    const TraceEvent& s = t.stages[ready];
    EXPECT_GE(e.start_us, s.start_us + s.duration_us)
        << b << " was issued before its gradients were final (" << s.name << " " << s.arg_int("layer") << " ended at "
        << s.start_us + s.duration_us << " us, the all-reduce started at " << e.start_us << " us)";
    if (ready + 1 < t.stages.size()) {
      EXPECT_LE(e.start_us, t.stages[ready + 1].start_us)
          << b << " was issued only after backward went on (" << t.stages[ready + 1].name << "): no overlap";
    }
    ASSERT_FALSE(t.steps.empty()) << at << " no optimizer step recorded";
    EXPECT_LE(e.start_us + e.duration_us, t.steps.back().start_us)
        << b << " was still in flight when the optimizer step started: wait for every bucket first";
  }
}

}  // namespace lesson07_test
