// Lesson 01 driver: predicted vs measured parameters, memory and FLOPs, then a short training run.
//
//   lesson01-training-step [--model micro] [--batch 4] [--seq 64] [--steps 60] [--svg loss.svg]

#include <CLI/CLI.hpp>
#include <cstdio>
#include <fstream>

#include "core/memory.hpp"
#include "core/main.hpp"
#include "core/plot.hpp"
#include "core/timer.hpp"
#include "data/synthetic.hpp"
#include "data/loader.hpp"
#include "data/token_file.hpp"
#include "model/generate.hpp"
#include "training_step.hpp"

using namespace sgpt;
using namespace sgpt::lesson01;

namespace {

double mib(int64_t bytes) { return double(bytes) / (1024.0 * 1024.0); }

int run(int argc, char** argv) {
  std::string model = "micro", svg;
  int64_t B = 4, T = 64, steps = 60;
  CLI::App app{"Lesson 01: the anatomy of a training step"};
  app.add_option("--model", model, "model preset")->capture_default_str();
  app.add_option("--batch", B, "batch size B")->capture_default_str();
  app.add_option("--seq", T, "sequence length T")->capture_default_str();
  app.add_option("--steps", steps, "training steps")->capture_default_str();
  app.add_option("--svg", svg, "write the loss curve to this SVG file");
  CLI11_PARSE(app, argc, argv);
  const GPTConfig cfg = gpt_config(model);

  std::printf("== parameters: your count_parameters vs the real buffers ==\n");
  std::printf("%-8s %14s %14s %s\n", "model", "predicted", "layout", "");
  for (const std::string& name : gpt_config_names()) {
    const GPTConfig c = gpt_config(name);
    const int64_t mine = count_parameters(c).total, real = ParameterLayout(c).numel();
    std::printf("%-8s %14lld %14lld %s\n", name.c_str(), (long long)mine, (long long)real, mine == real ? "ok" : "DIFFERENT");
  }

  std::printf("\n== memory of one step: model '%s', B=%lld, T=%lld, f32 ==\n", model.c_str(), (long long)B, (long long)T);
  auto& tracker = MemoryTracker::instance();
  GPT gpt(cfg, 1337);
  Optimizer opt(gpt.layout(), AdamWConfig{}, DType::F32);
  const std::string text = synthetic_text(1, 200000);
  TokenFile tokens(std::vector<int32_t>(text.begin(), text.end()), 256, "synthetic_text");
  DataLoader loader(tokens, B, T);
  Tensor x, y;
  loader.next(x, y);
  tracker.reset_peak();
  TrainConfig tc;
  tc.max_lr = 3e-3;
  tc.min_lr = 3e-4;
  tc.warmup = std::max<int64_t>(1, steps / 10);
  tc.total_steps = steps;
  Timer first;
  StepStats s = train_step(gpt, opt, x, y, 0, tc);
  const double first_seconds = first.seconds();
  const MemoryEstimate e = estimate_memory(cfg, B, T, DType::F32);
  struct Row {
    const char* name;
    int64_t predicted;
    MemCategory cat;
  };
  std::printf("%-16s %12s %12s\n", "category", "predicted", "measured");
  for (const Row& r : {Row{"parameters", e.parameters, MemCategory::Parameters},
                       Row{"gradients", e.gradients, MemCategory::Gradients},
                       Row{"optimizer state", e.optimizer_state, MemCategory::OptimizerState},
                       Row{"activations", e.activations, MemCategory::Activations}}) {
    const int64_t measured = int64_t(tracker.stats(r.cat).peak);
    std::printf("%-16s %9.3f MiB %9.3f MiB %s\n", r.name, mib(r.predicted), mib(measured),
                r.predicted == measured ? "ok" : "DIFFERENT");
  }

  const double peak = sgpt::measure_peak_flops(Device::CPU);  // best of many short GEMMs (model/generate.hpp)
  std::printf("\n== FLOPs ==\nflops/token %.4g (6N = %.4g, attention %.4g)\n", flops_per_token(cfg, T),
              6.0 * double(count_parameters(cfg).total), flops_per_token(cfg, T) - 6.0 * double(count_parameters(cfg).total));
  std::printf("peak (best of many short 512^3 and 1024^3 f32 GEMMs on this machine): %.2f GFLOP/s\n", peak / 1e9);

  std::printf("\n== training %lld steps ==\n", (long long)steps);
  std::printf("step %4d  loss %.4f  norm %.3f  lr %.2e  %.1f ms\n", 0, s.loss, s.grad_norm, s.lr, first_seconds * 1e3);
  PlotSeries curve{"train loss", {0.0}, {s.loss}};
  std::vector<double> times;
  for (int64_t step = 1; step < steps; ++step) {
    loader.next(x, y);
    Timer t;
    s = train_step(gpt, opt, x, y, step, tc);
    times.push_back(t.seconds());
    curve.x.push_back(double(step));
    curve.y.push_back(s.loss);
    if (step % 10 == 0 || step == steps - 1)
      std::printf("step %4lld  loss %.4f  norm %.3f  lr %.2e  %.1f ms\n", (long long)step, s.loss, s.grad_norm, s.lr,
                  times.back() * 1e3);
  }
  const double step_s = median(times);
  std::printf("median step %.1f ms, %.0f tokens/s, MFU %.1f%% of the GEMM peak\n", step_s * 1e3, double(B * T) / step_s,
              100.0 * mfu(cfg, B, T, step_s, peak));
  if (!svg.empty()) {
    std::ofstream(svg) << line_chart_svg("Lesson 01: " + model + " on synthetic text", "step", "loss", {curve});
    std::printf("wrote %s\n", svg.c_str());
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return sgpt::run_guarded(argv[0], [&] { return run(argc, argv); });
}
