// Lesson 08 public tests: the stage split gives each rank exactly its slice of the single-device
// model; the forward and backward steps move exactly one b*T*C message per micro-batch and stage
// boundary in each direction; the GPipe step equals the single-device step (loss, gradients,
// parameters after several AdamW steps) for p = 1..4 stages and m < p, m = p, m > p; the real
// per-rank order of operations (from the trace) is F0..F(m-1) B(m-1)..B0; every stage holds m
// micro-batches in flight; and the bubble of the ideal machine is (p-1)/(m+p-1).
//
// Pipelines run on in-process ranks (threads) with synchronous sends, under a watchdog, and then
// on the MPI world of the run (ctest runs this binary under mpirun at 1, 2 and 4 ranks), where
// each rank is a process and its memory tracker shows what its stage holds.
//
// Tolerances (f64): the pipeline computes the same sums as the single device, except that the
// gradient is summed over micro-batches (the same reordering as lesson 02): loss to 1e-12
// relative, gradients to 1e-10 * max|g|, parameters after 3 AdamW steps to 1e-9.

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "pipeline_gpipe.hpp"
#include "test_util.hpp"

using namespace sgpt;
using namespace sgpt::lesson08;
using namespace lesson08_test;


// ---- task 1: the stage split ---------------------------------------------------------------------------

TEST(StageSpec, SplitsBlocksByTheShardingRule) {
  const GPTConfig cfg = config(5);
  const ParameterLayout layout(cfg);
  // p = 3 over 5 blocks: 2, 2, 1.
  const int first[] = {0, 2, 4}, end[] = {2, 4, 5};
  for (int r = 0; r < 3; ++r) {
    const StageSpec s = stage_spec(cfg, 3, r);
    EXPECT_EQ(s.stage, r);
    EXPECT_EQ(s.num_stages, 3);
    EXPECT_EQ(s.first_layer, first[r]) << "stage " << r;
    EXPECT_EQ(s.end_layer, end[r]) << "stage " << r;
  }
  for (int p = 1; p <= 5; ++p) {
    int next = 0;
    for (int r = 0; r < p; ++r) {
      const StageSpec s = stage_spec(cfg, p, r);
      EXPECT_EQ(s.first_layer, next) << "p=" << p << " stage " << r << " must start where stage " << r - 1 << " ended";
      EXPECT_EQ(s.num_layers(), 5 / p + (r < 5 % p ? 1 : 0)) << "p=" << p << " stage " << r;
      next = s.end_layer;
    }
    EXPECT_EQ(next, 5) << "p=" << p << ": every block on some stage";
  }
}

TEST(StageSpec, ParameterRangeIsExactlyTheStagesParameters) {
  for (int L : {4, 5}) {
    const GPTConfig cfg = config(L);
    const ParameterLayout layout(cfg);
    for (int p = 1; p <= 4; ++p) {
      int64_t next = 0;
      for (int r = 0; r < p; ++r) {
        const StageSpec s = stage_spec(cfg, p, r);
        int64_t want = s.num_layers() * block_params(cfg);
        if (r == 0) want += embedding_params(cfg);
        if (r == p - 1) want += head_params(cfg);
        EXPECT_EQ(s.param_begin, next) << "L=" << L << " p=" << p << " stage " << r;
        EXPECT_EQ(s.num_params(), want) << "L=" << L << " p=" << p << " stage " << r
                                        << ": its blocks, plus embeddings (first) and final LayerNorm + head (last)";
        next = s.param_end;
      }
      EXPECT_EQ(next, layout.numel()) << "L=" << L << " p=" << p;
    }
  }
}

