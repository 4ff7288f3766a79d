// Lesson 09 public tests: the 1F1B order (Narayanan et al. 2021, Figure 4, and its defining shape
// for p <= 6, m <= 10); its bubble on the ideal machine is GPipe's (p-1)/(m+p-1) while at most
// p - r micro-batches are in flight on rank r; the step equals the single-device step for
// p = 1..4 and m < p, m = p, m > p; the real order read from the trace on every rank is the
// schedule; the stages hold min(p - r, m) micro-batches (and, on MPI processes, the memory
// tracker agrees); each boundary carries exactly 2m activation-sized messages; it never relies on
// buffered sends; and bad settings fail on every rank.
//
// Every pipeline runs with synchronous sends (a send completes only once its recv is posted, as
// on NCCL) under a 30 s watchdog. Tolerances as in lesson 08 (f64: loss 1e-12 relative,
// gradients 1e-10 max|g|, parameters after 3 AdamW steps 1e-9).

#include <gtest/gtest.h>

#include "pipeline_1f1b.hpp"
#include "test_util.hpp"

using namespace lesson09_test;

// ---- task 1: the order ------------------------------------------------------------------------------

TEST(Schedule, MatchesNarayananFigure4) {
  // p = 4 stages, m = 8 micro-batches (Narayanan et al. 2021, Figure 4, top).
  const char* want[] = {"F0 F1 F2 F3 B0 F4 B1 F5 B2 F6 B3 F7 B4 B5 B6 B7",
                        "F0 F1 F2 B0 F3 B1 F4 B2 F5 B3 F6 B4 F7 B5 B6 B7",
                        "F0 F1 B0 F2 B1 F3 B2 F4 B3 F5 B4 F6 B5 F7 B6 B7",
                        "F0 B0 F1 B1 F2 B2 F3 B3 F4 B4 F5 B5 F6 B6 F7 B7"};
  for (int r = 0; r < 4; ++r) EXPECT_EQ(pipe_ops_string(one_f_one_b_schedule(4, r, 8)), want[r]) << "rank " << r;
}

TEST(Schedule, FewerMicroBatchesThanStages) {
  // m = 2 < p = 4: the first stages never reach the steady phase.
  const char* want[] = {"F0 F1 B0 B1", "F0 F1 B0 B1", "F0 F1 B0 B1", "F0 B0 F1 B1"};
  for (int r = 0; r < 4; ++r) EXPECT_EQ(pipe_ops_string(one_f_one_b_schedule(4, r, 2)), want[r]) << "rank " << r;
  EXPECT_EQ(pipe_ops_string(one_f_one_b_schedule(1, 0, 3)), "F0 B0 F1 B1 F2 B2");
  EXPECT_FALSE(error_of([] { one_f_one_b_schedule(2, 0, 0); }).empty()) << "m = 0 must be an error";
  EXPECT_FALSE(error_of([] { one_f_one_b_schedule(2, 2, 4); }).empty()) << "stage 2 of 2 must be an error";
}

TEST(Schedule, WarmUpSteadyCoolDownForEveryShape) {
  for (int p = 1; p <= 6; ++p)
    for (int m = 1; m <= 10; ++m)
      for (int r = 0; r < p; ++r)
        EXPECT_EQ(one_f_one_b_problem(one_f_one_b_schedule(p, r, m), p, r, m), "")
            << "p=" << p << " rank " << r << " m=" << m << ": " << pipe_ops_string(one_f_one_b_schedule(p, r, m));
}

TEST(Schedule, AtMostPMinusRInFlightAndGPipesBubble) {
  for (int p : {1, 2, 3, 4, 8})
    for (int m : {1, 2, 3, 4, 8, 16}) {
      std::vector<std::vector<PipeOp>> ops;
      for (int r = 0; r < p; ++r) {
        ops.push_back(one_f_one_b_schedule(p, r, m));
        EXPECT_EQ(max_in_flight(ops.back()), std::min(p - r, m)) << "p=" << p << " rank " << r << " m=" << m;
      }
      for (auto [tf, tb] : {std::pair{1.0, 2.0}, std::pair{1.0, 1.0}}) {
        const PipelineTimeline t = simulate_pipeline(ops, tf, tb);
        EXPECT_EQ(t.makespan, (m + p - 1) * (tf + tb)) << "p=" << p << " m=" << m;
        EXPECT_NEAR(t.bubble(), double(p - 1) / (m + p - 1), 1e-15) << "p=" << p << " m=" << m;
      }
    }
}

