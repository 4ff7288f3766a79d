// Lesson 02 driver: one global batch in micro-batches of every size that divides it. Prints the
// number of micro-batches k, the peak activation memory, the step time, the loss and how far the
// accumulated gradient is from the one-batch gradient.
//
//   lesson02-grad-accumulation [--model micro] [--global-batch 16] [--seq 64] [--svg memory.svg]

#include <CLI/CLI.hpp>
#include <cmath>
#include <cstdio>
#include <fstream>

#include "core/memory.hpp"
#include "core/main.hpp"
#include "core/testing.hpp"
#include "core/plot.hpp"
#include "core/timer.hpp"
#include "grad_accum.hpp"

using namespace sgpt;
using namespace sgpt::lesson02;

namespace {

Tensor random_tokens(int64_t B, int64_t T, int V, uint64_t seed) {
  return testing::random_tokens(B, T, V, seed, "lesson02-driver");
}

int run(int argc, char** argv) {
  std::string model = "micro", svg;
  int64_t gbs = 16, T = 64;
  CLI::App app{"Lesson 02: gradient accumulation"};
  app.add_option("--model", model, "model preset")->capture_default_str();
  app.add_option("--global-batch", gbs, "global batch (rows per optimizer step)")->capture_default_str();
  app.add_option("--seq", T, "sequence length T")->capture_default_str();
  app.add_option("--svg", svg, "write peak activation memory vs micro-batch size to this SVG file");
  CLI11_PARSE(app, argc, argv);
  const GPTConfig cfg = gpt_config(model);
  Tensor x = random_tokens(gbs, T, cfg.vocab_size, 1), y = random_tokens(gbs, T, cfg.vocab_size, 2);

  std::printf("model %s, global batch %lld x T=%lld, f32\n", model.c_str(), (long long)gbs, (long long)T);
  std::printf("%6s %4s %14s %10s %10s %16s\n", "mbs", "k", "peak act MiB", "step ms", "loss", "max|g - g_full|");
  std::vector<double> ref;
  PlotSeries mem{"peak activations (measured)", {}, {}, "#1f77b4", true};
  for (int64_t mbs = gbs; mbs >= 1; mbs /= 2) {
    if (gbs % mbs) continue;
    GPT m(cfg, 42);
    const size_t base = MemoryTracker::instance().stats(MemCategory::Activations).current;
    MemoryTracker::instance().reset_peak();
    Timer t;
    const double loss = accumulate_gradients(m, x, y, mbs);
    const double ms = t.seconds() * 1e3;
    const double act = double(MemoryTracker::instance().stats(MemCategory::Activations).peak - base) / (1 << 20);
    const std::vector<double> g = m.grads().to_vector();
    if (ref.empty()) ref = g;
    double diff = 0;
    for (size_t i = 0; i < g.size(); ++i) diff = std::max(diff, std::abs(g[i] - ref[i]));
    std::printf("%6lld %4lld %14.3f %10.1f %10.6f %16.3e\n", (long long)mbs, (long long)grad_accum_steps(gbs, mbs),
                act, ms, loss, diff);
    mem.x.push_back(double(mbs));
    mem.y.push_back(act);
  }
  std::printf("(f32: the gradients differ only by rounding, from summing in another order)\n");
  try {
    grad_accum_steps(gbs, gbs > 3 ? 3 : gbs + 1);
  } catch (const NotImplemented&) {
    throw;
  } catch (const Error& e) {
    std::printf("\nan indivisible global batch is an error:\n  %s\n", e.what());
  }
  if (!svg.empty()) {
    std::ofstream(svg) << line_chart_svg("Lesson 02: " + model + ", global batch " + std::to_string(gbs),
                                         "micro-batch size (rows)", "peak activation memory (MiB)", {mem});
    std::printf("wrote %s\n", svg.c_str());
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return sgpt::run_guarded(argv[0], [&] { return run(argc, argv); });
}