TEST(StageSpec, StageHoldsOnlyItsSliceOfTheModel) {
  const GPTConfig cfg = config(5);
  GPT whole(cfg, 7, Device::CPU, DType::F64);
  for (int p : {2, 4}) {
    for (int r = 0; r < p; ++r) {
      const int64_t before = current(MemCategory::Parameters);
      PipelineStage stage(cfg, stage_spec(cfg, p, r), 7, DType::F64);
      const StageSpec& s = stage.spec();
      int64_t want = s.num_layers() * block_params(cfg) + (r == 0 ? embedding_params(cfg) : 0) +
                     (r == p - 1 ? head_params(cfg) : 0);
      EXPECT_EQ(current(MemCategory::Parameters) - before, want * 8)
          << "p=" << p << " stage " << r << " allocates parameter bytes for more than its slice";
      EXPECT_EQ(max_diff(stage.params(), whole.params(), s.param_begin, s.param_end), 0.0)
          << "p=" << p << " stage " << r << ": its parameters are not the single-device slice";
    }
  }
}

TEST(StageSpec, BadSplitsAreClearErrors) {
  const GPTConfig cfg = config(5);
  auto no_stub = [](const std::string& e) { return e.find("not implemented") == std::string::npos; };
  std::string e = error_of([&] { stage_spec(cfg, 6, 0); });
  EXPECT_TRUE(!e.empty() && no_stub(e) && e.find('6') != std::string::npos && e.find('5') != std::string::npos)
      << "6 stages for 5 blocks must be an error naming both numbers; got: " << e;
  e = error_of([&] { stage_spec(cfg, 3, 3); });
  EXPECT_TRUE(!e.empty() && no_stub(e) && e.find('3') != std::string::npos) << "stage 3 of 3; got: " << e;
  e = error_of([&] { stage_spec(cfg, 0, 0); });
  EXPECT_TRUE(!e.empty() && no_stub(e)) << "0 stages; got: " << e;
  GPTConfig tied = cfg;
  tied.tied_embeddings = true;
  e = error_of([&] { stage_spec(tied, 2, 1); });
  EXPECT_TRUE(!e.empty() && no_stub(e) && e.find("tied") != std::string::npos)
      << "tied embeddings on two stages; got: " << e;
  EXPECT_EQ(error_of([&] { stage_spec(tied, 1, 0); }), "") << "one stage may keep tied embeddings";
}

// ---- task 2: the forward and backward steps -----------------------------------------------------------

// GPipe's order written out here, so that these tests need only task 2.
TEST(Steps, ForwardAndBackwardStepsGiveTheSingleDeviceGradient) {
  if (!runs_thread_groups()) return;
  const GPTConfig cfg = config(4);
  for (int p : {2, 3, 4}) {
    const int m = 2;
    const int64_t b = 2;
    Reference ref(cfg, 11);
    const Tensor x = tokens(cfg, m * b, 5), y = targets(cfg, m * b, 5);
    ref.model.zero_grad();
    const double want = ref.model.forward(x, y);
    ref.model.backward();
    on_threads(p, [&](Communicator& comm) {
      PipelineStage stage(cfg, stage_spec(cfg, p, comm.rank()), 11, DType::F64);
      const StageSpec& s = stage.spec();
      double loss = 0;
      for (int i = 0; i < m; ++i) {
        const double li = forward_step(comm, stage, i, x.slice(i * b, (i + 1) * b), y.slice(i * b, (i + 1) * b));
        if (s.is_last())
          loss += li;
        else
          EXPECT_TRUE(std::isnan(li)) << "p=" << p << " rank " << comm.rank() << ": only the last stage has a loss";
      }
      const double scale = 1.0 / m;
      for (int i = m - 1; i >= 0; --i) backward_step(comm, stage, i, scale);
      if (s.is_last()) {
        EXPECT_NEAR(loss / m, want, 1e-12 * want) << "p=" << p;
      }
      EXPECT_LE(max_diff(stage.grads(), ref.model.grads(), s.param_begin, s.param_end), 1e-10 * max_abs(ref.model.grads()))
          << "p=" << p << " rank " << comm.rank();
    });
  }
}

