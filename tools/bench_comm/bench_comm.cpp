// scalegpt-bench-comm: measures a collective over a range of message sizes, the way nccl-tests
// does, on any backend of the communication layer.
//
//   mpirun -np 4 scalegpt-bench-comm --op all_reduce --backend mpi -b 8 -e 64M -f 2
//   scalegpt-bench-comm --backend threads --ranks 4 --op all_gather
//
// For each size (bytes of the full buffer): warm-up calls, then timed calls each preceded by a
// barrier; a rank's time is the median of its calls and the reported time is the largest median
// over ranks. algbw = size / time; busbw = algbw times nccl-tests' factor (all-reduce 2(n-1)/n,
// reduce-scatter and all-gather (n-1)/n, broadcast 1), which makes busbw comparable to the link
// bandwidth whatever the rank count.

#include <CLI/CLI.hpp>

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "core/main.hpp"
#include "comm/communicator.hpp"
#include "core/timer.hpp"

namespace {

struct Options {
  std::string op = "all_reduce";
  std::string backend = "auto";
  std::string dtype = "f32";
  std::string min_bytes = "8";
  std::string max_bytes = "32M";
  double factor = 2;
  int warmup = 5;
  int iters = 20;
  int ranks = 2;  // threads backend only
  bool check = false;
};

int64_t parse_size(const std::string& s) {
  SGPT_CHECK(!s.empty(), "empty size");
  char unit = s.back();
  int64_t mult = 1;
  std::string num = s;
  if (unit == 'K' || unit == 'k') mult = 1024;
  if (unit == 'M' || unit == 'm') mult = 1024 * 1024;
  if (unit == 'G' || unit == 'g') mult = 1024LL * 1024 * 1024;
  if (mult != 1) num.pop_back();
  return static_cast<int64_t>(std::stod(num) * mult);
}

sgpt::OpKind parse_op(const std::string& op) {
  if (op == "all_reduce") return sgpt::OpKind::AllReduce;
  if (op == "reduce_scatter") return sgpt::OpKind::ReduceScatter;
  if (op == "all_gather") return sgpt::OpKind::AllGather;
  if (op == "broadcast") return sgpt::OpKind::Broadcast;
  SGPT_FAIL("unknown op '", op, "' (all_reduce, reduce_scatter, all_gather, broadcast)");
}

void bench(sgpt::Communicator& c, const Options& o) {
  using namespace sgpt;
  c.set_call_checks(o.check);
  OpKind kind = parse_op(o.op);
  DType dt = o.dtype == "f64" ? DType::F64 : o.dtype == "i32" ? DType::I32 : DType::F32;
  int64_t es = static_cast<int64_t>(dtype_size(dt));
  Device dev = c.preferred_device();
  const int p = c.size();
  if (c.rank() == 0) {
    std::printf("# scalegpt-bench-comm: op %s, backend %s, %d ranks, dtype %s, warmup %d, iters %d, median\n",
                o.op.c_str(), backend_name(c.backend()), p, dtype_name(dt), o.warmup, o.iters);
    std::printf("# %12s %12s %6s %12s %10s %10s\n", "size(B)", "count", "type", "time(us)", "algbw(GB/s)",
                "busbw(GB/s)");
  }
  int64_t lo = std::max<int64_t>(parse_size(o.min_bytes), es), hi = parse_size(o.max_bytes);
  for (int64_t bytes = lo; bytes <= hi; bytes = std::max<int64_t>(bytes + es, static_cast<int64_t>(bytes * o.factor))) {
    int64_t n = bytes / es;
    Tensor buf = Tensor::zeros({n}, dt, dev, MemCategory::Communication);
    Tensor shard = Tensor::zeros({shard_range(n, p, c.rank()).count}, dt, dev, MemCategory::Communication);
    auto run_once = [&] {
      switch (kind) {
        case OpKind::AllReduce: c.all_reduce(buf); break;
        case OpKind::ReduceScatter: c.reduce_scatter(shard, buf); break;
        case OpKind::AllGather: c.all_gather(buf, shard); break;
        default: c.broadcast(buf, 0); break;
      }
    };
    for (int i = 0; i < o.warmup; ++i) run_once();
    std::vector<double> times;
    for (int i = 0; i < o.iters; ++i) {
      c.barrier();
      Timer t;
      run_once();
      times.push_back(t.seconds());
    }
    Tensor med = Tensor::from(std::vector<double>{median(times)}, {1});
    if (dev != Device::CPU) med = med.to(dev);
    // The slowest rank's median: all_reduce of (median - min) is not available, so gather them.
    Tensor all = Tensor::zeros({p}, DType::F64, dev);
    c.all_gather(all, med);
    std::vector<double> meds = all.to_vector();
    double sec = *std::max_element(meds.begin(), meds.end());
    double size = static_cast<double>(n * es);
    double algbw = sec > 0 ? size / sec / 1e9 : 0;
    double busbw = sec > 0 ? bus_bytes(kind, size, p) / sec / 1e9 : 0;
    if (c.rank() == 0)
      std::printf("  %12lld %12lld %6s %12.2f %10.3f %10.3f\n", static_cast<long long>(n * es),
                  static_cast<long long>(n), dtype_name(dt), sec * 1e6, algbw, busbw);
  }
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{"Collective bandwidth of the ScaleGPT communication layer (nccl-tests style)"};
  app.add_option("--op", o.op, "all_reduce | reduce_scatter | all_gather | broadcast")->capture_default_str();
  app.add_option("--backend", o.backend, "mpi | nccl | threads | auto")->capture_default_str();
  app.add_option("-d,--dtype", o.dtype, "f32 | f64 | i32")->capture_default_str();
  app.add_option("-b,--min-bytes", o.min_bytes, "smallest size (suffix K, M, G)")->capture_default_str();
  app.add_option("-e,--max-bytes", o.max_bytes, "largest size (suffix K, M, G)")->capture_default_str();
  app.add_option("-f,--step-factor", o.factor, "size multiplier between steps")->capture_default_str();
  app.add_option("-w,--warmup", o.warmup, "warm-up calls per size")->capture_default_str();
  app.add_option("-n,--iters", o.iters, "timed calls per size")->capture_default_str();
  app.add_option("--ranks", o.ranks, "number of ranks (threads backend only)")->capture_default_str();
  app.add_flag("--check", o.check, "keep the call check on (off by default: it costs a collective per call)");
  CLI11_PARSE(app, argc, argv);
  return sgpt::run_guarded("scalegpt-bench-comm", [&] {
    SGPT_CHECK(o.factor > 1, "--step-factor must be > 1");
    sgpt::Backend b = sgpt::parse_backend(o.backend);
    if (b == sgpt::Backend::Threads) {
      sgpt::run_threads(o.ranks, [&](sgpt::Communicator& c) { bench(c, o); });
    } else {
      auto world = sgpt::init_distributed(argc, argv, b);
      bench(*world, o);
      world.reset();
      sgpt::finalize_distributed();
    }
    return 0;
  });
}
