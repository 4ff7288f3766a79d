// Lesson 12 driver: the planner's view of machines this course cannot run on, and its memory
// predictions against what real ranks measure on this machine.
//
// Part 1 (any rank count): the planner's top layouts for GPT-2 124M on one node of 8 GPUs, GPT-2
// 1.5B on 64 GPUs and a 175B-class model on 512 and 1024 GPUs (H100-like nodes of 8: 80 GB,
// 989 TFLOP/s dense bf16 peak, 400 TFLOP/s achieved, NVLink 450 GB/s, InfiniBand 50 GB/s).
// Part 2 (under mpirun -np N): every grid of N ranks trains the micro model (f32) for a few
// steps, with plain data parallelism across the replicas and, where there are replicas, with
// ZeRO-1 (task 4); each rank's tracker peak against the planner's prediction for its stage (the
// optimizer state alone, and the total), and the median step time.
//
//   mpirun -np 8 --oversubscribe lesson12-3d-parallel [--model micro] [--rows 8] [--seq-len 32]
//          [--micro-batch 1] [--steps 3] [--top 5]

#include <CLI/CLI.hpp>

#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include "comm/communicator.hpp"
#include "core/main.hpp"
#include "core/memory.hpp"
#include "core/testing.hpp"
#include "core/timer.hpp"
#include "grid.hpp"
#include "parallel3d.hpp"
#include "planner.hpp"

using namespace sgpt;
using namespace sgpt::lesson12;

