// scalegpt-train: trains a GPT on one device (the parallel lessons add their flags as they land).
//
//   scalegpt-train                                  # micro model, synthetic text, a few minutes on 2 cores
//   scalegpt-train --data data/tinyshakespeare --model mini --steps 2000
//   scalegpt-train --resume runs/default/checkpoint.safetensors
//
// Prints a live progress line on a terminal (plain lines otherwise), writes metrics as JSON lines,
// a loss curve (SVG), checkpoints, and finally a text sample.

#include <omp.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/main.hpp"
#include "core/log.hpp"
#include "core/plot.hpp"
#include "core/safetensors.hpp"
#include "core/timer.hpp"
#include "data/loader.hpp"
#include "data/synthetic.hpp"
#include "data/token_file.hpp"
#include "data/tokenizer.hpp"
#include "comm/communicator.hpp"
#include "data_parallel.hpp"  // lesson 06: the replicated start, gradient and loss averaging
#include "overlapped_dp.hpp"  // lesson 07: bucketed all-reduce overlapped with backward
#include "model/checkpoint.hpp"
#include "model/generate.hpp"
#include "optim/optim.hpp"

extern "C" void openblas_set_num_threads(int);

using namespace sgpt;

namespace {

struct Options {
  std::string model = "micro";
  std::string data = "synthetic";
  int64_t synthetic_bytes = 1 << 20;
  int64_t batch = 16;
  int64_t seq_len = 0;  // 0: the model's context, at most 128
  int64_t steps = 300;
  double lr = 3e-3;
  double min_lr_frac = 0.1;
  int64_t warmup = 20;
  double weight_decay = 0.1;
  double clip = 1.0;
  uint64_t seed = 1337;
  int64_t eval_every = 50;
  int64_t eval_batches = 8;
  std::string out_dir = "runs/default";
  int64_t checkpoint_every = 0;
  int64_t stop_at = -1;
  std::string resume;
  std::string device = "cpu";
  int threads = 0;
  int sample_tokens = 300;
  std::string prompt = "The ";
  double temperature = 0.8;
  double peak_tflops = 0;
  int64_t bucket_kib = 0;  // data parallelism: 0 = one all-reduce after backward (lesson 06), else buckets (lesson 07)
  int log_every = 10;
  bool quiet = false;
};

std::string human(double v) {
  char b[32];
  if (v >= 1e6) std::snprintf(b, sizeof b, "%.2fM", v / 1e6);
  else if (v >= 1e3) std::snprintf(b, sizeof b, "%.1fk", v / 1e3);
  else std::snprintf(b, sizeof b, "%.0f", v);
  return b;
}

std::string hms(double s) {
  char b[32];
  int t = static_cast<int>(s + 0.5);
  std::snprintf(b, sizeof b, "%d:%02d:%02d", t / 3600, t / 60 % 60, t % 60);
  return b;
}

// The training and validation token streams: synthetic text made in memory, or DIR/train.bin
// and DIR/val.bin written by scalegpt-data (datasets/ has the scripts).
std::pair<TokenFile, TokenFile> open_data(const Options& o) {
  if (o.data == "synthetic") {
    ByteTokenizer tok;
    std::vector<int32_t> all = tok.encode(synthetic_text(o.seed, o.synthetic_bytes));
    const size_t n_val = all.size() / 10;
    std::vector<int32_t> val(all.end() - n_val, all.end());
    all.resize(all.size() - n_val);
    return {TokenFile(std::move(all), 256, "<synthetic train>"), TokenFile(std::move(val), 256, "<synthetic val>")};
  }
  namespace fs = std::filesystem;
  SGPT_CHECK(fs::is_directory(o.data), "--data ", o.data,
             ": not a directory holding train.bin and val.bin (make one with datasets/tinyshakespeare.sh), "
             "nor 'synthetic'");
  return {TokenFile(o.data + "/train.bin"), TokenFile(o.data + "/val.bin")};
}

// The mean of one number over the ranks (on `device`: NCCL moves only GPU tensors).
double mean_over_ranks(Communicator& world, double value, Device device) {
  Tensor t = Tensor::from(std::vector<double>{value}, {1}).to(device);
  world.all_reduce(t, ReduceOp::Avg);
  return t.to_vector()[0];
}

// Mean validation loss over the first --eval-batches global batches; with several ranks each
// rank evaluates its rows and the means are averaged.
double evaluate(GPT& model, const TokenFile& val, const Options& o, Communicator* world) {
  const int rank = world ? world->rank() : 0, n_ranks = world ? world->size() : 1;
  DataLoader loader(val, o.batch * n_ranks, o.seq_len, rank, n_ranks);
  Tensor x = Tensor::empty({o.batch, o.seq_len}, DType::I32), y = Tensor::empty({o.batch, o.seq_len}, DType::I32);
  const int64_t n = std::min<int64_t>(o.eval_batches, loader.batches_per_epoch());
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) {
    loader.next(x, y);
    sum += model.forward(x, y);
  }
  return world ? mean_over_ranks(*world, sum / double(n), model.device()) : sum / double(n);
}