// ---- task 2: the step ---------------------------------------------------------------------------------

TEST(Step, EqualsSingleDeviceForEveryStageCount) {
  if (!runs_thread_groups()) return;
  const GPTConfig cfg = config(5);
  const std::vector<std::pair<int, std::vector<int>>> cases = {{1, {1, 3}}, {2, {1, 2, 4}}, {3, {2, 3, 6}}, {4, {2, 4, 6}}};
  for (const auto& [p, ms] : cases)
    for (int m : ms) expect_equivalent(cfg, p, m, 12, 3);
}

TEST(Step, EqualsSingleDeviceOnTheMpiWorld) {
  const int p = world().size();
  expect_equivalent(config(5), p, 2 * p + 1, int64_t(2) * (2 * p + 1), 2, /*world=*/true);
}

TEST(Step, TracedOrderOnEveryRankIsTheSchedule) {
  if (!runs_thread_groups()) return;
  const GPTConfig cfg = config(4);
  for (auto [p, m] : {std::pair{4, 8}, std::pair{3, 2}, std::pair{2, 5}}) {
    TraceCapture trace;
    one_step(cfg, p, m, 1, 8, [](Communicator&, PipelineStage&) {});
    for (int r = 0; r < p; ++r) {
      const std::vector<PipeOp> got = pipe_ops_from_trace(trace.events(), r);
      EXPECT_EQ(one_f_one_b_problem(got, p, r, m), "") << "p=" << p << " m=" << m << " rank " << r
                                                        << ": traced " << pipe_ops_string(got);
      EXPECT_EQ(pipe_ops_string(got), pipe_ops_string(one_f_one_b_schedule(p, r, m)))
          << "p=" << p << " m=" << m << " rank " << r << ": the step does not run its own schedule";
    }
  }
}

TEST(Step, RankRHoldsAtMostPMinusRMicroBatches) {
  if (!runs_thread_groups()) return;
  const GPTConfig cfg = config(4);
  const int p = 4;
  for (int m : {2, 8}) {
    one_step(cfg, p, m, 1, 9, [&](Communicator& comm, PipelineStage& stage) {
      EXPECT_EQ(stage.peak_in_flight(), std::min(p - comm.rank(), m)) << "rank " << comm.rank() << " m=" << m;
    });
  }
}

// On processes each rank's memory tracker is its own: rank r's activation peak is min(p - r, m)
// micro-batches of its stage (plus less than 20 activation-sized scratch buffers), not m.
TEST(Step, TrackerPeakIsPMinusRMicroBatchesOnEveryMpiRank) {
  const int p = world().size(), m = 6;
  const GPTConfig cfg = config(5);
  const int64_t b = 2;
  const Tensor x = tokens(cfg, m * b, 10), y = targets(cfg, m * b, 10);
  on_world([&](Communicator& comm) {
    PipelineStage stage(cfg, lesson08::stage_spec(cfg, p, comm.rank()), 4, DType::F64);
    AdamW opt(stage.layout(), adamw(), DType::F64, Device::CPU, stage.spec().param_begin, stage.spec().num_params());
    const int64_t base = current(MemCategory::Activations);
    MemoryTracker::instance().reset_peak();
    one_f_one_b_train_step(comm, stage, opt, x, y, m, 1e-3);
    const int64_t peak = sgpt::testing::peak(MemCategory::Activations) - base;
    const int64_t unit = stage.activation_bytes_per_microbatch(b, cfg.max_seq_len);
    const int64_t scratch = 20 * b * cfg.max_seq_len * cfg.n_embd * 8, held = std::min(p - comm.rank(), m);
    EXPECT_GE(peak, held * unit) << "rank " << comm.rank();
    EXPECT_LE(peak, held * unit + scratch) << "rank " << comm.rank();
  });
}

