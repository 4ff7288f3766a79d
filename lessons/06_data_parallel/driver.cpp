// Lesson 06 driver: N data-parallel ranks with b rows each train exactly like one rank with N*b rows.
//
//   build/cpu/lessons/06_data_parallel/lesson06-data-parallel                 # 4 in-process ranks (threads)
//   mpirun -np 4 build/cpu/lessons/06_data_parallel/lesson06-data-parallel    # 4 MPI processes
//
// Every rank trains the nano model in f64 on its rows of each global batch (your load_shard and
// train_step); rank 0 also trains a one-rank copy on the whole global batch, and prints both losses,
// the largest parameter difference, and whether the ranks' parameters are bit-identical.
#include <CLI/CLI.hpp>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "comm/communicator.hpp"
#include "core/main.hpp"
#include "data/synthetic.hpp"
#include "data/tokenizer.hpp"
#include "data_parallel.hpp"

using namespace sgpt;
using namespace sgpt::lesson06;

namespace {

struct Options {
  int ranks = 4;  // in-process ranks when not started by mpirun
  int64_t global_batch = 16, micro_batch = 2, seq_len = 32, steps = 8;
  double lr = 3e-3, clip = 1.0;
  uint64_t seed = 1337;
};

// True when every rank holds the same bytes as rank 0.
bool replicas_agree(Communicator& comm, const Tensor& t) {
  Tensor root = Tensor::empty(t.shape(), t.dtype());
  root.copy_from(t);
  comm.broadcast(root, 0);
  Tensor same = Tensor::from(std::vector<int32_t>{std::memcmp(root.raw(), t.raw(), t.nbytes()) == 0 ? 1 : 0}, {1});
  comm.all_reduce(same);
  return same.data<int32_t>()[0] == comm.size();
}

void run(Communicator& comm, const Options& o) {
  const int p = comm.size(), r = comm.rank();
  ByteTokenizer tok;
  const TokenFile data(tok.encode(synthetic_text(o.seed, 1 << 16)), 256, "<synthetic>");
  const GPTConfig cfg = gpt_config("nano");
  AdamWConfig ac;
  GPT model(cfg, o.seed + uint64_t(r), Device::CPU, DType::F64);  // different seeds on purpose ...
  replicate_parameters(comm, model.params());                      // ... the broadcast makes them agree
  AdamW opt(model.layout(), ac, DType::F64, Device::CPU);
  GPT one(cfg, o.seed, Device::CPU, DType::F64);  // the one-rank run (used on rank 0)
  AdamW one_opt(one.layout(), ac, DType::F64, Device::CPU);
  if (r == 0)
    std::printf("nano model (%lld parameters, f64), global batch %lld = %d ranks x %lld rows (micro-batch %lld, k = %lld)\n"
                "step | loss, %d ranks | loss, 1 rank x %lld rows | max |param diff| | replicas bit-identical\n",
                (long long)cfg.num_parameters(), (long long)o.global_batch, p, (long long)(o.global_batch / p),
                (long long)o.micro_batch, (long long)(o.global_batch / p / o.micro_batch), p, (long long)o.global_batch);
  for (int64_t step = 0; step < o.steps; ++step) {
    Tensor x, y;
    load_shard(data, step, o.global_batch, o.seq_len, o.seed, r, p, x, y);
    comm.reset_stats();
    const StepStats s = train_step(model, opt, comm, x, y, o.micro_batch, o.lr, o.clip);
    const OpStats reduced = comm.stats()[OpKind::AllReduce];  // what one step communicated
    const bool agree = replicas_agree(comm, model.params());
    if (r != 0) continue;  // rank 0 also runs the one-rank reference
    Tensor gx, gy;
    load_shard(data, step, o.global_batch, o.seq_len, o.seed, 0, 1, gx, gy);  // the whole global batch
    one.zero_grad();
    const double loss = one.forward(gx, gy);
    one.backward();
    clip_grad_norm(one.grads(), o.clip);
    one_opt.step(one.params(), one.grads(), o.lr);
    const std::vector<double> a = model.params().to_vector(), b = one.params().to_vector();
    double diff = 0;
    for (size_t i = 0; i < a.size(); ++i) diff = std::max(diff, std::abs(a[i] - b[i]));
    std::printf("%4lld | %14.10f | %22.10f | %16.2e | %s\n", (long long)step, s.loss, loss, diff, agree ? "yes" : "NO");
    if (step + 1 == o.steps)
      std::printf("each step all-reduced %lld times, %lld bytes: the gradient buffer (%zu bytes) and the loss (8 bytes)\n",
                  (long long)reduced.calls, (long long)reduced.bytes, model.grads().nbytes());
  }
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{"lesson06: N data-parallel ranks x b rows == 1 rank x N*b rows"};
  app.add_option("--ranks", o.ranks, "in-process ranks (threads backend) when not started by mpirun")->capture_default_str();
  app.add_option("--global-batch", o.global_batch, "rows per optimizer step, over all ranks")->capture_default_str();
  app.add_option("--micro-batch", o.micro_batch, "rows per forward/backward")->capture_default_str();
  app.add_option("--steps", o.steps, "optimizer steps")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  return run_guarded("lesson06", [&] {
    if (detect_launch().world > 1) {
      run(*init_distributed(argc, argv, Backend::MPI), o);
    } else {
      run_threads(o.ranks, [&](Communicator& c) { run(c, o); });
    }
    return 0;
  });
}