namespace {

void print_plans(const std::string& title, const Job& job, const Cluster& c, int top) {
  const std::vector<Plan> plans = plan(job, c);
  std::printf("\n## %s: %s (%.2fB parameters), T=%lld, %lld rows/step, %s, %d GPUs (%d per node, %.0f GB)\n",
              title.c_str(), job.cfg.name.c_str(), double(job.cfg.num_parameters()) / 1e9, (long long)job.seq_len,
              (long long)job.global_batch, job.precision.name.c_str(), c.world, c.gpus_per_node,
              c.memory_bytes / 1e9);
  std::printf("%-28s %9s %9s %7s %7s %8s %8s %8s\n", "layout", "mem (GB)", "step (s)", "MFU", "bubble",
              "tp comm", "pp comm", "dp comm");
  for (int i = 0; i < top && i < int(plans.size()); ++i) {
    const Plan& p = plans[size_t(i)];
    std::printf("%-28s %9.1f %9.3f %6.1f%% %6.1f%% %8.3f %8.3f %8.3f\n", p.layout.str().c_str(),
                double(p.memory.total()) / 1e9, p.time.total(), 100 * p.mfu, 100 * p.bubble, p.time.tp_comm,
                p.time.pp_comm, p.time.dp_comm);
  }
  std::printf("(%zu layouts fit of those enumerated)\n", plans.size());
}

std::vector<GridShape> grids(int n, const GPTConfig& cfg) {
  std::vector<GridShape> out;
  for (int tp = 1; tp <= n; ++tp)
    for (int pp = 1; pp * tp <= n; ++pp)
      if (n % (tp * pp) == 0 && cfg.n_head % tp == 0 && pp <= cfg.n_layer) out.push_back({n / (tp * pp), pp, tp});
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  return run_guarded(argv[0], [&] {
    std::string model = "micro";
    int64_t rows = 8, seq_len = 32, mb = 1;
    int steps = 3, top = 5;
    CLI::App app{"lesson12: 3D parallelism and a planner"};
    app.add_option("--model", model, "model preset for the CPU runs (untied)")->capture_default_str();
    app.add_option("--rows", rows, "global batch rows of the CPU runs")->capture_default_str();
    app.add_option("--seq-len", seq_len, "sequence length of the CPU runs")->capture_default_str();
    app.add_option("--micro-batch", mb, "rows per micro-batch of the CPU runs")->capture_default_str();
    app.add_option("--steps", steps, "timed steps per grid (after one warm-up step)")->capture_default_str();
    app.add_option("--top", top, "layouts to print per planner question")->capture_default_str();
    CLI11_PARSE(app, argc, argv);
    auto world_ptr = init_distributed(argc, argv);
    Communicator& world = *world_ptr;
    world.set_call_checks(false);
    const int n = world.size(), rank = world.rank();

    if (rank == 0) {
      std::printf("# Part 1: the planner (predictions only; nothing below ran)\n");
      auto job = [](const std::string& preset, int64_t T, int64_t gbs) {
        Job j;
        j.cfg = gpt_config(preset);
        j.cfg.tied_embeddings = false;
        j.seq_len = T;
        j.global_batch = gbs;
        j.precision = Precision::mixed();
        return j;
      };
      Cluster node;
      print_plans("GPT-2 124M on one node", job("d12", 1024, 512), node, top);
      Cluster c64 = node;
      c64.world = 64;
      print_plans("GPT-2 1.5B on 8 nodes", job("d48", 1024, 512), c64, top);
      Job big;
      big.cfg.name = "175b";
      big.cfg.n_layer = 96;
      big.cfg.n_head = 96;
      big.cfg.n_embd = 12288;
      big.cfg.max_seq_len = 2048;
      big.cfg.set_vocab(50257);
      big.cfg.tied_embeddings = false;
      big.seq_len = 2048;
      big.global_batch = 1536;
      big.precision = Precision::mixed();
      for (int w : {512, 1024}) {
        Cluster c = node;
        c.world = w;
        print_plans("175B-class on " + std::to_string(w / 8) + " nodes", big, c, top);
      }
      std::printf("\n# Part 2: %d CPU ranks (%s), model %s, f32, %lld rows x T=%lld, micro-batch %lld, median of %d "
                  "steps\n%-10s %4s %6s %11s %11s %11s %11s %10s\n",
                  n, backend_name(world.backend()), model.c_str(), (long long)rows, (long long)seq_len, (long long)mb,
                  steps, "grid", "ZeRO", "stage", "optim pred", "optim meas", "total pred", "total meas", "step (ms)");
    }
    GPTConfig cfg = gpt_config(model);
    cfg.tied_embeddings = false;
    Job job;
    job.cfg = cfg;
    job.seq_len = seq_len;
    job.global_batch = rows;
    job.precision = Precision::fp32();
    const Tensor x = testing::random_tokens(rows, seq_len, cfg.vocab_size, 1, "lesson12-driver-x");
    const Tensor y = testing::random_tokens(rows, seq_len, cfg.vocab_size, 1, "lesson12-driver-y");
    for (const GridShape& s : grids(n, cfg))
    for (int zero : {0, 1}) {
      if (rows % (s.dp * mb) || (zero == 1 && s.dp == 1)) continue;
      Grid g = make_grid(world, s);
      double measured = 0, predicted = 0, ms = 0, optim = 0, optim_pred = 0;
      {
        std::optional<ShardRange> shard;
        if (zero == 1) shard = zero1_shard(g, cfg);
        TPStage st(cfg, s.pp, g.coord.pp, *g.tp, 1234, DType::F32, AdamWConfig(), shard);
        MemoryTracker::instance().reset_peak();
        train_step_3d(g, st, x, y, mb, 1e-4);  // warm-up
        std::vector<double> times;
        for (int i = 0; i < steps; ++i) {
          world.barrier();
          Timer t;
          train_step_3d(g, st, x, y, mb, 1e-4);
          times.push_back(t.seconds());
        }
        ms = 1e3 * median(times);
        auto peak = [](MemCategory c) { return double(MemoryTracker::instance().stats(c).peak); };
        optim = peak(MemCategory::OptimizerState);
        measured = peak(MemCategory::Parameters) + peak(MemCategory::Gradients) + optim + peak(MemCategory::Activations);
        const MemoryBreakdown pred =
            predict_stage_memory(job, {s.dp, s.pp, s.tp, mb, zero, Recompute::None, Schedule::OneFOneB}, g.coord.pp);
        predicted = double(pred.total());
        optim_pred = double(pred.optimizer);
      }
      // One line per stage, from the stage's first rank (every rank of a stage holds the same;
      // under ZeRO-1 replica 0 holds the largest shard, the one the planner counts).
      Tensor mine = Tensor::from(std::vector<double>{optim_pred, optim, predicted, measured, ms}, {5});
      Tensor all = Tensor::zeros({5 * int64_t(n)}, DType::F64);
      world.all_gather(all, mine);
      if (rank == 0) {
        const std::vector<double> a = all.to_vector();
        for (int p = 0; p < s.pp; ++p) {
          const double* v = &a[size_t(5 * grid_rank(s, {0, p, 0}))];
          std::printf("%-10s %4d %6d %11.3f %11.3f %11.3f %11.3f %10.1f\n", s.str().c_str(), zero, p, v[0] / (1 << 20),
                      v[1] / (1 << 20), v[2] / (1 << 20), v[3] / (1 << 20), v[4]);
        }
      }
    }
    return 0;
  });
}
