// Lesson 12, task 2: 3D parallelism equals the single device, and each group carries what it should.

#include "test_util.hpp"

using namespace lesson12_test;

TEST(Step3D, EqualsSingleDeviceOnGridsOf8Ranks) {
  Run3D run;
  run.run_reference();
  on_ranks(8, [&](Communicator& world) {
    for (const GridShape& s : grids_of(8)) run.run_3d(world, s);
  });
}

TEST(Step3D, EqualsSingleDeviceOnGridsOf4RanksWithLargerMicroBatches) {
  Run3D run;
  run.mb = 2;  // m = 8 / (dp * 2) micro-batches of 2 rows
  run.seed = 11;
  run.run_reference();
  on_ranks(4, [&](Communicator& world) {
    for (const GridShape& s : grids_of(4)) run.run_3d(world, s);
  });
}

TEST(Step3D, GradientsAveragedOnceOverTheDataParallelGroup) {
  Run3D run;
  run.steps = 2;
  run.run_reference();
  on_ranks(8, [&](Communicator& world) {
    run.run_3d(world, {2, 2, 2}, [&](Grid& g, TPStage& st, int step) {
      // Per step: the gradient buffer and the loss on dp; the loss on pp; nothing else collective.
      const int64_t n = st.grads().numel();
      EXPECT_EQ(g.dp->stats()[OpKind::AllReduce].calls, 2 * (step + 1)) << "rank " << world.rank();
      EXPECT_EQ(g.dp->stats()[OpKind::AllReduce].bytes, (step + 1) * (n * 8 + 8)) << "rank " << world.rank();
      EXPECT_EQ(g.pp->stats()[OpKind::AllReduce].calls, step + 1) << "rank " << world.rank();
    });
  });
}

TEST(Step3D, BadBatchesAreClearErrorsOnEveryRank) {
  const GPTConfig cfg = config();
  on_ranks(4, [&](Communicator& world) {
    Grid g = make_grid(world, {2, 2, 1});
    TPStage st(cfg, 2, g.coord.pp, *g.tp, 3, DType::F64);
    const std::string e = error_of([&] { train_step_3d(g, st, pipeline_tokens(cfg, 6, 1), pipeline_targets(cfg, 6, 1), 2, 1e-3); });
    EXPECT_TRUE(e.find("not implemented") == std::string::npos && e.find('6') != std::string::npos)
        << "rank " << world.rank() << ": 6 rows over 2 replicas of micro-batches of 2; got: " << e;
    TPStage wrong(cfg, 4, g.coord.pp, *g.tp, 3, DType::F64);
    const std::string w = error_of([&] { train_step_3d(g, wrong, pipeline_tokens(cfg, 8, 1), pipeline_targets(cfg, 8, 1), 1, 1e-3); });
    EXPECT_TRUE(w.find("not implemented") == std::string::npos && w.find('4') != std::string::npos)
        << "rank " << world.rank() << ": a stage of 4 in a grid of 2 stages; got: " << w;
  });
}