TEST(Step, EachBoundaryMovesTwoMMessagesPerStep) {
  if (!runs_thread_groups()) return;
  const GPTConfig cfg = config(4);
  const int p = 4, m = 5;
  const int64_t b = 2, msg = b * cfg.max_seq_len * cfg.n_embd * 8;
  one_step(cfg, p, m, b, 12, [&](Communicator& comm, PipelineStage&) {
    const int r = comm.rank(), links = (r > 0) + (r < p - 1);
    EXPECT_EQ(comm.stats()[OpKind::Send].calls, links * m) << "rank " << r;
    EXPECT_EQ(comm.stats()[OpKind::Send].bytes, links * m * msg) << "rank " << r;
    EXPECT_EQ(comm.stats()[OpKind::Recv].calls, links * m) << "rank " << r;
    EXPECT_EQ(comm.stats()[OpKind::Recv].bytes, links * m * msg) << "rank " << r;
    for (OpKind k : {OpKind::AllReduce, OpKind::ReduceScatter, OpKind::AllGather, OpKind::Broadcast, OpKind::Barrier})
      EXPECT_EQ(comm.stats()[k].calls, 0) << "rank " << r << ": a pipeline step uses point-to-point only";
  });
}

// Many shapes, each under synchronous sends: a step that sends before its neighbour can receive
// (e.g. a separate send and recv in the steady phase) deadlocks here, and the watchdog fails it.
TEST(Step, NeverReliesOnBufferedSends) {
  if (!runs_thread_groups()) return;
  const GPTConfig cfg = config(4);
  for (int p = 2; p <= 4; ++p)
    for (int m : {1, p - 1, p, p + 3}) {
      if (m < 1) continue;
      one_step(cfg, p, m, 1, 13, [&](Communicator& comm, PipelineStage& stage) {
        EXPECT_EQ(stage.in_flight(), 0) << "p=" << p << " m=" << m << " rank " << comm.rank();
        EXPECT_EQ(stage.backwards(), m) << "p=" << p << " m=" << m << " rank " << comm.rank();
      });
    }
}

TEST(Step, BadSettingsFailOnEveryRank) {
  if (!runs_thread_groups()) return;
  const GPTConfig cfg = config(4);
  const Tensor x = tokens(cfg, 6, 1), y = targets(cfg, 6, 1);
  std::vector<std::string> errors(2);
  std::vector<int64_t> calls(2, -1);  // messages and collectives before the error: none
  on_threads(2, [&](Communicator& comm) {
    PipelineStage stage(cfg, lesson08::stage_spec(cfg, 2, comm.rank()), 4, DType::F64);
    AdamW opt(stage.layout(), adamw(), DType::F64, Device::CPU, stage.spec().param_begin, stage.spec().num_params());
    comm.reset_stats();
    errors[comm.rank()] = error_of([&] { one_f_one_b_train_step(comm, stage, opt, x, y, 4, 1e-3); });
    calls[comm.rank()] = comm.stats().total().calls;
  });
  for (int r = 0; r < 2; ++r)
    EXPECT_TRUE(!errors[r].empty() && errors[r].find("not implemented") == std::string::npos &&
                errors[r].find('4') != std::string::npos && errors[r].find('6') != std::string::npos)
        << "rank " << r << ": m = 4 for 6 rows; got: " << errors[r];
  for (int r = 0; r < 2; ++r) EXPECT_EQ(calls[r], 0) << "rank " << r << ": validate before the first message";
  on_threads(2, [&](Communicator& comm) {
    PipelineStage stage(cfg, lesson08::stage_spec(cfg, 3, comm.rank()), 4, DType::F64);
    AdamW opt(stage.layout(), adamw(), DType::F64, Device::CPU, stage.spec().param_begin, stage.spec().num_params());
    comm.reset_stats();
    errors[comm.rank()] = error_of([&] { one_f_one_b_train_step(comm, stage, opt, x, y, 2, 1e-3); });
    calls[comm.rank()] = comm.stats().total().calls;
  });
  for (int r = 0; r < 2; ++r)
    EXPECT_TRUE(!errors[r].empty() && errors[r].find("not implemented") == std::string::npos &&
                errors[r].find('3') != std::string::npos && errors[r].find('2') != std::string::npos)
        << "rank " << r << ": 3 stages on 2 ranks; got: " << errors[r];
  for (int r = 0; r < 2; ++r) EXPECT_EQ(calls[r], 0) << "rank " << r << ": validate before the first message";
}
