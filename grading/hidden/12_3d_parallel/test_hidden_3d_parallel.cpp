// Lesson 12 hidden tests: other grid shapes, another seed and more steps, another model by hand.

#include "tests/test_util.hpp"

using namespace lesson12_test;

TEST(HiddenGrid, OddShapesAndTwelveRanks) {
  for (GridShape s : {GridShape{3, 4, 1}, GridShape{1, 3, 4}, GridShape{2, 3, 2}, GridShape{5, 1, 3}}) {
    std::vector<int> seen(size_t(s.size()), 0);
    for (int r = 0; r < s.size(); ++r) {
      const GridCoord c = grid_coords(s, r);
      EXPECT_EQ(c.tp, r % s.tp) << s.str() << " rank " << r;
      EXPECT_EQ(c.pp, (r / s.tp) % s.pp) << s.str() << " rank " << r;
      EXPECT_EQ(c.dp, r / (s.tp * s.pp)) << s.str() << " rank " << r;
      seen[size_t(grid_rank(s, c))]++;
    }
    for (int r = 0; r < s.size(); ++r) EXPECT_EQ(seen[size_t(r)], 1) << s.str();
  }
  if (world().size() == 1)
    on_threads(6, [&](Communicator& w) {
      Grid g = make_grid(w, {1, 3, 2});
      EXPECT_EQ(g.pp->size(), 3);
      EXPECT_EQ(g.tp->size(), 2);
      EXPECT_EQ(g.dp->size(), 1);
      EXPECT_EQ(g.tp->rank(), w.rank() % 2);
      EXPECT_EQ(g.pp->rank(), w.rank() / 2);
    });
}

TEST(HiddenStep3D, OtherSeedFourStepsOnTheWorld) {
  Run3D run;
  run.seed = 23;
  run.steps = 4;
  run.lr = 3e-2;
  run.run_reference();
  const int n = world().size() == 1 ? 8 : world().size();
  on_ranks(n, [&](Communicator& w) {
    for (const GridShape& s : grids_of(n))
      if (s.pp > 1 && s.dp > 1) run.run_3d(w, s);
    run.run_3d(w, grids_of(n).back());
  });
}

TEST(HiddenPlanner, OtherModelAndClusterByHand) {
  Job job;
  job.cfg = gpt_config("d36");
  job.cfg.tied_embeddings = false;
  job.seq_len = 512;
  job.global_batch = 96;
  job.precision = Precision::fp32();
  const Layout l{3, 4, 2, 4, 2, Recompute::Full, Schedule::GPipe};  // m = 96 / 12 = 8
  // Model state of stage 3 (the head), ZeRO 2 over 3 replicas.
  const StageSpec last = lesson08::stage_spec(job.cfg, 4, 3);
  const int64_t psi = tp_stage_numel(job.cfg, last, 2), sh = (psi + 2) / 3;
  const MemoryBreakdown m = predict_stage_memory(job, l, 3);
  EXPECT_EQ(m.params, 4 * psi);
  EXPECT_EQ(m.grads, 4 * sh);
  EXPECT_EQ(m.optimizer, 8 * sh);
  const StageActivationParts a = stage_activation_parts(job.cfg, last, 2, 4, 512, 4);
  EXPECT_EQ(m.activations, 8 * (a.outer + a.layers * a.block_input) + a.block_cache + a.backward);
  // Time on 24 GPUs of 4 per node.
  Cluster c;
  c.world = 24;
  c.gpus_per_node = 4;
  const StepTime t = predict_step_time(job, c, l);
  const double compute = training_flops_per_token(job.cfg, 512) * 96 * 512 * 4 / 3 / (24 * c.achieved_flops);
  EXPECT_NEAR(t.compute, compute, 1e-9 * compute);
  EXPECT_NEAR(t.bubble, compute * 3 / 8, 1e-9 * compute);
  const double act = 4.0 * 512 * job.cfg.n_embd * 4;
  EXPECT_NEAR(t.tp_comm, 11 * 9 * 6 * all_reduce_time(act, 2, c.intra_bw, c.intra_alpha), 1e-9 * t.tp_comm);
  int64_t big = 0;
  for (int r = 0; r < 4; ++r) big = std::max(big, tp_stage_numel(job.cfg, lesson08::stage_spec(job.cfg, 4, r), 2));
  EXPECT_NEAR(t.dp_comm, all_reduce_time(4.0 * big, 3, c.inter_bw, c.inter_alpha), 1e-9 * t.dp_comm);
  // The worst rank is the stage with the largest total.
  int64_t worst = 0;
  for (int r = 0; r < 4; ++r) worst = std::max(worst, predict_stage_memory(job, l, r).total());
  EXPECT_EQ(predict_memory(job, l).total(), worst);
}

TEST(HiddenZero1In3D, FiveStepsOtherSeedOnTheWorld) {
  // ZeRO-1 on every grid of the world with data parallelism (8x1x1 on 8 ranks: one row each),
  // another seed and learning rate, five steps.
  Run3D run = zero1_run(29, 5);
  run.lr = 2e-2;
  run.run_reference();
  const int n = world().size() == 1 ? 8 : world().size();
  on_ranks(n, [&](Communicator& w) {
    for (const GridShape& s : zero_grids_of(n)) run.run_3d(w, s);
    run.run_3d(w, {n, 1, 1});
  });
}
