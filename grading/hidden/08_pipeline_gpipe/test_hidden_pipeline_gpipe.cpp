// Lesson 08 hidden tests: other depths and stage counts (up to one block per stage), sequences
// shorter than the context, five stages with fewer micro-batches than stages, and the exact
// message sizes of an odd micro-batch shape.

#include <gtest/gtest.h>

#include "tests/test_util.hpp"

using namespace sgpt;
using namespace sgpt::lesson08;
using namespace lesson08_test;

TEST(HiddenStageSpec, SevenBlocksEveryStageCount) {
  const GPTConfig cfg = config(7);
  const ParameterLayout layout(cfg);
  for (int p = 1; p <= 7; ++p) {
    int next_layer = 0;
    int64_t next_param = 0;
    for (int r = 0; r < p; ++r) {
      const StageSpec s = stage_spec(cfg, p, r);
      EXPECT_EQ(s.first_layer, next_layer) << "p=" << p << " stage " << r;
      EXPECT_EQ(s.num_layers(), 7 / p + (r < 7 % p ? 1 : 0)) << "p=" << p << " stage " << r;
      EXPECT_EQ(s.param_begin, next_param) << "p=" << p << " stage " << r;
      EXPECT_EQ(s.num_params(), s.num_layers() * block_params(cfg) + (r == 0 ? embedding_params(cfg) : 0) +
                                    (r == p - 1 ? head_params(cfg) : 0))
          << "p=" << p << " stage " << r;
      next_layer = s.end_layer;
      next_param = s.param_end;
    }
    EXPECT_EQ(next_layer, 7);
    EXPECT_EQ(next_param, layout.numel());
  }
  const std::string e = error_of([&] { stage_spec(cfg, 8, 7); });
  EXPECT_TRUE(!e.empty() && e.find("not implemented") == std::string::npos && e.find('8') != std::string::npos &&
              e.find('7') != std::string::npos)
      << "8 stages for 7 blocks; got: " << e;
}

TEST(HiddenGPipe, ThreeBlocksShortSequencesOtherSeed) {
  if (!runs_thread_groups()) return;
  const GPTConfig cfg = config(3);
  // T = 5 < the context 8; B = 10 rows in m = 5 or 2 micro-batches.
  for (int p : {2, 3})
    for (int m : {2, 5}) expect_equivalent(cfg, p, m, 10, 4, false, 777, 5);
}

TEST(HiddenGPipe, FiveStagesFewerMicroBatchesThanStages) {
  if (!runs_thread_groups()) return;
  const GPTConfig cfg = config(5);
  const int p = 5, m = 3;
  expect_equivalent(cfg, p, m, 6, 2, false, 31);
  TraceCapture trace;
  const Tensor x = tokens(cfg, 6, 2), y = targets(cfg, 6, 2);
  std::vector<int> in_flight(p, -1);
  on_threads(p, [&](Communicator& comm) {
    PipelineStage stage(cfg, stage_spec(cfg, p, comm.rank()), 4, DType::F64);
    AdamW opt(stage.layout(), adamw(), DType::F64, Device::CPU, stage.spec().param_begin, stage.spec().num_params());
    gpipe_train_step(comm, stage, opt, x, y, m, 1e-3);
    in_flight[comm.rank()] = stage.peak_in_flight();
  });
  for (int r = 0; r < p; ++r) {
    EXPECT_EQ(pipe_ops_string(pipe_ops_from_trace(trace.events(), r)), "F0 F1 F2 B2 B1 B0") << "rank " << r;
    EXPECT_EQ(in_flight[r], m) << "rank " << r;
  }
}

TEST(HiddenGPipe, MessageBytesOfAnOddMicroBatchShape) {
  if (!runs_thread_groups()) return;
  const GPTConfig cfg = config(3);
  const int p = 3, m = 2;
  const int64_t b = 3, T = 7, msg = b * T * cfg.n_embd * 8;
  const Tensor x = tokens(cfg, m * b, 13, T), y = targets(cfg, m * b, 13, T);
  on_threads(p, [&](Communicator& comm) {
    PipelineStage stage(cfg, stage_spec(cfg, p, comm.rank()), 4, DType::F64);
    AdamW opt(stage.layout(), adamw(), DType::F64, Device::CPU, stage.spec().param_begin, stage.spec().num_params());
    comm.reset_stats();
    gpipe_train_step(comm, stage, opt, x, y, m, 1e-3);
    const int r = comm.rank(), links = (r > 0) + (r < p - 1);
    EXPECT_EQ(comm.stats()[OpKind::Send].bytes, links * m * msg) << "rank " << r;
    EXPECT_EQ(comm.stats()[OpKind::Recv].bytes, links * m * msg) << "rank " << r;
    EXPECT_EQ(comm.stats().total().calls, 2 * links * m) << "rank " << r;
  });
}
