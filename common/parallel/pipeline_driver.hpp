#pragma once
/// @file pipeline_driver.hpp
/// @brief The driver program of the pipeline lessons: runs a schedule on p ranks for several
/// micro-batch counts and prints the bubble formula, the measured bubble, the step time and each
/// rank's peak activation memory; writes the last step as a Chrome trace and an SVG timeline.
/// Header-only, so a lesson's driver links only its own library.

#include <CLI/CLI.hpp>

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "comm/communicator.hpp"
#include "comm/trace_gather.hpp"
#include "core/memory.hpp"
#include "core/testing.hpp"
#include "core/timer.hpp"
#include "core/trace.hpp"
#include "model/pipeline_schedule.hpp"
#include "parallel/pipeline_types.hpp"

namespace sgpt {

/// Runs the driver (command line: --model, --rows, --seq-len, --micro-batches, --steps, --trace,
/// --svg) with the lesson's `stage_spec` and `train_step`; `lesson` and `schedule` name them in the
/// output. Call it under mpirun -np p (one stage per rank). Returns the exit code.
inline int run_pipeline_driver(const std::string& lesson, const std::string& schedule, const StageSpecFn& stage_spec,
                               const PipelineStepFn& train_step, int argc, char** argv) {
  std::string model = "micro", trace_path, svg_path;
  int64_t rows = 4, seq_len = 64;
  std::vector<int> ms = {1, 2, 4, 8};
  int steps = 4;
  CLI::App app{lesson + ": " + schedule + " pipeline parallelism, one stage per rank"};
  app.add_option("--model", model, "model preset (its embeddings are untied for the pipeline)")->capture_default_str();
  app.add_option("--rows", rows, "rows per micro-batch (b)")->capture_default_str();
  app.add_option("--seq-len", seq_len, "sequence length T")->capture_default_str();
  app.add_option("--micro-batches", ms, "micro-batch counts m to run")->delimiter(',');
  app.add_option("--steps", steps, "timed steps per m (after one warm-up step)")->capture_default_str();
  app.add_option("--trace", trace_path, "write the last step of the largest m as Chrome trace JSON");
  app.add_option("--svg", svg_path, "write the last step of the largest m as an SVG timeline");
  CLI11_PARSE(app, argc, argv);

  auto world = init_distributed(argc, argv);
  Communicator& comm = *world;
  comm.set_call_checks(false);
  const int p = comm.size(), r = comm.rank();
  GPTConfig cfg = gpt_config(model);
  cfg.tied_embeddings = false;
  PipelineStage stage(cfg, stage_spec(cfg, p, r), 1234);
  const StageSpec& s = stage.spec();
  AdamW opt(stage.layout(), AdamWConfig{}, DType::F32, Device::CPU, s.param_begin, s.num_params());
  TraceRecorder& rec = TraceRecorder::global();

  if (r == 0)
    std::printf("# %s: %s, model %s (L=%d, C=%d), %d ranks (%s), b=%lld rows x T=%lld per micro-batch, "
                "median of %d steps\n# %2s %3s %14s %15s %10s   %s\n",
                lesson.c_str(), schedule.c_str(), model.c_str(), cfg.n_layer, cfg.n_embd, p, backend_name(comm.backend()), (long long)rows,
                (long long)seq_len, steps, "p", "m", "bubble formula", "bubble measured", "step (ms)",
                "peak activations per rank: MiB (micro-batches in flight)");
  std::vector<TraceEvent> last;
  for (int m : ms) {
    const Tensor x = testing::random_tokens(m * rows, seq_len, cfg.vocab_size, 1, "pipeline-driver-x");
    const Tensor y = testing::random_tokens(m * rows, seq_len, cfg.vocab_size, 1, "pipeline-driver-y");
    train_step(comm, stage, opt, x, y, m, 1e-4);  // warm-up: first-touch allocations
    std::vector<double> bubbles, times;
    MemoryTracker::instance().reset_peak();
    stage.reset_peak_in_flight();
    const double act0 = double(MemoryTracker::instance().stats(MemCategory::Activations).current);
    for (int i = 0; i < steps; ++i) {
      rec.clear();
      rec.set_enabled(true);
      align_trace_clocks(comm, rec);
      Timer t;
      train_step(comm, stage, opt, x, y, m, 1e-4);
      const double secs = t.seconds();
      rec.set_enabled(false);
      std::vector<TraceEvent> ev = gather_trace(comm, rec);
      if (r == 0) {
        bubbles.push_back(timeline_from_trace(ev, p).bubble());
        times.push_back(secs);
        last = std::move(ev);
      }
    }
    // Each rank's activation peak (its own tracker) and micro-batches in flight, to rank 0.
    const double peak = double(MemoryTracker::instance().stats(MemCategory::Activations).peak) - act0;
    Tensor mine = Tensor::from(std::vector<double>{peak, double(stage.peak_in_flight())}, {2});
    Tensor all = Tensor::zeros({2 * p}, DType::F64);
    comm.all_gather(all, mine);
    if (r == 0) {
      const std::vector<double> a = all.to_vector();
      std::string mem;
      for (int k = 0; k < p; ++k) {
        char buf[64];
        std::snprintf(buf, sizeof buf, "%s%.2f (%d)", k ? ", " : "", a[2 * k] / (1 << 20), int(a[2 * k + 1]));
        mem += buf;
      }
      std::printf("  %2d %3d %14.3f %15.3f %10.1f   %s\n", p, m, double(p - 1) / (m + p - 1), median(bubbles),
                  1e3 * median(times), mem.c_str());
    }
  }
  if (r == 0 && !trace_path.empty()) {
    std::ofstream(trace_path) << trace_to_json(last);
    std::printf("wrote %s (open it in https://ui.perfetto.dev)\n", trace_path.c_str());
  }
  if (r == 0 && !svg_path.empty()) {
    const PipelineTimeline t = timeline_from_trace(last, p);
    std::ofstream(svg_path) << pipeline_timeline_svg(t, schedule + ", p = " + std::to_string(p) + ", m = " +
                                                            std::to_string(ms.back()) + " (measured, CPU ranks)",
                                                     "microseconds");
    std::printf("wrote %s\n", svg_path.c_str());
  }
  return 0;
}

}  // namespace sgpt
