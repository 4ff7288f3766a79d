// Lesson 12, task 3: the planner's memory equals the tracker's on real runs; it never returns a
// layout that does not fit; its time model has the bubble; its choices follow published guidance.

#include "test_util.hpp"

using namespace lesson12_test;

namespace {

GPTConfig untied(const std::string& preset) {
  GPTConfig c = gpt_config(preset);
  c.tied_embeddings = false;
  return c;
}

// A 175B-class model (GPT-3's shape: 96 layers, 96 heads, C = 12288, T = 2048).
GPTConfig gpt3_175b() {
  GPTConfig c;
  c.name = "175b";
  c.n_layer = 96;
  c.n_head = 96;
  c.n_embd = 12288;
  c.max_seq_len = 2048;
  c.set_vocab(50257);
  c.tied_embeddings = false;
  return c;
}

Job big_job(const GPTConfig& cfg, int64_t T, int64_t gbs) {
  Job j;
  j.cfg = cfg;
  j.seq_len = T;
  j.global_batch = gbs;
  j.precision = Precision::mixed();
  return j;
}

}  // namespace

TEST(Planner, MemoryEqualsTheTrackerPeakOnEveryRank) {
  // The tracker counts one process: run where each process is one rank (np1: the 1x1x1 grid).
  Run3D run;
  const Job job = test_job(run);
  auto check = [&](Communicator& world, const GridShape& s, int64_t mb) {
    Grid g = make_grid(world, s);
    Layout l{s.dp, s.pp, s.tp, mb, 0, Recompute::None, Schedule::OneFOneB};
    {
      TPStage st(run.cfg, s.pp, g.coord.pp, *g.tp, run.seed, DType::F64, adamw());
      MemoryTracker::instance().reset_peak();
      for (int step = 0; step < 2; ++step)
        train_step_3d(g, st, pipeline_tokens(run.cfg, run.B, step), pipeline_targets(run.cfg, run.B, step), mb, 1e-3);
      const MemoryBreakdown want = predict_stage_memory(job, l, g.coord.pp);
      auto peak = [](MemCategory c) { return int64_t(MemoryTracker::instance().stats(c).peak); };
      const std::string at = "grid " + s.str() + " mb " + std::to_string(mb) + " rank " + std::to_string(world.rank());
      EXPECT_EQ(peak(MemCategory::Parameters), want.params) << at;
      EXPECT_EQ(peak(MemCategory::Gradients), want.grads) << at;
      EXPECT_EQ(peak(MemCategory::OptimizerState), want.optimizer) << at;
      EXPECT_EQ(peak(MemCategory::Activations), want.activations) << at;
    }
    world.barrier();
  };
  const int n = world().size();
  if (n == 1) {
    run_threads(1, [&](Communicator& w) { check(w, {1, 1, 1}, 1); check(w, {1, 1, 1}, 4); });
    return;
  }
  synchronous_sends();
  for (const GridShape& s : grids_of(n))
    for (int64_t mb : {int64_t(1), int64_t(2)})
      if (run.B % (s.dp * mb) == 0) check(world(), s, mb);
}

TEST(Planner, ActivationsFollowTheScheduleAndRecomputation) {
  // Independent of the tracker: the stated formula, stage by stage.
  Run3D run;
  const Job job = test_job(run);
  for (Schedule sc : {Schedule::GPipe, Schedule::OneFOneB})
    for (Recompute rc : {Recompute::Full, Recompute::None}) {
      const Layout l{1, 4, 2, 1, 0, rc, sc};
      for (int r = 0; r < 4; ++r) {
        const StageActivationParts a =
            stage_activation_parts(run.cfg, pipeline_stage_spec(run.cfg, 4, r), 2, 1, run.T, 8);
        const int64_t k = sc == Schedule::GPipe ? 8 : 4 - r;
        const int64_t want = rc == Recompute::None ? k * a.per_microbatch() + a.backward
                                                   : k * (a.outer + a.layers * a.block_input) + a.block_cache + a.backward;
        EXPECT_EQ(predict_stage_memory(job, l, r).activations, want) << l.str() << " stage " << r;
      }
    }
}

TEST(Planner, ModelStateFollowsTheZeroStages) {
  Job job = big_job(untied("d24"), 1024, 512);
  const Layout base{8, 2, 4, 1, 0, Recompute::None, Schedule::OneFOneB};
  const int64_t psi = tp_stage_numel(job.cfg, pipeline_stage_spec(job.cfg, 2, 0), 4), sh = (psi + 7) / 8;
  const int64_t want[4][3] = {{2 * psi, 2 * psi, 12 * psi},
                              {2 * psi, 2 * psi, 12 * sh},
                              {2 * psi, 2 * sh, 12 * sh},
                              {2 * sh, 2 * sh, 12 * sh}};
  for (int z = 0; z < 4; ++z) {
    Layout l = base;
    l.zero = z;
    const MemoryBreakdown m = predict_stage_memory(job, l, 0);
    EXPECT_EQ(m.params, want[z][0]) << "ZeRO " << z;
    EXPECT_EQ(m.grads, want[z][1]) << "ZeRO " << z;
    EXPECT_EQ(m.optimizer, want[z][2]) << "ZeRO " << z;
  }
}

