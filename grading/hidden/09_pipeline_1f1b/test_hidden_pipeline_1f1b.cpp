// Lesson 09 hidden tests: larger schedules (p up to 8, m up to 24), five stages with sequences
// shorter than the context, fewer micro-batches than stages on real ranks, and an odd micro-batch
// shape's message sizes.

#include <gtest/gtest.h>

#include "tests/test_util.hpp"

using namespace lesson09_test;

TEST(HiddenSchedule, LargerShapesAndInFlight) {
  for (int p : {5, 7, 8})
    for (int m : {1, 3, 7, 8, 9, 24})
      for (int r = 0; r < p; ++r) {
        const std::vector<PipeOp> ops = one_f_one_b_schedule(p, r, m);
        EXPECT_EQ(one_f_one_b_problem(ops, p, r, m), "") << "p=" << p << " rank " << r << " m=" << m;
        EXPECT_EQ(max_in_flight(ops), std::min(p - r, m)) << "p=" << p << " rank " << r << " m=" << m;
      }
  EXPECT_EQ(pipe_ops_string(one_f_one_b_schedule(3, 0, 5)), "F0 F1 F2 B0 F3 B1 F4 B2 B3 B4");
}

TEST(HiddenStep, FiveStagesShortSequences) {
  if (!runs_thread_groups()) return;
  const GPTConfig cfg = config(5);
  for (int m : {3, 5, 15}) expect_equivalent(cfg, 5, m, 15, 3, false, 555, 6);
}

TEST(HiddenStep, OrderAndMemoryWithFewerMicroBatchesThanStages) {
  if (!runs_thread_groups()) return;
  const GPTConfig cfg = config(5);
  const int p = 5, m = 3;
  TraceCapture trace;
  one_step(cfg, p, m, 2, 21, [&](Communicator& comm, PipelineStage& stage) {
    EXPECT_EQ(stage.peak_in_flight(), std::min(p - comm.rank(), m)) << "rank " << comm.rank();
  });
  for (int r = 0; r < p; ++r)
    EXPECT_EQ(one_f_one_b_problem(pipe_ops_from_trace(trace.events(), r), p, r, m), "") << "rank " << r;
}

TEST(HiddenStep, MessageBytesOfAnOddMicroBatchShape) {
  if (!runs_thread_groups()) return;
  const GPTConfig cfg = config(3);
  const int p = 3, m = 4;
  const int64_t b = 3, T = 5, msg = b * T * cfg.n_embd * 8;
  const Tensor x = tokens(cfg, m * b, 14, T), y = targets(cfg, m * b, 14, T);
  on_threads(p, [&](Communicator& comm) {
    PipelineStage stage(cfg, lesson08::stage_spec(cfg, p, comm.rank()), 4, DType::F64);
    AdamW opt(stage.layout(), adamw(), DType::F64, Device::CPU, stage.spec().param_begin, stage.spec().num_params());
    comm.reset_stats();
    one_f_one_b_train_step(comm, stage, opt, x, y, m, 1e-3);
    const int r = comm.rank(), links = (r > 0) + (r < p - 1);
    EXPECT_EQ(comm.stats()[OpKind::Send].bytes, links * m * msg) << "rank " << r;
    EXPECT_EQ(comm.stats()[OpKind::Recv].bytes, links * m * msg) << "rank " << r;
  });
}