TEST(Steps, EachStepMovesOneActivationSizedMessage) {
  if (!runs_thread_groups()) return;
  const GPTConfig cfg = config(4);
  const int p = 3;
  // T = 5 < max_seq_len = C = 8: a buffer shaped [b,T,T] or [b,C,C] moves other bytes than [b,T,C].
  const int64_t b = 3, T = 5, msg = b * T * cfg.n_embd * 8;
  const Tensor x = tokens(cfg, b, 6, T), y = targets(cfg, b, 6, T);
  on_threads(p, [&](Communicator& comm) {
    PipelineStage stage(cfg, stage_spec(cfg, p, comm.rank()), 3, DType::F64);
    const StageSpec& s = stage.spec();
    comm.reset_stats();
    forward_step(comm, stage, 0, x, y);
    const CommStats f = comm.stats();
    EXPECT_EQ(f[OpKind::Send].calls, s.is_last() ? 0 : 1) << "rank " << s.stage << " forward sends";
    EXPECT_EQ(f[OpKind::Send].bytes, s.is_last() ? 0 : msg) << "rank " << s.stage << " forward bytes sent";
    EXPECT_EQ(f[OpKind::Recv].calls, s.is_first() ? 0 : 1) << "rank " << s.stage << " forward recvs";
    EXPECT_EQ(f[OpKind::Recv].bytes, s.is_first() ? 0 : msg) << "rank " << s.stage << " forward bytes received";
    comm.reset_stats();
    backward_step(comm, stage, 0, 1.0);
    const CommStats g = comm.stats();
    EXPECT_EQ(g[OpKind::Send].calls, s.is_first() ? 0 : 1) << "rank " << s.stage << " backward sends";
    EXPECT_EQ(g[OpKind::Send].bytes, s.is_first() ? 0 : msg) << "rank " << s.stage << " backward bytes sent";
    EXPECT_EQ(g[OpKind::Recv].calls, s.is_last() ? 0 : 1) << "rank " << s.stage << " backward recvs";
    EXPECT_EQ(g[OpKind::Recv].bytes, s.is_last() ? 0 : msg) << "rank " << s.stage << " backward bytes received";
    for (OpKind k : {OpKind::AllReduce, OpKind::ReduceScatter, OpKind::AllGather, OpKind::Broadcast, OpKind::Barrier})
      EXPECT_EQ(f[k].calls + g[k].calls, 0) << "a pipeline step uses point-to-point only";
  });
}

// ---- task 3: the GPipe schedule and step ----------------------------------------------------------------

TEST(GPipe, ScheduleIsAllForwardsThenAllBackwardsInReverse) {
  EXPECT_EQ(pipe_ops_string(gpipe_schedule(4, 0, 4)), "F0 F1 F2 F3 B3 B2 B1 B0");
  EXPECT_EQ(pipe_ops_string(gpipe_schedule(4, 3, 2)), "F0 F1 B1 B0");
  EXPECT_EQ(pipe_ops_string(gpipe_schedule(2, 1, 1)), "F0 B0");
  EXPECT_FALSE(error_of([] { gpipe_schedule(2, 0, 0); }).empty()) << "m = 0 must be an error";
}

TEST(GPipe, EqualsSingleDeviceForEveryStageCount) {
  if (!runs_thread_groups()) return;
  const GPTConfig cfg = config(5);
  // m < p, m = p and m > p for each p (B = 12 rows, so m divides it).
  const std::vector<std::pair<int, std::vector<int>>> cases = {{1, {1, 3}}, {2, {1, 2, 4}}, {3, {2, 3, 6}}, {4, {2, 4, 6}}};
  for (const auto& [p, ms] : cases)
    for (int m : ms) expect_equivalent(cfg, p, m, 12, 3);
}

TEST(GPipe, EqualsSingleDeviceOnTheMpiWorld) {
  const int p = world().size();
  expect_equivalent(config(5), p, p + 1, int64_t(2) * (p + 1), 2, /*world=*/true);
}

