// Lesson 05 driver: the same model trained with four recipes (f32; bf16 with fp32 master; fp16 with
// fp32 master and dynamic loss scaling; fp16 without scaling), their loss curves in one chart, the
// gradients that fp16 loses without scaling, and the memory of each recipe from the tracker.
//
//   lesson05-mixed-precision [--model micro] [--steps 60] [--batch 8] [--seq 64] [--lr 1e-3] [--svg loss.svg]

#include <CLI/CLI.hpp>
#include <cmath>
#include <cstdio>
#include <fstream>

#include "core/main.hpp"
#include "core/memory.hpp"
#include "core/plot.hpp"
#include "core/testing.hpp"
#include "core/timer.hpp"
#include "data/loader.hpp"
#include "data/synthetic.hpp"
#include "data/token_file.hpp"
#include "data/tokenizer.hpp"
#include "mixed_precision.hpp"

using namespace sgpt;
using namespace sgpt::lesson05;

namespace {

struct Run {
  const char* label;
  Recipe recipe;
  const char* color;
};

Recipe make(Precision p, bool accum, bool scaling) {
  Recipe r;
  r.precision = p;
  r.fp32_grad_accum = accum;
  r.loss_scaling = scaling;
  return r;
}

int64_t cur(MemCategory c) { return static_cast<int64_t>(MemoryTracker::instance().stats(c).current); }

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

int run(int argc, char** argv) {
  std::string model = "micro", svg;
  int64_t steps = 60, B = 8, T = 64;
  double lr = 1e-3;
  CLI::App app{"Lesson 05: mixed precision"};
  app.add_option("--model", model, "model preset")->capture_default_str();
  app.add_option("--steps", steps, "optimizer steps per recipe")->capture_default_str();
  app.add_option("--batch", B, "rows per step")->capture_default_str();
  app.add_option("--seq", T, "sequence length T")->capture_default_str();
  app.add_option("--lr", lr, "learning rate (constant)")->capture_default_str();
  app.add_option("--svg", svg, "write the loss curves to this SVG file");
  CLI11_PARSE(app, argc, argv);
  const GPTConfig cfg = gpt_config(model);
  SGPT_CHECK(T <= cfg.max_seq_len, "--seq ", T, " is longer than the context ", cfg.max_seq_len);

  // ---- 1. the same run in four recipes ------------------------------------------------------------------
  ByteTokenizer tok;
  const TokenFile data(tok.encode(synthetic_text(5, 1 << 20)), 256, "<synthetic>");
  const std::vector<Run> runs = {{"f32", make(Precision::F32, false, false), "#1f77b4"},
                                 {"bf16 + fp32 master", make(Precision::BF16, false, false), "#ff7f0e"},
                                 {"fp16 + master + loss scaling", make(Precision::FP16, false, true), "#2ca02c"},
                                 {"fp16 + master, no scaling", make(Precision::FP16, false, false), "#d62728"}};
  std::printf("== model %s, batch %lld x %lld tokens of synthetic text, %lld steps, lr %g ==\n", model.c_str(),
              (long long)B, (long long)T, (long long)steps, lr);
  std::printf("%-30s %9s %9s %9s %9s %9s %8s %8s\n", "recipe", "loss@0", "loss@mid", "loss@end", "mean|d|", "max|d|",
              "skipped", "step ms");
  std::vector<PlotSeries> curves;
  std::vector<double> ref;
  Tensor x = Tensor::empty({B, T}, DType::I32), y = Tensor::empty({B, T}, DType::I32);
  for (const Run& r : runs) {
    MixedPrecisionTrainer tr(cfg, 42, r.recipe, AdamWConfig{});
    DataLoader loader(data, B, T);
    PlotSeries c{r.label, {}, {}, r.color};
    std::vector<double> ms;
    for (int64_t s = 0; s < steps; ++s) {
      loader.next(x, y);
      Timer t;
      const StepResult res = tr.step(x, y, B, lr, 1.0);
      ms.push_back(t.seconds() * 1e3);
      c.x.push_back(double(s));
      c.y.push_back(res.loss);
    }
    if (ref.empty()) ref = c.y;
    double dmax = 0, dsum = 0;
    for (size_t i = 0; i < ref.size(); ++i) {
      dmax = std::max(dmax, std::abs(c.y[i] - ref[i]));
      dsum += std::abs(c.y[i] - ref[i]);
    }
    std::printf("%-30s %9.4f %9.4f %9.4f %9.4f %9.4f %8lld %8.1f\n", r.label, c.y.front(), c.y[c.y.size() / 2],
                c.y.back(), dsum / double(ref.size()), dmax, (long long)tr.scaler().skipped_steps(), median(ms));
    curves.push_back(std::move(c));
  }
  std::printf("(|d|: the loss difference from the f32 run at the same step, mean and largest over the steps;\n"
              " skipped: steps the loss scaler rejected for an inf/NaN gradient)\n");

  // ---- 2. what fp16 loses without scaling: a model that has memorised its batch ---------------------------
  {
    const GPTConfig nano = gpt_config("nano");
    MixedPrecisionTrainer pre(nano, 9, make(Precision::F32, false, false), AdamWConfig{});
    Tensor xs = testing::random_tokens(2, 8, nano.vocab_size, 1, "lesson05-driver");
    Tensor ys = testing::random_tokens(2, 8, nano.vocab_size, 2, "lesson05-driver");
    double loss = 0;
    for (int i = 0; i < 80; ++i) loss = pre.step(xs, ys, 2, 1e-2, 1.0).loss;
    pre.step(xs, ys, 2, 0.0, 0.0);
    const std::vector<double> g32 = pre.model().grads().to_vector();
    std::printf("\n== small gradients: nano model after memorising 2 x 8 tokens (loss %.5f) ==\n", loss);
    for (bool scaling : {false, true}) {
      MixedPrecisionTrainer tr(nano, 9, make(Precision::FP16, false, scaling), AdamWConfig{});
      tr.master().copy_from(pre.master());
      cast_into(tr.model().params(), tr.master());
      const StepResult res = tr.step(xs, ys, 2, 0.0, 0.0);
      const std::vector<double> g = tr.model().grads().to_vector();
      int64_t nonzero = 0, flushed = 0, tiny = 0;
      for (size_t i = 0; i < g.size(); ++i) {
        if (g32[i] == 0) continue;
        ++nonzero;
        flushed += g[i] == 0;
        tiny += std::abs(g32[i]) < std::ldexp(1.0, -14);
      }
      std::printf("fp16 %-16s loss scale %-8g gradients below 2^-14 in f32: %5.1f%%   flushed to 0 in fp16: %5.1f%%\n",
                  scaling ? "with scaling" : "without scaling", res.loss_scale, 100.0 * tiny / nonzero,
                  100.0 * flushed / nonzero);
    }
  }

  // ---- 3. memory per recipe, measured ----------------------------------------------------------------------------
  std::printf("\n== model-state memory of %s (%lld parameters), from the tracker ==\n", model.c_str(),
              (long long)cfg.num_parameters());
  std::printf("%-34s %12s %12s %12s %12s %9s\n", "recipe", "parameters", "gradients", "optimizer", "total MiB",
              "B/param");
  const std::vector<std::pair<const char*, Recipe>> recipes = {
      {"f32", make(Precision::F32, false, false)},
      {"bf16 + fp32 master", make(Precision::BF16, false, false)},
      {"bf16 + fp32 master + fp32 accum", make(Precision::BF16, true, false)},
      {"fp16 + fp32 master + scaling", make(Precision::FP16, false, true)}};
  for (const auto& [name, r] : recipes) {
    const int64_t p0 = cur(MemCategory::Parameters), g0 = cur(MemCategory::Gradients),
                  o0 = cur(MemCategory::OptimizerState);
    MixedPrecisionTrainer tr(cfg, 1, r, AdamWConfig{});
    const int64_t p = cur(MemCategory::Parameters) - p0, g = cur(MemCategory::Gradients) - g0,
                  o = cur(MemCategory::OptimizerState) - o0, n = tr.model().layout().numel();
    const ModelStateBytes want = model_state_bytes(r, n);
    const bool ok = want.parameters == p && want.gradients == g && want.optimizer_state == o;
    std::printf("%-34s %12.3f %12.3f %12.3f %12.3f %9.2f %s\n", name, p / 1048576.0, g / 1048576.0, o / 1048576.0,
                (p + g + o) / 1048576.0, double(p + g + o) / double(n), ok ? "= formula" : "!= formula");
  }
  std::printf("\n== activations of one step, batch %lld x %lld, from the tracker ==\n", (long long)B, (long long)T);
  for (Precision prec : {Precision::F32, Precision::BF16, Precision::FP16}) {
    MixedPrecisionTrainer tr(cfg, 1, make(prec, false, false), AdamWConfig{});
    const int64_t a0 = cur(MemCategory::Activations);
    DataLoader loader(data, B, T);
    loader.next(x, y);
    tr.step(x, y, B, 0.0, 0.0);
    const int64_t a = cur(MemCategory::Activations) - a0;
    std::printf("%-5s %10.3f MiB  %s\n", precision_name(prec), a / 1048576.0,
                a == activation_bytes(cfg, B, T, precision_dtype(prec)) ? "= formula" : "!= formula");
  }

  if (!svg.empty()) {
    std::ofstream(svg) << line_chart_svg("Lesson 05: " + model + ", four recipes", "step",
                                         "training loss (nats/token)", curves);
    std::printf("wrote %s\n", svg.c_str());
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return sgpt::run_guarded(argv[0], [&] { return run(argc, argv); });
}
