// scalegpt-train --plan: lesson 12's planner asked about the run the other flags describe (model,
// sequence length, global batch, precision) on --plan-gpus GPUs, without training. It prints the
// planner's fastest layouts that fit, with their predicted memory per GPU, step time, MFU and
// pipeline bubble, and where the layout of the command line (--dp/--pp/--tp/--micro-batches/
// --schedule) stands among them. The cluster is lesson 12's default (H100-like nodes: 989 TFLOP/s
// dense bf16 peak, 400 achieved, NVLink 450 GB/s, InfiniBand 50 GB/s) with --plan-gpus-per-node and
// --plan-memory-gb. In the student release an unfinished planner task stops here with its name.

#include <cstdio>
#include <string>
#include <vector>

#include "core/check.hpp"
#include "planner.hpp"  // lesson 12
#include "strategy.hpp"

namespace sgpt::train {

int print_plan(const PlanRequest& r) {
  lesson12::Job job;
  job.cfg = r.cfg;
  job.cfg.tied_embeddings = false;  // the pipeline needs its own head matrix: the planner plans untied models
  job.seq_len = r.seq_len;
  job.global_batch = r.global_batch;
  job.precision = r.dtype == "f32" ? lesson12::Precision::fp32() : lesson12::Precision::mixed();
  lesson12::Cluster c;
  c.world = r.gpus;
  c.gpus_per_node = r.gpus_per_node;
  c.memory_bytes = r.memory_gb * 1e9;
  const std::vector<lesson12::Plan> plans = lesson12::plan(job, c);

  std::printf("plan: model %s (%.4gM parameters, untied, V=%d), T=%lld, global batch %lld rows, %s, on %d GPUs (%d per "
              "node, %.0f GB each; %.0f TFLOP/s achieved of %.0f peak)\n",
              job.cfg.name.c_str(), double(job.cfg.num_parameters()) / 1e6, job.cfg.vocab_size,
              (long long)job.seq_len,
              (long long)job.global_batch, job.precision.name.c_str(), c.world, c.gpus_per_node, c.memory_bytes / 1e9,
              c.achieved_flops / 1e12, c.peak_flops / 1e12);
  std::printf("%-4s %-28s %10s %11s %7s %7s\n", "rank", "layout", "mem (GB)", "step (ms)", "MFU", "bubble");
  auto row = [](const std::string& rank, const lesson12::Plan& p) {
    std::printf("%-4s %-28s %10.3f %11.3f %6.2f%% %6.1f%%\n", rank.c_str(), p.layout.str().c_str(),
                double(p.memory.total()) / 1e9, 1e3 * p.time.total(), 100 * p.mfu, 100 * p.bubble);
  };
  for (size_t i = 0; i < plans.size() && i < size_t(r.top); ++i) row(std::to_string(i + 1), plans[i]);
  std::printf("(%zu layouts fit in memory)\n", plans.size());
  std::fflush(stdout);  // the table before an error (stderr)
  // The layout of the command line: its rank among those that fit, or why it cannot run.
  if (r.given) lesson12::check_layout(job, c.world, *r.given);  // names the problem: dp*pp*tp, divisibility, ...
  SGPT_CHECK(!plans.empty(), "--plan: no layout of model '", job.cfg.name, "' runs on ", r.gpus, " GPUs of ",
             r.memory_gb, " GB (dp*pp*tp must be the GPUs, tp divide the ", job.cfg.n_head, " heads, pp at most the ",
             job.cfg.n_layer, " blocks, dp*micro-batch divide the global batch of ", job.global_batch,
             " rows, and one fit in memory): try other --plan-gpus, --batch or --seq-len");
  if (!r.given) return 0;
  const lesson12::Layout& l = *r.given;
  lesson12::Plan mine;
  mine.layout = l;
  mine.memory = lesson12::predict_memory(job, l);
  mine.time = lesson12::predict_step_time(job, c, l);
  const double flops = training_flops_per_token(job.cfg, job.seq_len) * double(job.global_batch * job.seq_len);
  mine.mfu = flops / (mine.time.total() * c.world * c.peak_flops);
  mine.bubble = mine.time.bubble / mine.time.total();
  if (double(mine.memory.total()) > c.memory_bytes) {
    std::printf("your layout does not fit (%.3f GB > %.0f GB):\n", double(mine.memory.total()) / 1e9, c.memory_bytes / 1e9);
    row("-", mine);
    return 0;
  }
  size_t faster = 0;
  for (const lesson12::Plan& p : plans) faster += p.time.total() < mine.time.total();
  std::printf("your layout (%zu of the layouts that fit are faster):\n", faster);
  row(std::to_string(faster + 1), mine);
  return 0;
}

}  // namespace sgpt::train
