// Lesson 11 driver: model-state bytes per rank, predicted by the formula and measured by the memory
// tracker, for data parallelism and ZeRO stages 1-3 at d = 1 .. the world size, with the bytes each
// rank moves per step; and an SVG bar chart of memory per category per stage. Both recipes: f32
// (4 + 4 + 8 bytes per parameter) and lesson 05's mixed precision (bf16 parameters and gradients,
// f32 master and moments: 2 + 2 + 12), in two tables and two charts.
//
//   build/cpu/lessons/11_zero/lesson11-zero                     # d = 1 only (one process)
//   mpirun -np 4 build/cpu/lessons/11_zero/lesson11-zero        # d = 1, 2, 3, 4 (sub-groups of the world)
//
// Memory is measured per process, so every rank is its own MPI process: for each d, ranks
// 0 .. d-1 form a group, build the state, train one step, and report the peak of each category
// above what was allocated before (rank 0's numbers are printed; every rank checks its own).
#include <CLI/CLI.hpp>
#include <algorithm>
#include <array>
#include <cmath>
#include <iomanip>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "comm/communicator.hpp"
#include "core/main.hpp"
#include "core/testing.hpp"
#include "kernels/ops.hpp"
#include "zero.hpp"

using namespace sgpt;
using namespace sgpt::lesson11;