TEST(GPipe, TracedOrderOnEveryRankIsTheGPipeOrder) {
  if (!runs_thread_groups()) return;
  const GPTConfig cfg = config(4);
  for (auto [p, m] : {std::pair{4, 6}, std::pair{3, 2}}) {
    TraceCapture trace;
    const Tensor x = tokens(cfg, 2 * m, 8), y = targets(cfg, 2 * m, 8);
    on_threads(p, [&](Communicator& comm) {
      PipelineStage stage(cfg, stage_spec(cfg, p, comm.rank()), 4, DType::F64);
      AdamW opt(stage.layout(), adamw(), DType::F64, Device::CPU, stage.spec().param_begin, stage.spec().num_params());
      gpipe_train_step(comm, stage, opt, x, y, m, 1e-3);
    });
    std::string want;
    for (int i = 0; i < m; ++i) want += (i ? " F" : "F") + std::to_string(i);
    for (int i = m - 1; i >= 0; --i) want += " B" + std::to_string(i);
    for (int r = 0; r < p; ++r)
      EXPECT_EQ(pipe_ops_string(pipe_ops_from_trace(trace.events(), r)), want) << "p=" << p << " m=" << m << " rank " << r;
  }
}

TEST(GPipe, EveryStageHoldsAllMicroBatchesInFlight) {
  if (!runs_thread_groups()) return;
  const GPTConfig cfg = config(4);
  const int p = 4;
  for (int m : {2, 5}) {
    const Tensor x = tokens(cfg, m, 9), y = targets(cfg, m, 9);
    on_threads(p, [&](Communicator& comm) {
      PipelineStage stage(cfg, stage_spec(cfg, p, comm.rank()), 4, DType::F64);
      AdamW opt(stage.layout(), adamw(), DType::F64, Device::CPU, stage.spec().param_begin, stage.spec().num_params());
      gpipe_train_step(comm, stage, opt, x, y, m, 1e-3);
      EXPECT_EQ(stage.peak_in_flight(), m) << "rank " << comm.rank() << ": GPipe keeps all m micro-batches alive";
    });
  }
}

// On processes, each rank's memory tracker is its own: its activation peak is m micro-batches of
// its stage (plus less than 20 activation-sized scratch buffers of the backward and p2p).
TEST(GPipe, TrackerPeakIsMMicroBatchesOnEveryMpiRank) {
  const int p = world().size(), m = 3;
  const GPTConfig cfg = config(5);
  const int64_t b = 2;
  const Tensor x = tokens(cfg, m * b, 10), y = targets(cfg, m * b, 10);
  on_world([&](Communicator& comm) {
    PipelineStage stage(cfg, stage_spec(cfg, p, comm.rank()), 4, DType::F64);
    AdamW opt(stage.layout(), adamw(), DType::F64, Device::CPU, stage.spec().param_begin, stage.spec().num_params());
    const int64_t base = current(MemCategory::Activations);
    MemoryTracker::instance().reset_peak();
    gpipe_train_step(comm, stage, opt, x, y, m, 1e-3);
    const int64_t peak = sgpt::testing::peak(MemCategory::Activations) - base;
    const int64_t unit = stage.activation_bytes_per_microbatch(b, cfg.max_seq_len);
    const int64_t scratch = 20 * b * cfg.max_seq_len * cfg.n_embd * 8;
    EXPECT_GE(peak, m * unit) << "rank " << comm.rank();
    EXPECT_LE(peak, m * unit + scratch) << "rank " << comm.rank();
  });
}

TEST(GPipe, BubbleOfTheIdealMachineIsPMinusOneOverMPlusPMinusOne) {
  for (int p : {1, 2, 3, 4, 8})
    for (int m : {1, 2, 3, 4, 8, 16}) {
      std::vector<std::vector<PipeOp>> ops;
      for (int r = 0; r < p; ++r) ops.push_back(gpipe_schedule(p, r, m));
      for (auto [tf, tb] : {std::pair{1.0, 2.0}, std::pair{1.0, 1.0}}) {
        const PipelineTimeline t = simulate_pipeline(ops, tf, tb);
        EXPECT_EQ(t.makespan, (m + p - 1) * (tf + tb)) << "p=" << p << " m=" << m;
        EXPECT_NEAR(t.bubble(), double(p - 1) / (m + p - 1), 1e-15) << "p=" << p << " m=" << m;
      }
    }
}

