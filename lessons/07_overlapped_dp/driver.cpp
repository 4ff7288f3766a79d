// Lesson 07 driver: step time against bucket size, and a per-rank timeline of backward and the
// bucket all-reduces with and without overlap.
//
//   build/cpu/lessons/07_overlapped_dp/lesson07-overlapped-dp                  # 2 in-process ranks (threads)
//   mpirun -np 2 build/cpu/lessons/07_overlapped_dp/lesson07-overlapped-dp     # 2 MPI processes
//
// For each bucket cap (0 = one bucket for the whole buffer, started when backward ends: no
// overlap) every rank trains the model for --steps steps with your train_step; rank 0 prints the
// median step time, the number of buckets, and, from the trace of the last step, how long the
// step waited for communication after backward ended (the exposed communication). The last step
// of cap 0 and of --trace-kib is written as a Chrome trace (open it in https://ui.perfetto.dev)
// and as an SVG timeline.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "comm/communicator.hpp"
#include "comm/trace_gather.hpp"
#include "core/main.hpp"
#include "core/plot.hpp"
#include "core/testing.hpp"
#include "core/timer.hpp"
#include "core/trace.hpp"
#include "overlapped_dp.hpp"

using namespace sgpt;
using namespace sgpt::lesson07;

namespace {

struct Options {
  int ranks = 2;
  std::string model = "micro";
  int64_t batch = 4, seq_len = 64, steps = 11;
  std::vector<int64_t> caps_kib = {0, 16, 64, 256, 1024};
  int64_t trace_kib = 64;
  std::string out = "runs/lesson07";
};

struct Result {
  size_t buckets = 0;
  double step_ms = 0, backward_ms = 0, exposed_ms = 0, comm_ms = 0;
};

// Runs one bucket cap on this rank; returns rank 0's figures. The last step is traced.
Result run_cap(Communicator& comm, const Options& o, int64_t cap_kib) {
  comm.set_call_checks(false);  // the signature exchange would make every async issue a rendezvous
  const GPTConfig cfg = gpt_config(o.model);
  GPT model(cfg, 1337, Device::CPU, DType::F32);  // the same seed on every rank: identical replicas
  AdamW opt(model.layout(), AdamWConfig{}, DType::F32, Device::CPU);
  const int64_t cap = cap_kib > 0 ? cap_kib * 1024 : int64_t(model.grads().nbytes());
  OverlappedReducer reducer(comm, model.grads(), make_buckets(model.layout(), cap, 4));
  TraceRecorder& rec = TraceRecorder::current();
  std::vector<double> times;
  for (int64_t step = 0; step < o.steps; ++step) {
    const Tensor x = testing::random_tokens(o.batch, o.seq_len, cfg.vocab_size, 100 * uint64_t(step) + uint64_t(comm.rank()));
    const Tensor y = testing::random_tokens(o.batch, o.seq_len, cfg.vocab_size, 100 * uint64_t(step) + 50 + uint64_t(comm.rank()));
    const bool traced = step == o.steps - 1;
    if (traced) {
      rec.clear();
      rec.set_enabled(true);
      align_trace_clocks(comm, rec);
    } else {
      comm.barrier();
    }
    Timer t;
    train_step(model, opt, reducer, comm, x, y, o.batch, 1e-3, 1.0);
    if (step > 0) times.push_back(t.seconds());  // the first step warms up
  }
  rec.set_enabled(false);
  Result r;
  r.buckets = reducer.buckets().size();
  std::sort(times.begin(), times.end());
  r.step_ms = times.empty() ? 0 : times[times.size() / 2] * 1e3;
  double bw_start = 1e300, bw_end = 0, opt_start = 0;
  for (const TraceEvent& e : rec.events()) {
    if (e.name.rfind("backward_", 0) == 0) bw_start = std::min(bw_start, e.start_us), bw_end = std::max(bw_end, e.start_us + e.duration_us);
    if (e.name == "optimizer_step") opt_start = e.start_us;
    if (e.name == "all_reduce_async") r.comm_ms += e.duration_us / 1e3;
  }
  r.backward_ms = (bw_end - bw_start) / 1e3;
  r.exposed_ms = (opt_start - bw_end) / 1e3;
  return r;
}

void write_trace(const std::vector<TraceEvent>& all, const Options& o, int64_t cap_kib, size_t buckets) {
  std::vector<TraceEvent> keep;  // the step's backward, communication and update
  for (const TraceEvent& e : all)
    if (e.start_us >= 0 && e.name != "barrier")  // the step itself, not the clock alignment before it
      keep.push_back(e);
  const std::string stem = o.out + "/timeline_" + (cap_kib > 0 ? std::to_string(cap_kib) + "kib" : "no_overlap");
  std::ofstream(stem + ".json") << trace_to_json(keep);
  const std::string title = cap_kib > 0 ? str(o.model, ": ", buckets, " buckets of <= ", cap_kib, " KiB, overlapped")
                                        : str(o.model, ": one all-reduce after backward (no overlap)");
  std::ofstream(stem + ".svg") << timeline_svg(title, keep);
  std::printf("wrote %s.json and %s.svg\n", stem.c_str(), stem.c_str());
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{"lesson07: step time against bucket size, and timelines with and without overlap"};
  app.add_option("--ranks", o.ranks, "in-process ranks (threads backend) when not started by mpirun")->capture_default_str();
  app.add_option("--model", o.model, "model preset")->capture_default_str();
  app.add_option("--batch", o.batch, "rows per rank")->capture_default_str();
  app.add_option("--seq-len", o.seq_len, "tokens per row")->capture_default_str();
  app.add_option("--steps", o.steps, "steps per bucket size (the median leaves out the first)")->capture_default_str();
  app.add_option("--caps-kib", o.caps_kib, "bucket caps in KiB (0: one bucket, no overlap)")->capture_default_str();
  app.add_option("--trace-kib", o.trace_kib, "cap whose timeline is written besides 0")->capture_default_str();
  app.add_option("--out", o.out, "folder for the traces and timelines")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  return run_guarded("lesson07", [&] {
    std::shared_ptr<Communicator> world;
    if (detect_launch().world > 1) world = init_distributed(argc, argv, Backend::MPI);
    const int rank = world ? world->rank() : 0, p = world ? world->size() : o.ranks;
    if (rank == 0) {
      std::filesystem::create_directories(o.out);
      std::printf("%s, %d ranks (%s), %lld rows x %lld tokens per rank, f32, median of %lld steps\n", o.model.c_str(), p,
                  world ? "MPI processes" : "threads", (long long)o.batch, (long long)o.seq_len, (long long)o.steps - 1);
      std::printf("cap KiB | buckets | step ms | backward ms | in flight ms (sum) | exposed after backward ms\n");
    }
    for (int64_t cap : o.caps_kib) {
      Result r;
      std::vector<TraceEvent> events;
      if (world) {
        r = run_cap(*world, o, cap);
        events = gather_trace(*world, TraceRecorder::global());
      } else {
        TraceRecorder::global().clear();
        run_threads(o.ranks, [&](Communicator& c) {
          Result mine = run_cap(c, o, cap);
          if (c.rank() == 0) r = mine;
        });
        events = TraceRecorder::global().events();  // every rank's, appended by run_threads
        TraceRecorder::global().clear();
      }
      if (rank != 0) continue;
      std::printf("%7lld | %7zu | %7.1f | %11.1f | %18.1f | %25.1f\n", (long long)cap, r.buckets, r.step_ms, r.backward_ms,
                  r.comm_ms, r.exposed_ms);
      if (cap == 0 || cap == o.trace_kib) write_trace(events, o, cap, r.buckets);
    }
    return 0;
  });
}