namespace {

struct Options {
  std::string model = "micro";
  int64_t batch = 2, seq_len = 32;
  std::string out = "lessons/11_zero/figures";
};

// Bytes per category (parameters, gradients, optimizer) and bus bytes of one step.
struct Measured {
  double cat[3] = {0, 0, 0};
  double bus = 0;
};

const MemCategory kCats[3] = {MemCategory::Parameters, MemCategory::Gradients, MemCategory::OptimizerState};

// One step of stage `stage` (0 = data parallelism) on this rank of `c` in `recipe`; the peak bytes
// of each category above what was allocated before, and the bus bytes the step moved.
Measured measure(Communicator& c, const GPTConfig& cfg, int stage, Recipe recipe, const Options& o) {
  MemoryTracker& mt = MemoryTracker::instance();
  double before[3];
  for (int i = 0; i < 3; ++i) before[i] = double(mt.stats(kCats[i]).current);
  mt.reset_peak();
  const Tensor x = testing::random_tokens(o.batch, o.seq_len, cfg.vocab_size, 1 + uint64_t(c.rank()));
  const Tensor y = testing::random_tokens(o.batch, o.seq_len, cfg.vocab_size, 100 + uint64_t(c.rank()));
  Measured m;
  c.reset_stats();
  const DType dt = recipe == Recipe::Mixed ? DType::BF16 : DType::F32;
  if (stage == 0) {  // plain data parallelism; mixed: lesson 05's recipe on every rank
    GPT model(cfg, 1, Device::CPU, dt);
    AdamW opt(model.layout(), AdamWConfig{}, DType::F32, Device::CPU);
    Tensor master;  // the f32 master of the mixed recipe (optimizer state, as ZeRO counts it)
    if (recipe == Recipe::Mixed) {
      master = Tensor::empty({model.layout().numel()}, DType::F32, Device::CPU, MemCategory::OptimizerState);
      init_parameters(master, model.layout(), 1);
    }
    model.zero_grad();
    model.forward(x, y);
    model.backward();
    c.all_reduce(model.grads(), ReduceOp::Avg);
    opt.step(master.defined() ? master : model.params(), model.grads(), 1e-3);
    if (master.defined()) {  // the new working copy: the master rounded to bf16
      model.params().zero_();
      axpy_(model.params(), 1.0, master);
    }
  } else {
    UnitRunner runner(cfg, dt);
    ZeroState z = make_zero_state(runner, c, stage, 1, AdamWConfig{}, dt);
    zero_step(z, runner, c, x, y, o.batch, 1e-3, 1.0);
  }
  for (int i = 0; i < 3; ++i) m.cat[i] = double(mt.stats(kCats[i]).peak) - before[i];
  for (OpKind k : {OpKind::AllReduce, OpKind::ReduceScatter, OpKind::AllGather}) {
    double payload = double(c.stats()[k].bytes);
    if (k == OpKind::AllReduce && stage > 0) payload -= 16;  // the loss and the squared norm
    m.bus += bus_bytes(k, payload, c.size());
  }
  return m;
}

// A grouped, stacked bar chart: one bar per stage, stacked by category, in MiB.
std::string bar_chart_svg(const std::string& title, const std::vector<std::string>& labels,
                          const std::vector<std::array<double, 3>>& mib) {
  const int W = 640, H = 360, left = 70, bottom = 50, top = 40;
  double ymax = 0;
  for (const auto& b : mib) ymax = std::max(ymax, b[0] + b[1] + b[2]);
  ymax *= 1.1;
  const char* colors[3] = {"#4c72b0", "#dd8452", "#55a868"};
  const char* names[3] = {"parameters", "gradients", "optimizer state"};
  std::ostringstream s;
  s << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << W << "\" height=\"" << H << "\" font-family=\"sans-serif\" font-size=\"12\">\n";
  s << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  s << "<text x=\"" << W / 2 << "\" y=\"22\" text-anchor=\"middle\" font-size=\"14\">" << title << "</text>\n";
  const double plot_h = H - top - bottom, slot = double(W - left - 150) / double(labels.size());
  auto ypix = [&](double v) { return top + plot_h * (1 - v / ymax); };
  for (int t = 0; t <= 4; ++t) {
    const double v = ymax * t / 4;
    s << "<line x1=\"" << left << "\" x2=\"" << W - 150 << "\" y1=\"" << ypix(v) << "\" y2=\"" << ypix(v)
      << "\" stroke=\"#ddd\"/>\n<text x=\"" << left - 6 << "\" y=\"" << ypix(v) + 4 << "\" text-anchor=\"end\">"
      << std::fixed << std::setprecision(1) << v << "</text>\n";
  }
  s << "<text x=\"16\" y=\"" << top + plot_h / 2 << "\" transform=\"rotate(-90 16 " << top + plot_h / 2
    << ")\" text-anchor=\"middle\">MiB per rank</text>\n";
  for (size_t i = 0; i < labels.size(); ++i) {
    double acc = 0;
    const double x = left + slot * double(i) + slot * 0.2;
    for (int k = 0; k < 3; ++k) {
      const double y0 = ypix(acc), y1 = ypix(acc + mib[i][size_t(k)]);
      s << "<rect x=\"" << x << "\" y=\"" << y1 << "\" width=\"" << slot * 0.6 << "\" height=\"" << y0 - y1
        << "\" fill=\"" << colors[k] << "\"/>\n";
      acc += mib[i][size_t(k)];
    }
    s << "<text x=\"" << x + slot * 0.3 << "\" y=\"" << H - bottom + 18 << "\" text-anchor=\"middle\">" << labels[i]
      << "</text>\n";
  }
  for (int k = 0; k < 3; ++k)
    s << "<rect x=\"" << W - 140 << "\" y=\"" << top + 20 * k << "\" width=\"12\" height=\"12\" fill=\"" << colors[k]
      << "\"/><text x=\"" << W - 122 << "\" y=\"" << top + 20 * k + 11 << "\">" << names[k] << "</text>\n";
  s << "</svg>\n";
  return s.str();
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{"lesson11: ZeRO memory per rank (formula vs tracker) and bytes per step"};
  app.add_option("--model", o.model, "model preset (run untied)")->capture_default_str();
  app.add_option("--batch", o.batch, "rows per rank")->capture_default_str();
  app.add_option("--seq-len", o.seq_len, "tokens per row")->capture_default_str();
  app.add_option("--out", o.out, "folder for the SVG chart")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  return run_guarded("lesson11", [&] {
    std::shared_ptr<Communicator> world = detect_launch().world > 1 ? init_distributed(argc, argv, Backend::MPI)
                                                                    : make_world_communicator(Backend::Threads);
    GPTConfig cfg = gpt_config(o.model);
    cfg.tied_embeddings = false;
    const UnitRunner shape(cfg);
    const double psi = double(shape.layout().numel());
    const int64_t big = shape.largest_unit();
    const bool r0 = world->rank() == 0;
    for (Recipe recipe : {Recipe::FP32, Recipe::Mixed}) {
      const bool mixed = recipe == Recipe::Mixed;
      const double elem = mixed ? 2 : 4;  // bytes of a parameter (and of a gradient) on the wire
      if (r0) {
        std::printf("%s%s untied, psi = %.0f parameters, largest unit %lld, %s; KiB per rank (rank 0), predicted / measured\n",
                    mixed ? "\n" : "", o.model.c_str(), psi, (long long)big,
                    mixed ? "mixed (bf16 params and grads, f32 master, m, v)" : "f32");
        std::printf(" d | stage | parameters        | gradients         | optimizer         | total             | bus KiB/step pred / meas\n");
      }
      std::vector<std::array<double, 3>> chart;
      std::vector<std::string> labels;
      for (int d = 1; d <= world->size(); ++d) {
        auto sub = world->split(world->rank() < d ? 0 : -1, world->rank(), "zero-d" + std::to_string(d));
        if (!sub) continue;
        for (int stage = 0; stage <= 3; ++stage) {
          const Measured m = measure(*sub, cfg, stage, recipe, o);
          const StateBytes p = predicted_bytes(stage, recipe, psi, d, stage >= 2 ? big : 0);
          const double pred[3] = {p.params, p.grads, p.optimizer};
          const double pred_bus = (stage == 3 ? 1.5 : 1.0) * bus_bytes(OpKind::AllReduce, elem * psi, d);
          bool ok = true;
          for (int i = 0; i < 3; ++i) ok = ok && std::abs(m.cat[i] - pred[i]) <= 0.01 * pred[i];
          SGPT_CHECK(ok, "rank ", sub->rank(), " d=", d, " stage ", stage, ": measured memory differs from the formula by more than 1%");
          if (!r0) continue;
          std::printf("%2d | %5s |", d, stage == 0 ? "DP" : std::to_string(stage).c_str());
          for (int i = 0; i < 3; ++i) std::printf(" %7.1f / %7.1f |", pred[i] / 1024, m.cat[i] / 1024);
          std::printf(" %7.1f / %7.1f | %8.1f / %8.1f\n", p.total() / 1024, (m.cat[0] + m.cat[1] + m.cat[2]) / 1024,
                      pred_bus / 1024, m.bus / 1024);
          if (d == world->size()) {
            chart.push_back({m.cat[0] / 1048576.0, m.cat[1] / 1048576.0, m.cat[2] / 1048576.0});
            labels.push_back(stage == 0 ? "DP" : "ZeRO-" + std::to_string(stage));
          }
        }
      }
      if (r0) {
        std::filesystem::create_directories(o.out);
        const std::string path = o.out + (mixed ? "/memory_per_stage_bf16.svg" : "/memory_per_stage.svg");
        std::ofstream(path) << bar_chart_svg("Model state per rank, " + o.model + " (untied, " +
                                                 (mixed ? "bf16 + f32 master" : "f32") + "), d = " +
                                                 std::to_string(world->size()) + ", measured",
                                             labels, chart);
        std::printf("wrote %s\n", path.c_str());
      }
    }
    return 0;
  });
}
