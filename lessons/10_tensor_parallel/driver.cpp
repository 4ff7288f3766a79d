// Lesson 10 driver: one transformer block split over t = 1, 2, 4 ranks (in-process threads by
// default, or the ranks of an MPI job), with and without sequence parallelism. For each t it
// prints the parameters and the activation bytes one rank holds, the collectives of one forward
// and backward of the block (calls and payload bytes per rank), and the slowest rank's median
// time of a forward + backward. The output is checked against the single-device block first.
//
//   lesson10-tensor-parallel [--C 256] [--heads 8] [--B 4] [--T 64] [--iters 5] [--svg mem.svg]
//   mpirun -np 2 lesson10-tensor-parallel --mpi          (t = the number of MPI ranks)

#include <CLI/CLI.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <mutex>
#include <string>
#include <vector>

#include "core/main.hpp"
#include "core/plot.hpp"
#include "core/timer.hpp"
#include "kernels/ops.hpp"
#include "tensor_parallel.hpp"

using namespace sgpt;
using namespace sgpt::lesson10;

namespace {

struct Row {
  int t;
  bool sp;
  int64_t params, act_bytes;
  CommStats stats;
  double seconds, err;
};

// One rank's run: shard init, the single-device check, then timed forward + backward.
Row run_rank(Communicator& c, const GPTConfig& cfg, const ParameterLayout& layout, const Tensor& x,
             const Tensor& want_out, int64_t B, int64_t T, bool sp, int iters) {
  const int t = c.size(), r = c.rank();
  Tensor flat = Tensor::empty({tp_block_numel(cfg, t)}, DType::F32, Device::CPU, MemCategory::Parameters);
  Tensor gflat = Tensor::zeros({tp_block_numel(cfg, t)}, DType::F32, Device::CPU, MemCategory::Gradients);
  BlockParams p = tp_block_views(flat, cfg, t), g = tp_block_views(gflat, cfg, t);
  init_block_shard(p, cfg, layout, 1337, 0, t, r);
  BlockCache cache = make_tp_block_cache(cfg, B, T, t, sp, DType::F32);
  TPScratch s = make_tp_scratch(cfg, B, T, t, sp, DType::F32);
  const Tensor xin = sp ? seq_shard(x, t, r) : x;
  Tensor dx = Tensor::zeros(xin.shape(), DType::F32), dout = Tensor::zeros(xin.shape(), DType::F32);
  dout.copy_from(xin);  // any gradient will do for timing
  auto step = [&] {
    if (sp) {
      sp_block_forward(c, cfg, p, cache, xin, s);
      sp_block_backward(c, cfg, p, g, cache, xin, dout, dx, s);
    } else {
      tp_block_forward(c, cfg, p, cache, xin);
      tp_block_backward(c, cfg, p, g, cache, xin, dout, dx, s);
    }
  };
  // Check: the output equals the single-device block's (rank r's positions with SP).
  if (sp)
    sp_block_forward(c, cfg, p, cache, xin, s);
  else
    tp_block_forward(c, cfg, p, cache, xin);
  const Tensor want = sp ? seq_shard(want_out, t, r) : want_out;
  std::vector<double> a = cache.out.to_vector(), b = want.to_vector();
  double err = 0;
  for (size_t i = 0; i < a.size(); ++i) err = std::max(err, std::abs(a[i] - b[i]));
  c.reset_stats();
  step();
  const CommStats stats = c.stats();
  std::vector<double> times;
  for (int i = 0; i < iters; ++i) {
    c.barrier();
    Timer tm;
    step();
    times.push_back(tm.seconds());
  }
  Tensor all = Tensor::zeros({c.size()}, DType::F64);
  Tensor mine = Tensor::from(std::vector<double>{median(times)}, {1});
  c.all_gather(all, mine);
  const std::vector<double> m = all.to_vector();
  return {t, sp, flat.numel(), tp_block_cache_numel(cfg, B, T, t, sp) * 4, stats,
          *std::max_element(m.begin(), m.end()), err};
}

void print(const Row& w) {
  const auto& st = w.stats;
  std::printf("  %2d %-5s %10lld %12lld | %2lld x %9lld %2lld x %9lld %2lld x %9lld | %8.2f | %.1e\n", w.t,
              w.sp ? "TP+SP" : "TP", (long long)w.params, (long long)w.act_bytes,
              (long long)st[OpKind::AllReduce].calls, (long long)st[OpKind::AllReduce].bytes,
              (long long)st[OpKind::AllGather].calls, (long long)st[OpKind::AllGather].bytes,
              (long long)st[OpKind::ReduceScatter].calls, (long long)st[OpKind::ReduceScatter].bytes,
              w.seconds * 1e3, w.err);
}

int run(int argc, char** argv) {
  int C = 256, heads = 8, iters = 5;
  int64_t B = 4, T = 64;
  bool use_mpi = false;
  std::string svg;
  CLI::App app{"Lesson 10: one transformer block with tensor and sequence parallelism"};
  app.add_option("--C", C, "model width")->capture_default_str();
  app.add_option("--heads", heads, "attention heads")->capture_default_str();
  app.add_option("--B", B, "sequences per batch")->capture_default_str();
  app.add_option("--T", T, "sequence length")->capture_default_str();
  app.add_option("--iters", iters, "timed forward+backward passes (median)")->capture_default_str();
  app.add_flag("--mpi", use_mpi, "t = the ranks of this MPI job instead of t = 1, 2, 4 threads");
  app.add_option("--svg", svg, "write activation bytes per rank vs t to this SVG file");
  CLI11_PARSE(app, argc, argv);
  GPTConfig cfg;
  cfg.name = "lesson10";
  cfg.max_seq_len = int(T);
  cfg.set_vocab(64);
  cfg.n_layer = 1;
  cfg.n_head = heads;
  cfg.n_embd = C;
  cfg.validate();
  const ParameterLayout layout(cfg);

  // The single-device block, for the check.
  GPT full(cfg, 1337, Device::CPU, DType::F32);
  std::vector<float> xv(B * T * C);
  for (size_t i = 0; i < xv.size(); ++i) xv[i] = float(std::sin(0.37 * double(i)));
  const Tensor x = Tensor::from(xv, {B, T, int64_t(C)});
  BlockCache ref = make_block_cache(cfg, B, T, DType::F32, Device::CPU);
  block_forward(cfg, block_views(full.params(), layout, 0), ref, x);
  const Tensor want = Tensor::from(ref.out.to_vector(), ref.out.shape()).cast(DType::F32);

  std::shared_ptr<Communicator> world;
  if (use_mpi) world = init_distributed(argc, argv);
  const bool lead = !world || world->rank() == 0;
  const int64_t btc_bytes = B * T * C * 4;
  if (lead) {
    std::printf("# lesson10: one block, C=%d NH=%d B=%lld T=%lld, f32, %s; per rank; collectives of one forward + "
                "backward (calls x payload bytes); B*T*C*4 = %lld bytes\n",
                C, heads, (long long)B, (long long)T, world ? "MPI ranks" : "in-process threads", (long long)btc_bytes);
    std::printf("# %2s %-5s %10s %12s | %14s %14s %14s | %8s | %s\n", "t", "mode", "params", "act(B)/block",
                "all_reduce", "all_gather", "reduce_scat", "f+b(ms)", "max|out-1dev|");
  }
  std::vector<Row> rows;
  for (bool sp : {false, true}) {
    if (world) {
      Row w = run_rank(*world, cfg, layout, x, want, B, T, sp, iters);
      if (lead) print(w);
      rows.push_back(w);
      continue;
    }
    for (int t : {1, 2, 4}) {
      std::mutex mu;
      Row w0{};
      run_threads(t, [&](Communicator& c) {
        c.set_call_checks(false);  // time the collectives, not the signature exchange
        Row w = run_rank(c, cfg, layout, x, want, B, T, sp, iters);
        if (c.rank() == 0) {
          std::lock_guard<std::mutex> lock(mu);
          w0 = w;
        }
      });
      print(w0);
      rows.push_back(w0);
    }
  }
  if (lead && !svg.empty()) {
    PlotSeries tp{"TP (ln, residual whole on every rank)", {}, {}, "#1f77b4", true};
    PlotSeries sp{"TP + SP", {}, {}, "#d62728", true};
    for (const Row& w : rows) (w.sp ? sp : tp).x.push_back(w.t), (w.sp ? sp : tp).y.push_back(double(w.act_bytes) / 1024);
    std::ofstream(svg) << line_chart_svg("Lesson 10: activation memory of one block per rank", "t (ranks)",
                                         "KiB per rank", {tp, sp});
    std::printf("wrote %s\n", svg.c_str());
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return sgpt::run_guarded(argv[0], [&] { return run(argc, argv); });
}
