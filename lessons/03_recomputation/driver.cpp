// Lesson 03 driver: peak activation memory and step time without recomputation, with selective
// recomputation and with full recomputation, side by side; then the peak against depth.
//
//   lesson03-recomputation [--model micro] [--batch 4] [--seq 128] [--svg memory.svg]

#include <CLI/CLI.hpp>
#include <cstdio>
#include <fstream>

#include "core/memory.hpp"
#include "core/main.hpp"
#include "core/testing.hpp"
#include "core/plot.hpp"
#include "core/timer.hpp"
#include "recompute.hpp"

using namespace sgpt;
using namespace sgpt::lesson03;

namespace {

Tensor random_tokens(int64_t B, int64_t T, int V, uint64_t seed) {
  return testing::random_tokens(B, T, V, seed, "lesson03-driver");
}

struct Result {
  double peak_mib, ms;
  int64_t block_forwards, attention_recomputes;
};

Result measure(const GPTConfig& cfg, Recompute mode, const Tensor& x, const Tensor& y, int repeats) {
  GPT m(cfg, 1);
  RecomputeGPT rg(m, mode);
  const size_t base = MemoryTracker::instance().stats(MemCategory::Activations).current;
  MemoryTracker::instance().reset_peak();
  std::vector<double> times;
  for (int i = 0; i < repeats; ++i) {
    Timer t;
    rg.forward(x, y);
    rg.backward();
    times.push_back(t.seconds());
  }
  const double peak = double(MemoryTracker::instance().stats(MemCategory::Activations).peak - base) / (1 << 20);
  return {peak, median(times) * 1e3, rg.block_forwards() / repeats, rg.attention_recomputes() / repeats};
}

int run(int argc, char** argv) {
  std::string model = "micro", svg;
  int64_t B = 4, T = 128;
  int max_layers = 8;
  CLI::App app{"Lesson 03: activation recomputation"};
  app.add_option("--model", model, "model preset")->capture_default_str();
  app.add_option("--batch", B, "batch size B")->capture_default_str();
  app.add_option("--seq", T, "sequence length T")->capture_default_str();
  app.add_option("--max-layers", max_layers, "deepest model of the depth sweep")->capture_default_str();
  app.add_option("--svg", svg, "write peak activation memory vs depth to this SVG file");
  CLI11_PARSE(app, argc, argv);
  const GPTConfig cfg = gpt_config(model);
  Tensor x = random_tokens(B, T, cfg.vocab_size, 1), y = random_tokens(B, T, cfg.vocab_size, 2);
  const Recompute modes[] = {Recompute::None, Recompute::Selective, Recompute::Full};

  std::printf("model %s (L=%d, C=%d, NH=%d), B=%lld, T=%lld, f32\n", model.c_str(), cfg.n_layer, cfg.n_embd,
              cfg.n_head, (long long)B, (long long)T);
  std::printf("%-10s %14s %14s %10s %9s %15s %12s\n", "recompute", "predicted MiB", "measured MiB", "step ms",
              "vs none", "block forwards", "att recomp.");
  double none_ms = 0;
  for (Recompute mode : modes) {
    const Result r = measure(cfg, mode, x, y, 5);
    if (mode == Recompute::None) none_ms = r.ms;
    std::printf("%-10s %14.3f %14.3f %10.1f %8.2fx %15lld %12lld\n", recompute_name(mode),
                double(predicted_activation_bytes(cfg, B, T, mode, DType::F32)) / (1 << 20), r.peak_mib, r.ms,
                r.ms / none_ms, (long long)r.block_forwards, (long long)r.attention_recomputes);
  }

  std::printf("\npeak activation memory (MiB) against depth L:\n%4s %10s %10s %10s\n", "L", "none", "selective", "full");
  // Measured peaks as dots, the formula (task 3) as a thin line of the same colour underneath.
  std::vector<PlotSeries> series = {{"none: formula", {}, {}, "#f4a6a6", false},
                                    {"selective: formula", {}, {}, "#ffd0a0", false},
                                    {"full: formula", {}, {}, "#a8dca8", false},
                                    {"none: measured", {}, {}, "#d62728", true},
                                    {"selective: measured", {}, {}, "#ff7f0e", true},
                                    {"full: measured", {}, {}, "#2ca02c", true}};
  for (int L = 1; L <= max_layers; L *= 2) {
    GPTConfig c = cfg;
    c.n_layer = L;
    std::printf("%4d", L);
    for (int i = 0; i < 3; ++i) {
      const double mib = measure(c, modes[i], x, y, 2).peak_mib;  // two steps: the steady-state peak
      std::printf(" %10.3f", mib);
      series[3 + i].x.push_back(L);
      series[3 + i].y.push_back(mib);
      series[i].x.push_back(L);
      series[i].y.push_back(double(predicted_activation_bytes(c, B, T, modes[i], DType::F32)) / (1 << 20));
    }
    std::printf("\n");
  }
  if (!svg.empty()) {
    std::ofstream(svg) << line_chart_svg("Lesson 03: " + model + ", B=" + std::to_string(B) + ", T=" + std::to_string(T),
                                         "layers L", "peak activation memory (MiB)", series);
    std::printf("wrote %s\n", svg.c_str());
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return sgpt::run_guarded(argv[0], [&] { return run(argc, argv); });
}