TEST(Planner, StepTimeHasTheBubbleAndTheMessages) {
  Job job = big_job(untied("d24"), 1024, 64);
  Cluster c;
  c.world = 64;
  const Layout l{4, 4, 4, 2, 1, Recompute::None, Schedule::OneFOneB};  // m = 64 / (4*2) = 8
  const StepTime t = predict_step_time(job, c, l);
  const double compute = training_flops_per_token(job.cfg, 1024) * 64 * 1024 / (64 * c.achieved_flops);
  EXPECT_NEAR(t.compute, compute, 1e-9 * compute);
  EXPECT_NEAR(t.bubble, compute * 3 / 8, 1e-9 * compute) << "bubble = compute (p-1)/m";
  const double act = 2.0 * 1024 * job.cfg.n_embd * 2;
  EXPECT_NEAR(t.tp_comm, 11 * 6 * 4 * all_reduce_time(act, 4, c.intra_bw, c.intra_alpha), 1e-9 * t.tp_comm);
  EXPECT_NEAR(t.pp_comm, 11 * 2 * p2p_time(act, c.inter_bw, c.inter_alpha), 1e-9 * t.pp_comm)
      << "pp x tp = 16 ranks span two nodes of 8";
  EXPECT_GT(t.dp_comm, 0.0);
  // More micro-batches, smaller bubble: the same layout with m = 32 is faster per step.
  Layout more = l;
  more.micro_batch = 1;
  Job big = job;
  big.global_batch = 128;
  EXPECT_NEAR(predict_step_time(big, c, more).bubble / predict_step_time(big, c, more).compute, 3.0 / 32, 1e-12);
}

TEST(Planner, NeverReturnsALayoutThatDoesNotFit) {
  Job job = big_job(untied("d24"), 1024, 512);
  Cluster c;
  c.world = 64;
  c.memory_bytes = 12e9;
  const std::vector<Plan> plans = plan(job, c);
  ASSERT_FALSE(plans.empty());
  for (const Plan& p : plans) {
    EXPECT_LE(double(predict_memory(job, p.layout).total()), c.memory_bytes) << p.layout.str();
    EXPECT_EQ(p.memory.total(), predict_memory(job, p.layout).total()) << p.layout.str();
  }
  for (size_t i = 1; i < plans.size(); ++i) EXPECT_LE(plans[i - 1].time.total(), plans[i].time.total());
  // Layouts that would not fit exist (pure data parallelism without ZeRO, no recomputation).
  EXPECT_GT(double(predict_memory(job, {64, 1, 1, 8, 0, Recompute::None, Schedule::OneFOneB}).total()),
            c.memory_bytes);
}

TEST(Planner, AgreesWithNarayananGuidance) {
  // A model that fits one GPU, on one node: pure data parallelism wins.
  {
    Job job = big_job(untied("d12"), 1024, 512);
    Cluster c;
    c.world = 8;
    const std::vector<Plan> plans = plan(job, c);
    ASSERT_FALSE(plans.empty());
    EXPECT_EQ(plans[0].layout.tp, 1) << plans[0].layout.str();
    EXPECT_EQ(plans[0].layout.pp, 1) << plans[0].layout.str();
  }
  // 175B on 64 nodes of 8: tensor parallelism inside a node, the pipeline across nodes, data
  // parallelism for the rest (Narayanan et al. 2021, Takeaways #1-#2).
  {
    Job job = big_job(gpt3_175b(), 2048, 1536);
    Cluster c;
    c.world = 512;
    const std::vector<Plan> plans = plan(job, c);
    ASSERT_FALSE(plans.empty());
    const Layout& l = plans[0].layout;
    EXPECT_GT(l.tp, 1) << l.str();
    EXPECT_LE(l.tp, c.gpus_per_node) << l.str() << ": tensor parallelism stays inside a node";
    EXPECT_GT(l.pp * l.tp, c.gpus_per_node) << l.str() << ": the pipeline spans nodes";
    EXPECT_GT(l.dp, 1) << l.str();
  }
}

TEST(Planner, BadLayoutsAreClearErrors) {
  Job job = big_job(untied("d12"), 1024, 512);
  Cluster c;
  c.world = 8;
  auto err = [&](const Layout& l) { return error_of([&] { predict_step_time(job, c, l); }); };
  const std::string product = err({2, 2, 1, 1, 0, Recompute::None, Schedule::OneFOneB});
  EXPECT_TRUE(product.find("world") != std::string::npos && product.find("not implemented") == std::string::npos)
      << product;
  Cluster c10 = c;
  c10.world = 10;
  const std::string heads = error_of([&] { predict_step_time(job, c10, {1, 1, 10, 1, 0, Recompute::None, Schedule::OneFOneB}); });
  EXPECT_TRUE(heads.find("heads") != std::string::npos) << heads;
  Cluster c16 = c;
  c16.world = 16;
  const std::string layers = error_of([&] { predict_step_time(job, c16, {1, 16, 1, 1, 0, Recompute::None, Schedule::OneFOneB}); });
  EXPECT_TRUE(layers.find("layers") != std::string::npos) << layers;
  const std::string mem = error_of([&] { predict_memory(job, {3, 1, 1, 1, 0, Recompute::None, Schedule::OneFOneB}); });
  EXPECT_TRUE(mem.find("512") != std::string::npos) << mem;
}
