// Lesson 04 driver: your ring all-reduce against the library's all_reduce, over message sizes from
// 1 KiB to 64 MiB, reported the way scalegpt-bench-comm (and nccl-tests) does: time is the slowest
// rank's median, algbw = bytes / time, busbw = algbw * 2(p-1)/p. Each size is checked first: the
// ring's result must equal the library's.
//
//   mpirun -np 4 --oversubscribe lesson04-collectives [--min 1K] [--max 64M] [--factor 4]
//          [--iters 5] [--warmup 1] [--svg busbw.svg]

#include <CLI/CLI.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "collectives.hpp"
#include "core/main.hpp"
#include "core/plot.hpp"
#include "core/timer.hpp"

using namespace sgpt;
using namespace sgpt::lesson04;

namespace {

int64_t parse_size(const std::string& s) {
  SGPT_CHECK(!s.empty(), "empty size");
  int64_t mult = 1;
  std::string num = s;
  if (s.back() == 'K' || s.back() == 'k') mult = 1024;
  if (s.back() == 'M' || s.back() == 'm') mult = 1024 * 1024;
  if (mult != 1) num.pop_back();
  return static_cast<int64_t>(std::stod(num) * double(mult));
}

// The slowest rank's median of `iters` timed calls (each after a barrier), in seconds.
double time_it(Communicator& c, int warmup, int iters, const std::function<void()>& fn) {
  for (int i = 0; i < warmup; ++i) fn();
  std::vector<double> times;
  for (int i = 0; i < iters; ++i) {
    c.barrier();
    Timer t;
    fn();
    times.push_back(t.seconds());
  }
  Tensor med = Tensor::from(std::vector<double>{median(times)}, {1});
  Tensor all = Tensor::zeros({c.size()}, DType::F64);
  c.all_gather(all, med);
  const std::vector<double> m = all.to_vector();
  return *std::max_element(m.begin(), m.end());
}

int run(int argc, char** argv) {
  std::string min_s = "1K", max_s = "64M", svg;
  double factor = 4;
  int iters = 5, warmup = 1;
  CLI::App app{"Lesson 04: ring all-reduce vs the library's all_reduce"};
  app.add_option("--min", min_s, "smallest message (bytes, suffix K or M)")->capture_default_str();
  app.add_option("--max", max_s, "largest message (bytes, suffix K or M)")->capture_default_str();
  app.add_option("--factor", factor, "size multiplier between steps")->capture_default_str();
  app.add_option("--iters", iters, "timed calls per size")->capture_default_str();
  app.add_option("--warmup", warmup, "untimed calls per size")->capture_default_str();
  app.add_option("--svg", svg, "write busbw vs message size to this SVG file");
  CLI11_PARSE(app, argc, argv);
  SGPT_CHECK(factor > 1 && iters > 0 && warmup >= 0, "need --factor > 1, --iters > 0, --warmup >= 0");

  auto world = init_distributed(argc, argv);
  Communicator& c = *world;
  c.set_call_checks(false);  // time the collective, not the signature exchange
  const int p = c.size(), r = c.rank();
  if (r == 0) {
    std::printf("# lesson04: ring all-reduce (yours) vs library all_reduce, backend %s, %d ranks, f32, "
                "warmup %d, iters %d, median of the slowest rank\n", backend_name(c.backend()), p, warmup, iters);
    std::printf("# busbw = algbw * 2(p-1)/p = algbw * %.3f\n", 2.0 * (p - 1) / p);
    std::printf("# %10s %10s | %10s %11s %11s | %10s %11s %11s\n", "size(B)", "count", "ring(us)", "algbw(GB/s)",
                "busbw(GB/s)", "lib(us)", "algbw(GB/s)", "busbw(GB/s)");
  }
  PlotSeries ring_s{"ring all-reduce (lesson 04): measured", {}, {}, "#d62728", true};
  std::vector<double> sizes, ring_times;
  PlotSeries lib_s{"library all_reduce", {}, {}, "#1f77b4", true};
  const int64_t lo = std::max<int64_t>(parse_size(min_s), 4), hi = parse_size(max_s);
  for (int64_t bytes = lo; bytes <= hi; bytes = std::max<int64_t>(bytes + 4, int64_t(double(bytes) * factor))) {
    const int64_t n = bytes / 4;
    // Check once: integer-valued inputs, so both sums are exact and must be equal.
    Tensor a = Tensor::empty({n}, DType::F32, Device::CPU, MemCategory::Communication);
    float* d = a.data<float>();
    for (int64_t i = 0; i < n; ++i) d[i] = float((i + r) % 7);
    Tensor b = Tensor::empty({n}, DType::F32, Device::CPU, MemCategory::Communication);
    b.copy_from(a);
    ring_all_reduce(c, a);
    c.all_reduce(b);
    const float* x = a.data<float>();
    const float* y = b.data<float>();
    int64_t bad = 0;
    for (int64_t i = 0; i < n; ++i) bad += x[i] != y[i];
    SGPT_CHECK(bad == 0, "ring all-reduce differs from the library at ", bad, " of ", n, " elements");

    const double t_ring = time_it(c, warmup, iters, [&] { ring_all_reduce(c, a); });
    const double t_lib = time_it(c, warmup, iters, [&] { c.all_reduce(b); });
    const double size = double(n) * 4, f = 2.0 * (p - 1) / p;
    const double alg_ring = size / t_ring / 1e9, alg_lib = size / t_lib / 1e9;
    if (r == 0)
      std::printf("  %10lld %10lld | %10.1f %11.3f %11.3f | %10.1f %11.3f %11.3f\n", (long long)size, (long long)n,
                  t_ring * 1e6, alg_ring, alg_ring * f, t_lib * 1e6, alg_lib, alg_lib * f);
    sizes.push_back(size);
    ring_times.push_back(t_ring);
    ring_s.x.push_back(std::log2(size));
    ring_s.y.push_back(alg_ring * f);
    lib_s.x.push_back(std::log2(size));
    lib_s.y.push_back(alg_lib * f);
  }
  // The alpha-beta model of the ring, T(S) = 2(p-1)*alpha + 2(p-1)/p * S * beta, fitted by least
  // squares on the relative error (each size weighs the same, small or large): the model's busbw
  // curve is drawn next to the measurement.
  PlotSeries fit_s{"ring: alpha-beta fit", {}, {}, "#f4a6a6", false};
  if (p > 1 && sizes.size() >= 2) {
    double saa = 0, sab = 0, sbb = 0, sat = 0, sbt = 0;
    for (size_t i = 0; i < sizes.size(); ++i) {
      const double w = 1.0 / (ring_times[i] * ring_times[i]);
      const double a = 2.0 * (p - 1), b = 2.0 * (p - 1) / p * sizes[i];
      saa += w * a * a, sab += w * a * b, sbb += w * b * b, sat += w * a * ring_times[i], sbt += w * b * ring_times[i];
    }
    const double det = saa * sbb - sab * sab;
    const double alpha = (sat * sbb - sbt * sab) / det, beta = (saa * sbt - sab * sat) / det;
    if (r == 0)
      std::printf("# alpha-beta fit of the ring: alpha = %.1f us per message, 1/beta = %.3f GB/s per link\n",
                  alpha * 1e6, 1e-9 / beta);
    for (double size : sizes) {
      const double t = 2.0 * (p - 1) * alpha + 2.0 * (p - 1) / p * size * beta;
      fit_s.x.push_back(std::log2(size));
      fit_s.y.push_back(size / t / 1e9 * 2.0 * (p - 1) / p);
    }
  }
  if (r == 0 && !svg.empty()) {
    std::ofstream(svg) << line_chart_svg("Lesson 04: all-reduce busbw, " + std::to_string(p) + " ranks (" +
                                             backend_name(c.backend()) + ")",
                                         "log2(message size in bytes)", "busbw (GB/s)", fit_s.x.empty() ? std::vector<PlotSeries>{ring_s, lib_s} : std::vector<PlotSeries>{fit_s, ring_s, lib_s});
    std::printf("wrote %s\n", svg.c_str());
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return sgpt::run_guarded(argv[0], [&] { return run(argc, argv); });
}
