// scalegpt-plot-losses: draws the validation losses of several scalegpt-train logs on one chart
// (common/core/plot.hpp) and prints, for the first two logs, the relative gap at every step both
// evaluated. Used for docs/cuda.md's bf16-against-f32 figures.
//
//   scalegpt-plot-losses --out docs/images/x.svg --title "d12, bf16 vs f32" bf16=a.log f32=b.log
//
// A log's evaluations are its lines "step N | val loss X".

#include <CLI/CLI.hpp>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <regex>

#include "core/check.hpp"
#include "core/main.hpp"
#include "core/plot.hpp"

using namespace sgpt;

int main(int argc, char** argv) {
  std::string out, title = "validation loss";
  std::vector<std::string> runs;
  CLI::App app{"scalegpt-plot-losses: validation losses of scalegpt-train logs on one SVG chart"};
  app.add_option("-o,--out", out, "the SVG file to write")->required();
  app.add_option("--title", title, "chart title")->capture_default_str();
  app.add_option("runs", runs, "LABEL=LOG, one per run (the first two are compared)")->required();
  CLI11_PARSE(app, argc, argv);
  return run_guarded("scalegpt-plot-losses", [&] {
    static const char* colors[] = {"#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"};
    const std::regex eval_line(R"(^step (\d+) \| val loss ([0-9.eE+-]+))");
    std::vector<PlotSeries> series;
    std::vector<std::map<long, double>> evals;
    for (const std::string& run : runs) {
      const size_t eq = run.find('=');
      SGPT_CHECK(eq != std::string::npos && eq > 0, "'", run, "': give each run as LABEL=LOG");
      const std::string path = run.substr(eq + 1);
      std::ifstream in(path);
      SGPT_CHECK(in.good(), "cannot read the log '", path, "'");
      PlotSeries s;
      s.label = run.substr(0, eq);
      s.color = colors[series.size() % 6];
      s.markers = true;
      std::map<long, double> at;
      for (std::string line; std::getline(in, line);) {
        std::smatch m;
        if (!std::regex_search(line, m, eval_line)) continue;
        at[std::stol(m[1])] = std::stod(m[2]);
      }
      SGPT_CHECK(!at.empty(), "'", path, "' has no line 'step N | val loss X'");
      for (const auto& [step, loss] : at) {
        s.x.push_back(double(step));
        s.y.push_back(loss);
      }
      series.push_back(s);
      evals.push_back(at);
    }
    std::ofstream f(out);
    f << line_chart_svg(title, "step", "validation loss (nats per token)", series);
    SGPT_CHECK(f.good(), "cannot write '", out, "'");
    std::printf("wrote %s (%zu runs)\n", out.c_str(), series.size());
    if (series.size() < 2) return 0;
    double worst = 0;
    std::printf("step   %-10s %-10s relative gap\n", series[0].label.c_str(), series[1].label.c_str());
    for (const auto& [step, a] : evals[0]) {
      auto it = evals[1].find(step);
      if (it == evals[1].end()) continue;
      const double gap = (a - it->second) / it->second;
      worst = std::max(worst, std::abs(gap));
      std::printf("%5ld  %-10.4f %-10.4f %+.2f%%\n", step, a, it->second, 100 * gap);
    }
    std::printf("largest |gap|: %.2f%%\n", 100 * worst);
    return 0;
  });
}
