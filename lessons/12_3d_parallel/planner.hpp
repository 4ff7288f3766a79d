#pragma once
/// @file planner.hpp
/// @brief Lesson 12, task 3: a planner that picks a 3D layout before anyone spends GPU hours.
///
/// For a job (model, sequence length, global batch, precision) on a cluster (GPUs, GPUs per
/// node, memory, FLOP/s, links) it enumerates layouts (dp, pp, tp, micro-batch, ZeRO stage,
/// recomputation, schedule), predicts each one's memory per rank and step time, drops those that
/// do not fit, and ranks the rest, fastest first.
///
/// The model of a layout. Ψ_r = tp_stage_numel(cfg, stage r, tp) elements on a rank of stage r;
/// (spec_r = plan_stage(cfg, pp, r)), m = gbs / (dp · mb) micro-batches per replica; b = mb rows of T positions each.
///
/// Memory of a rank of stage r (bytes; p, g, o, a = Precision's bytes per element; ⌈Ψ/d⌉ for a
/// shard, as shard_range gives the first ranks one element more):
///
///     ZeRO 0: pΨ + gΨ + oΨ     1: pΨ + gΨ + o⌈Ψ/d⌉     2: pΨ + (g + o)⌈Ψ/d⌉     3: (p + g + o)⌈Ψ/d⌉
///     k = micro-batches in flight: m (GPipe), min(pp − r, m) (1F1B)
///     activations, parts = stage_activation_parts(cfg, spec_r, tp, b, T, a):
///         no recomputation:   k · (outer + layers · block_cache) + backward
///         full recomputation: k · (outer + layers · block_input) + block_cache + backward
///
/// Step time (seconds), every term on the critical path (nothing overlapped):
///
///     compute = F · gbs · T · (4/3 with full recomputation) / (world · achieved_flops)
///               F = training_flops_per_token(cfg, T)
///     bubble  = compute · (pp − 1) / m                                  (GPipe and 1F1B alike)
///     tp_comm = (m + pp − 1) · ⌈L/pp⌉ · n · all_reduce_time(b·T·C·a, tp)   n = 4, or 6 recomputing
///     pp_comm = (m + pp − 1) · 2 · p2p_time(b·T·C·a)                    (when pp > 1)
///     dp_comm = all_reduce_time(g · Ψ_max, dp), × 1.5 with ZeRO 3       (when dp > 1)
///
/// with Ψ_max = the largest Ψ_r, and each group's link: inside a node when the group's ranks all
/// fit in one (tp: tp <= gpus_per_node; pp: pp·tp <= gpus_per_node; dp: world <= gpus_per_node;
/// the grid of task 1 puts tensor ranks adjacent), else between nodes. MFU = F·gbs·T /
/// (step time · world · peak_flops).

#include <cstdint>
#include <string>
#include <vector>

#include "model/config.hpp"
#include "model/pipeline_stage.hpp"

