#pragma once
// Lesson 09's test helpers: the shared pipeline helpers (common/parallel/pipeline_testing.hpp) with
// the library's stage split and your 1F1B step plugged in.

#include <string>
#include <vector>

#include "parallel/pipeline_testing.hpp"
#include "pipeline_1f1b.hpp"

namespace lesson09_test {

using namespace sgpt;
using namespace sgpt::lesson09;
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

// 1F1B (your one_f_one_b_train_step) against the single device; see expect_pipeline_equivalent
// for the tolerances.
inline void expect_equivalent(const GPTConfig& cfg, int p, int m, int64_t B, int steps, bool world = false,
                              uint64_t seed0 = 100, int64_t T = 0) {
  expect_pipeline_equivalent(lesson08::stage_spec, one_f_one_b_train_step, cfg, p, m, B, steps, world, seed0, T);
}

// "" when `ops` has the shape of 1F1B on stage r of p with m micro-batches, else the first problem:
// every F(i) and B(i) once, forwards and backwards each in micro-batch order, min(p - r, m)
// forwards before the first backward, then F and B alternating while forwards remain.
inline std::string one_f_one_b_problem(const std::vector<PipeOp>& ops, int p, int r, int m) {
  if (ops.size() != size_t(2 * m)) return "has " + std::to_string(ops.size()) + " operations, not 2m";
  int nf = 0, nb = 0;
  size_t first_b = ops.size();
  for (size_t k = 0; k < ops.size(); ++k) {
    const PipeOp& o = ops[k];
    if (o.kind == PipeOp::Forward) {
      if (o.microbatch != nf++) return "forwards out of order at position " + std::to_string(k);
    } else {
      if (o.microbatch != nb++) return "backwards out of order at position " + std::to_string(k);
      if (nb > nf) return "B" + std::to_string(o.microbatch) + " before its forward";
      first_b = std::min(first_b, k);
    }
  }
  const int warm = std::min(p - r, m);
  if (first_b != size_t(warm)) return std::to_string(first_b) + " forwards before the first backward, not " +
                                      std::to_string(warm);
  for (size_t k = first_b; k + 1 < ops.size() && ops[k].microbatch + warm < m; k += 2)
    if (ops[k].kind != PipeOp::Backward || ops[k + 1].kind != PipeOp::Forward)
      return "not alternating one backward and one forward at position " + std::to_string(k);
  return "";
}

// Largest number of micro-batches between their F and their B along an order.
inline int max_in_flight(const std::vector<PipeOp>& ops) {
  int now = 0, most = 0;
  for (const PipeOp& o : ops) {
    now += o.kind == PipeOp::Forward ? 1 : -1;
    most = std::max(most, now);
  }
  return most;
}

// Runs one 1F1B step of p stages and m micro-batches on p thread ranks; `check` sees each rank's
// stage and communicator afterwards.
inline void one_step(const GPTConfig& cfg, int p, int m, int64_t b, uint64_t seed,
                     const std::function<void(Communicator&, PipelineStage&)>& check) {
  const Tensor x = tokens(cfg, m * b, seed), y = targets(cfg, m * b, seed);
  on_threads(p, [&](Communicator& comm) {
    PipelineStage stage(cfg, lesson08::stage_spec(cfg, p, comm.rank()), seed, DType::F64);
    AdamW opt(stage.layout(), adamw(), DType::F64, Device::CPU, stage.spec().param_begin, stage.spec().num_params());
    comm.reset_stats();
    one_f_one_b_train_step(comm, stage, opt, x, y, m, 1e-3);
    check(comm, stage);
  });
}

}  // namespace lesson09_test