TEST(GPipe, EachBoundaryMovesTwoMMessagesPerStep) {
  if (!runs_thread_groups()) return;
  const GPTConfig cfg = config(4);
  const int p = 4, m = 3;
  const int64_t b = 2, msg = b * cfg.max_seq_len * cfg.n_embd * 8;
  const Tensor x = tokens(cfg, m * b, 12), y = targets(cfg, m * b, 12);
  on_threads(p, [&](Communicator& comm) {
    PipelineStage stage(cfg, stage_spec(cfg, p, comm.rank()), 4, DType::F64);
    AdamW opt(stage.layout(), adamw(), DType::F64, Device::CPU, stage.spec().param_begin, stage.spec().num_params());
    comm.reset_stats();
    gpipe_train_step(comm, stage, opt, x, y, m, 1e-3);
    const int r = comm.rank(), links = (r > 0) + (r < p - 1);
    EXPECT_EQ(comm.stats()[OpKind::Send].calls, links * m) << "rank " << r;
    EXPECT_EQ(comm.stats()[OpKind::Send].bytes, links * m * msg) << "rank " << r;
    EXPECT_EQ(comm.stats()[OpKind::Recv].calls, links * m) << "rank " << r;
    EXPECT_EQ(comm.stats()[OpKind::Recv].bytes, links * m * msg) << "rank " << r;
    EXPECT_EQ(comm.stats().total().calls, 2 * links * m) << "rank " << r << ": nothing but the p2p of the schedule";
  });
}

TEST(GPipe, BadSettingsFailOnEveryRank) {
  if (!runs_thread_groups()) return;
  const GPTConfig cfg = config(4);
  const Tensor x = tokens(cfg, 6, 1), y = targets(cfg, 6, 1);
  std::vector<std::string> errors(3);
  std::vector<int64_t> calls(3, -1);  // messages and collectives before the error: none
  // m = 4 does not divide 6 rows.
  on_threads(2, [&](Communicator& comm) {
    PipelineStage stage(cfg, stage_spec(cfg, 2, comm.rank()), 4, DType::F64);
    AdamW opt(stage.layout(), adamw(), DType::F64, Device::CPU, stage.spec().param_begin, stage.spec().num_params());
    comm.reset_stats();
    errors[comm.rank()] = error_of([&] { gpipe_train_step(comm, stage, opt, x, y, 4, 1e-3); });
    calls[comm.rank()] = comm.stats().total().calls;
  });
  for (int r = 0; r < 2; ++r)
    EXPECT_TRUE(!errors[r].empty() && errors[r].find("not implemented") == std::string::npos &&
                errors[r].find('4') != std::string::npos && errors[r].find('6') != std::string::npos)
        << "rank " << r << ": m = 4 for 6 rows; got: " << errors[r];
  for (int r = 0; r < 2; ++r) EXPECT_EQ(calls[r], 0) << "rank " << r << ": validate before the first message";
  // Stages built for p = 3 on a group of 2 ranks.
  on_threads(2, [&](Communicator& comm) {
    PipelineStage stage(cfg, stage_spec(cfg, 3, comm.rank()), 4, DType::F64);
    AdamW opt(stage.layout(), adamw(), DType::F64, Device::CPU, stage.spec().param_begin, stage.spec().num_params());
    comm.reset_stats();
    errors[comm.rank()] = error_of([&] { gpipe_train_step(comm, stage, opt, x, y, 2, 1e-3); });
    calls[comm.rank()] = comm.stats().total().calls;
  });
  for (int r = 0; r < 2; ++r)
    EXPECT_TRUE(!errors[r].empty() && errors[r].find("not implemented") == std::string::npos &&
                errors[r].find('3') != std::string::npos && errors[r].find('2') != std::string::npos)
        << "rank " << r << ": 3 stages on 2 ranks; got: " << errors[r];
  for (int r = 0; r < 2; ++r) EXPECT_EQ(calls[r], 0) << "rank " << r << ": validate before the first message";
}