int run(Options o, int argc, char** argv) {
  // Data parallelism: started under mpirun/srun with several processes, every rank holds the whole
  // model, trains on its own rows of each global batch (--batch rows per rank), and the gradients
  // are averaged across ranks before the optimizer step, so N ranks x --batch b compute what one
  // rank with --batch N*b computes. Ranks talk through MPI on the CPU and NCCL on GPUs.
  std::shared_ptr<Communicator> world;
  if (detect_launch().world > 1)
    world = init_distributed(argc, argv, o.device == "cuda" ? Backend::NCCL : Backend::MPI);
  const int rank = world ? world->rank() : 0, n_ranks = world ? world->size() : 1;
  if (o.threads > 0) {
    omp_set_num_threads(o.threads);
    openblas_set_num_threads(o.threads);
  }
  const Device device = o.device == "cuda" ? Device::CUDA : Device::CPU;
  SGPT_CHECK(o.device == "cpu" || o.device == "cuda", "--device must be cpu or cuda, got '", o.device, "'");
  SGPT_CHECK(o.batch >= 1 && o.seq_len >= 0 && o.steps >= 0, "--batch and --seq-len must be positive");

  auto [train, val] = open_data(o);
  GPTConfig cfg = o.resume.empty() ? gpt_config(o.model) : checkpoint_config(o.resume);
  if (cfg.vocab_size != train.vocab_size()) cfg.set_vocab(static_cast<int>(train.vocab_size()));
  if (o.seq_len == 0) o.seq_len = std::min<int64_t>(128, cfg.max_seq_len);
  SGPT_CHECK(o.seq_len <= cfg.max_seq_len, "--seq-len ", o.seq_len, " is longer than the context ", cfg.max_seq_len,
             " of model '", cfg.name, "'");

  GPT model(cfg, o.seed, device);
  AdamWConfig ac;
  ac.lr = o.lr;
  ac.weight_decay = o.weight_decay;
  AdamW opt(model.layout(), ac, model.dtype(), device);
  // Data parallelism runs the course's code (lessons 06 and 07: the reference in the instructors'
  // tree, your files in the student release, where an unfinished task stops every rank here).
  std::unique_ptr<lesson07::OverlappedReducer> reducer;
  if (world) {
    lesson06::replicate_parameters(*world, model.params());
    if (o.bucket_kib > 0)
      reducer = std::make_unique<lesson07::OverlappedReducer>(
          *world, model.grads(), lesson07::make_buckets(model.layout(), o.bucket_kib * 1024, int64_t(dtype_size(model.dtype()))));
  }
  DataLoader loader(train, o.batch * n_ranks, o.seq_len, rank, n_ranks);
  TrainState state;
  state.seed = o.seed;
  if (!o.resume.empty()) {
    state = load_checkpoint(o.resume, model, opt);
    loader.set_state({state.data_position, state.data_epoch});
    log_info("resumed from ", o.resume, " at step ", state.step);
  }

  const double flops_per_step = training_flops_per_token(cfg, o.seq_len) * double(o.batch * o.seq_len);  // per rank
  const double peak = o.peak_tflops > 0 ? o.peak_tflops * 1e12 : measure_matmul_flops(device, device == Device::CPU ? 1024 : 4096);
  log_info("model ", cfg.name, ": ", human(double(cfg.num_parameters())), " parameters, L=", cfg.n_layer,
           " C=", cfg.n_embd, " NH=", cfg.n_head, " V=", cfg.vocab_size, " | data ", train.path(), ": ",
           human(double(train.size())), " train / ", human(double(val.size())), " val tokens");
  log_info("batch ", o.batch, " x ", o.seq_len, " tokens", n_ranks > 1 ? str(" per rank x ", n_ranks, " ranks") : "",
           ", ", o.steps, " steps, lr ", o.lr, " on ", device_name(device), " (", omp_get_max_threads(),
           " threads", n_ranks > 1 ? " per rank" : "", "); MFU against a measured peak of ", human(peak / 1e9),
           " GFLOP/s", n_ranks > 1 ? " per rank" : "");
  const bool writer = rank == 0;  // one rank writes files; all ranks hold the same model

  if (writer) std::filesystem::create_directories(o.out_dir);
  PlotSeries train_curve{"train loss", {}, {}, "#1f77b4"}, val_curve{"val loss", {}, {}, "#d62728", true};
  // A resumed run keeps the history before its step (for the plot) and drops what a previous
  // attempt logged after it.
  std::vector<std::string> history;
  if (state.step > 0) {
    std::ifstream old(o.out_dir + "/metrics.jsonl");
    for (std::string line; std::getline(old, line);) {
      auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
      if (j.is_discarded() || !j.contains("step") || j["step"].get<int64_t>() >= state.step) continue;
      if (j.contains("loss")) train_curve.x.push_back(j["step"]), train_curve.y.push_back(j["loss"]);
      if (j.contains("val_loss")) val_curve.x.push_back(j["step"]), val_curve.y.push_back(j["val_loss"]);
      history.push_back(line);
    }
  }
  std::ofstream metrics;
  if (writer) metrics.open(o.out_dir + "/metrics.jsonl", std::ios::trunc);
  for (const std::string& line : history) metrics << line << "\n";
  const bool tty = isatty(fileno(stderr)) && !o.quiet && writer;
  Tensor x = Tensor::empty({o.batch, o.seq_len}, DType::I32), y = Tensor::empty({o.batch, o.seq_len}, DType::I32);
  double val_loss = NAN;
  std::vector<double> step_times;
  auto save = [&](int64_t step) {
    TrainState s = state;
    s.step = step;
    LoaderState ls = loader.state();
    s.data_position = ls.position;
    s.data_epoch = ls.epoch;
    if (writer) save_checkpoint(o.out_dir + "/checkpoint.safetensors", model, opt, s);
    if (world) world->barrier();  // nobody resumes from a checkpoint that is still being written
  };

  for (int64_t step = state.step; step <= o.steps; ++step) {
    const bool last = step == o.steps;
    if (o.eval_every > 0 && (step % o.eval_every == 0 || last)) {
      val_loss = evaluate(model, val, o, world.get());
      val_curve.x.push_back(double(step));
      val_curve.y.push_back(val_loss);
      metrics << nlohmann::json{{"step", step}, {"val_loss", val_loss}}.dump() << "\n";
      if (!tty) log_info("step ", step, " | val loss ", val_loss);
    }
    if (last) break;
    if (step == o.stop_at) {
      save(step);
      log_info("stopped at step ", step, " as asked (--stop-at); continue with --resume ", o.out_dir,
               "/checkpoint.safetensors");
      return 0;
    }
    Timer t;
    loader.next(x, y);
    model.zero_grad();
    double loss = model.forward(x, y);
    if (reducer) {
      model.backward(1.0, [&](int64_t first_final) { reducer->on_grads_ready(first_final); });
      reducer->finish();  // data parallelism: the mean gradient of the global batch, bucket by bucket
    } else {
      model.backward();
      if (world) lesson06::average_gradients(*world, model.grads());  // data parallelism: the mean gradient
    }
    if (world) loss = lesson06::global_mean_loss(*world, loss, device);  // for the log: the global batch's loss
    const double norm = clip_grad_norm(model.grads(), o.clip);
    const double lr = lr_at(step, o.warmup, o.steps, o.lr, o.lr * o.min_lr_frac);
    opt.step(model.params(), model.grads(), lr);
    device_synchronize(device);
    const double dt = t.seconds();
    if (step > state.step) step_times.push_back(dt);  // the first step warms up
    SGPT_CHECK(std::isfinite(loss), "the loss became ", loss, " at step ", step, " (try a lower --lr)");
    const double tok_s = double(o.batch * o.seq_len * n_ranks) / dt, mfu = flops_per_step / dt / peak;
    train_curve.x.push_back(double(step));
    train_curve.y.push_back(loss);
    metrics << nlohmann::json{{"step", step}, {"loss", loss}, {"lr", lr}, {"grad_norm", norm}, {"step_s", dt},
                              {"tokens_per_s", tok_s}, {"mfu", mfu}}
                   .dump()
            << "\n";
    const double eta = median(step_times) * double(o.steps - step - 1);
    char line[256];
    std::snprintf(line, sizeof line, "step %5lld/%lld | loss %.4f | val %.4f | lr %.2e | %s tok/s | MFU %4.1f%% | ETA %s",
                  (long long)step + 1, (long long)o.steps, loss, val_loss, lr, human(tok_s).c_str(), 100 * mfu,
                  hms(eta).c_str());
    if (tty)
      std::fprintf(stderr, "\r%s\033[K", line);
    else if ((step + 1) % o.log_every == 0 || step == state.step)
      log_info(line);
    if (o.checkpoint_every > 0 && (step + 1) % o.checkpoint_every == 0) save(step + 1);
  }
  if (tty) std::fprintf(stderr, "\n");
  save(o.steps);

  if (writer)
    std::ofstream(o.out_dir + "/loss.svg") << line_chart_svg("ScaleGPT " + cfg.name + " on " + train.path(), "step",
                                                          "cross-entropy loss (nats/token)", {train_curve, val_curve});
  const double med = median(step_times);
  const std::string speed = step_times.empty()
                                ? std::string("no timed steps")
                                : str("median step ", med * 1e3, " ms, ", human(double(o.batch * o.seq_len * n_ranks) / med),
                                      " tokens/s, ", flops_per_step / med / 1e9, " GFLOP/s (MFU ",
                                      100 * flops_per_step / med / peak, "%)");
  log_info("done: final val loss ", val_loss, " | ", speed, " | wrote ", o.out_dir,
           "/{checkpoint.safetensors, metrics.jsonl, loss.svg}");
  log_info(MemoryTracker::instance().report(device));

  if (o.sample_tokens > 0 && writer) {
    ByteTokenizer tok;
    std::vector<int32_t> prompt = tok.encode(o.prompt);
    if (cfg.vocab_size != tok.vocab_size()) prompt = {0};
    auto out = generate(model, prompt, o.sample_tokens, o.temperature, o.seed);
    log_info("sample (temperature ", o.temperature, "):\n", cfg.vocab_size == 256 ? tok.decode(out) : "(not byte-level)");
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{"scalegpt-train: train a GPT-2-style model"};
  app.add_option("--model", o.model, "model preset (" + [] {
    std::string s;
    for (auto& n : gpt_config_names()) s += (s.empty() ? "" : ", ") + n;
    return s;
  }() + ")")->capture_default_str();
  app.add_option("--data", o.data, "'synthetic' or a directory with train.bin and val.bin")->capture_default_str();
  app.add_option("--synthetic-bytes", o.synthetic_bytes, "size of the synthetic corpus")->capture_default_str();
  app.add_option("-b,--batch", o.batch, "sequences per step (B)")->capture_default_str();
  app.add_option("-t,--seq-len", o.seq_len, "tokens per sequence (T; default: the model's context, at most 128)");
  app.add_option("-n,--steps", o.steps, "optimizer steps")->capture_default_str();
  app.add_option("--lr", o.lr, "peak learning rate")->capture_default_str();
  app.add_option("--min-lr-frac", o.min_lr_frac, "final lr as a fraction of the peak")->capture_default_str();
  app.add_option("--warmup", o.warmup, "linear warmup steps")->capture_default_str();
  app.add_option("--weight-decay", o.weight_decay, "AdamW weight decay")->capture_default_str();
  app.add_option("--clip", o.clip, "global gradient-norm clip (0 = off)")->capture_default_str();
  app.add_option("--seed", o.seed, "seed for initialisation, data and sampling")->capture_default_str();
  app.add_option("--eval-every", o.eval_every, "validation every N steps (0 = never)")->capture_default_str();
  app.add_option("--eval-batches", o.eval_batches, "batches per validation")->capture_default_str();
  app.add_option("-o,--out", o.out_dir, "directory for checkpoint, metrics and plot")->capture_default_str();
  app.add_option("--checkpoint-every", o.checkpoint_every, "also checkpoint every N steps")->capture_default_str();
  app.add_option("--stop-at", o.stop_at, "save a checkpoint and exit before this step (for time-limited jobs)");
  app.add_option("--resume", o.resume, "continue from a checkpoint (same flags otherwise)");
  app.add_option("--device", o.device, "cpu or cuda")->capture_default_str();
  app.add_option("--threads", o.threads, "CPU threads (default: all cores)");
  app.add_option("--sample-tokens", o.sample_tokens, "tokens to sample at the end")->capture_default_str();
  app.add_option("--prompt", o.prompt, "prompt for the sample")->capture_default_str();
  app.add_option("--temperature", o.temperature, "sampling temperature")->capture_default_str();
  app.add_option("--peak-tflops", o.peak_tflops, "peak for MFU (default: measured matmul speed)");
  app.add_option("--log-every", o.log_every, "steps between log lines when not on a terminal")->capture_default_str();
  app.add_option("--bucket-kib", o.bucket_kib, "data parallelism: gradient buckets of this many KiB all-reduced "
                 "during backward (lesson 07); 0: one all-reduce after backward (lesson 06)")->capture_default_str();
  app.add_flag("-q,--quiet", o.quiet, "no live progress line");
  CLI11_PARSE(app, argc, argv);
  return run_guarded("scalegpt-train", [&] { return run(o, argc, argv); });
}
