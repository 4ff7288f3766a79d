#pragma once
// Lesson 08's test helpers: the shared pipeline helpers (common/parallel/pipeline_testing.hpp) with
// lesson 08's stage split and GPipe step plugged in.

#include "parallel/pipeline_testing.hpp"
#include "pipeline_gpipe.hpp"

namespace lesson08_test {

using namespace sgpt;
using namespace sgpt::lesson08;
using namespace sgpt::testing;

/// The test model: L blocks, C = 8, T = 8, V = 19 padded to 24, untied.
inline GPTConfig config(int L = 5) { return pipeline_config(L); }
/// Token and target batches of B rows of T tokens (T = 0: the context).
inline Tensor tokens(const GPTConfig& c, int64_t B, uint64_t seed, int64_t T = 0) {
  return pipeline_tokens(c, B, seed, T);
}
inline Tensor targets(const GPTConfig& c, int64_t B, uint64_t seed, int64_t T = 0) {
  return pipeline_targets(c, B, seed, T);
}

// GPipe (your stage_spec and gpipe_train_step) against the single device; see
// expect_pipeline_equivalent for the tolerances.
inline void expect_equivalent(const GPTConfig& cfg, int p, int m, int64_t B, int steps, bool world = false,
                              uint64_t seed0 = 100, int64_t T = 0) {
  expect_pipeline_equivalent(stage_spec, gpipe_train_step, cfg, p, m, B, steps, world, seed0, T);
}

}  // namespace lesson08_test