namespace sgpt::lesson12 {

/// Bytes per element of each kind of state.
struct Precision {
  std::string name = "fp32";  ///< for printing
  int64_t param = 4;          ///< p: parameters (the working copy)
  int64_t grad = 4;           ///< g: gradients
  int64_t optim = 8;          ///< o: optimizer state (AdamW m and v; + the fp32 master copy in mixed precision)
  int64_t act = 4;            ///< a: activations
  /// fp32 everywhere: 4 + 4 + 8 = 16 bytes per parameter.
  static Precision fp32() { return {"fp32", 4, 4, 8, 4}; }
  /// bf16 mixed precision: 2 + 2 + 12 (fp32 master, m, v) = 16 bytes per parameter.
  static Precision mixed() { return {"bf16-mixed", 2, 2, 12, 2}; }
  /// f64, what the tests run: 8 + 8 + 16.
  static Precision f64() { return {"f64", 8, 8, 16, 8}; }
};

/// What is trained.
struct Job {
  GPTConfig cfg;                ///< the model (untied embeddings: the pipeline needs them)
  int64_t seq_len = 1024;       ///< T
  int64_t global_batch = 512;   ///< gbs, rows per optimizer step
  Precision precision;          ///< bytes per element
};

/// What it runs on.
struct Cluster {
  int world = 8;                   ///< GPUs (ranks)
  int gpus_per_node = 8;           ///< GPUs that share a node's fast links
  double memory_bytes = 80e9;      ///< memory per GPU
  double peak_flops = 989e12;      ///< dense peak FLOP/s per GPU, for MFU (H100 SXM bf16)
  double achieved_flops = 400e12;  ///< FLOP/s a GPU achieves on the model's matmuls
  double intra_bw = 450e9;         ///< bytes/s per direction inside a node (NVLink)
  double inter_bw = 50e9;          ///< bytes/s per direction between nodes (400 Gb/s InfiniBand)
  double intra_alpha = 5e-6;       ///< latency of one message inside a node, seconds
  double inter_alpha = 15e-6;      ///< latency of one message between nodes
};

/// Pipeline schedules.
enum class Schedule { GPipe, OneFOneB };
/// Activation recomputation.
enum class Recompute { None, Full };

/// One layout.
struct Layout {
  int dp = 1, pp = 1, tp = 1;             ///< the grid (dp · pp · tp = world)
  int64_t micro_batch = 1;                ///< rows per micro-batch
  int zero = 0;                           ///< ZeRO stage across the dp replicas, 0-3
  Recompute recompute = Recompute::None;  ///< activation recomputation
  Schedule schedule = Schedule::OneFOneB; ///< pipeline schedule
  /// "dp2 pp2 tp2 mb1 z0 1f1b" (+ " rc" with recomputation).
  std::string str() const;
};

/// Bytes per rank by category.
struct MemoryBreakdown {
  int64_t params = 0;       ///< parameters
  int64_t grads = 0;        ///< gradients
  int64_t optimizer = 0;    ///< optimizer state
  int64_t activations = 0;  ///< activations at their peak
  /// The sum.
  int64_t total() const { return params + grads + optimizer + activations; }
};

/// Seconds per step by term (see the file comment).
struct StepTime {
  double compute = 0, bubble = 0, tp_comm = 0, pp_comm = 0, dp_comm = 0;  ///< the terms
  /// The sum.
  double total() const { return compute + bubble + tp_comm + pp_comm + dp_comm; }
};

/// A layout and its predictions.
struct Plan {
  Layout layout;           ///< the layout
  MemoryBreakdown memory;  ///< of the rank that needs the most (predict_memory)
  StepTime time;           ///< predict_step_time
  double mfu = 0;          ///< model FLOPs utilisation
  double bubble = 0;       ///< bubble fraction of the step, time.bubble / time.total()
};

// ---- given ---------------------------------------------------------------------------------------

/// Throws sgpt::Error naming the problem unless the layout can run the job on `world` ranks:
/// dp·pp·tp = world, tp divides the heads and 4C, 1 <= pp <= layers, mb >= 1 and dp·mb divides
/// gbs, ZeRO stage in 0..3, untied embeddings.
void check_layout(const Job& job, int world, const Layout& l);
/// Where stage r of pp sits, blocks only (first_layer, end_layer: pipeline_stage_spec's split;
/// the parameter range is left 0): what tp_stage_numel and stage_activation_parts read. Cheap,
/// for enumerating thousands of layouts of a large model (pipeline_stage_spec builds the model's
/// whole parameter layout each time).
StageSpec plan_stage(const GPTConfig& cfg, int pp, int r);
/// Seconds of a ring all-reduce of `bytes` over n ranks: 2(n−1)/n · bytes / bw + 2(n−1)·alpha (0 for n = 1).
double all_reduce_time(double bytes, int n, double bw, double alpha);
/// Seconds of one point-to-point message: alpha + bytes / bw.
double p2p_time(double bytes, double bw, double alpha);

// ---- task 3 --------------------------------------------------------------------------------------

/// Task 3a: the memory of one rank of pipeline stage `stage` (formulas of the file comment).
/// Calls check_layout(job, l.dp·l.pp·l.tp, l) first.
MemoryBreakdown predict_stage_memory(const Job& job, const Layout& l, int stage);
/// Task 3b: the memory of the rank that needs the most: the stage with the largest total.
MemoryBreakdown predict_memory(const Job& job, const Layout& l);
/// Task 3c: the step time (formulas of the file comment). Calls check_layout(job, c.world, l).
StepTime predict_step_time(const Job& job, const Cluster& c, const Layout& l);
/// Task 3d: every layout that runs on c.world ranks (check_layout passes) with micro-batches of
/// 1, 2, 4, ... rows, ZeRO 0-3, recomputation off and full, both schedules; those whose
/// predict_memory total is within c.memory_bytes, ranked by step time (ties: less memory first).
std::vector<Plan> plan(const Job& job, const Cluster& c);

}  // namespace sgpt::lesson12
