// scalegpt-train: trains a GPT on one device, or on several ranks under mpirun with the parallel
// lessons' code (strategy.hpp: data parallelism by default, --pp, --tp, --dp with them: lesson 12).
//
//   scalegpt-train                                  # micro model, synthetic text, a few minutes on 2 cores
//   scalegpt-train --data data/tinyshakespeare --model mini --steps 2000
//   scalegpt-train --resume runs/micro/checkpoint.safetensors
//   scalegpt-train --verify runs/micro/checkpoint.safetensors     # check a checkpoint's checksums
//   mpirun -np 2 scalegpt-train --batch 8                         # data parallelism (lessons 06, 07)
//   mpirun -np 2 scalegpt-train --untie-embeddings --pp 2 --micro-batches 4 --schedule 1f1b  # lessons 08, 09
//   mpirun -np 2 scalegpt-train --tp 2 --sequence-parallel        # lesson 10
//   mpirun -np 8 scalegpt-train --untie-embeddings --dp 2 --pp 2 --tp 2 --micro-batches 2  # lesson 12
//   scalegpt-train --model d12 --seq-len 1024 --batch 512 --dtype bf16 --plan --plan-gpus 64   # lesson 12's planner
//
// Prints a live progress line on a terminal (plain lines otherwise), writes metrics as JSON lines,
// a loss curve (SVG), checkpoints, and finally a text sample. What it guarantees about those files
// is in run_files.hpp; every flag is checked before any work (validate_flags), and under mpirun
// the ranks first check that they were started with the same flags (flag_table).

#include <omp.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <charconv>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <thread>

#include "core/main.hpp"
#include "core/log.hpp"
#include "core/plot.hpp"
#include "core/safetensors.hpp"
#include "core/timer.hpp"
#include "data/loader.hpp"
#include "data/synthetic.hpp"
#include "data/token_file.hpp"
#include "data/tokenizer.hpp"
#include "comm/agreement.hpp"
#include "comm/communicator.hpp"
#include "train/checkpoint.hpp"
#include "model/generate.hpp"
#include "optim/optim.hpp"
#include "run_files.hpp"
#include "strategy.hpp"

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
  std::string out_dir;  ///< default: runs/<model>
  int64_t checkpoint_every = 0;
  int64_t stop_at = -1;
  std::string resume;
  std::string device = "cpu";
  std::string dtype = "f32";
  std::string recompute = "none";    // gelu: the blocks keep GELU's input only (GPT::set_recompute_gelu)
  double loss_scale = 65536;         // fp16: the dynamic loss scale's first value (lesson 05)
  int64_t loss_scale_window = 2000;  // fp16: good steps in a row before the scale doubles
  int threads = 0;
  int sample_tokens = 300;
  std::string prompt = "The ";
  double temperature = 0.8;
  double peak_tflops = 0;
  int64_t bucket_kib = 0;  // data parallelism: 0 = one all-reduce after backward (lesson 06), else buckets (lesson 07)
  int zero = 0;            // ZeRO stage (lesson 11); 0 = plain data parallelism
  int pp = 1;              // pipeline stages (lessons 08 and 09)
  int micro_batches = 1;   // pipeline: micro-batches per global batch
  std::string schedule = "1f1b";
  int tp = 1;              // tensor-parallel ranks (lesson 10)
  bool sequence_parallel = false;
  bool untie_embeddings = false;
  int dp = 1;              // with --dp: lesson 12's grid of dp x pp x tp ranks
  bool plan = false;       // print lesson 12's planner's layouts and exit
  int plan_gpus = 0;       // 0: this job's ranks
  int plan_gpus_per_node = 8;
  double plan_memory_gb = 80;
  int log_every = 10;
  bool quiet = false;
  double comm_timeout = 300;
  std::string verify;
  std::set<std::string> given;  // the flags given on the command line (the rest hold defaults)
};

// Shortest text that reads back as the same double (so "0.003", not "0.0030000000000000001").
std::string num(double v) {
  char b[64];
  auto [end, ec] = std::to_chars(b, b + sizeof b, v);
  return ec == std::errc() ? std::string(b, end) : std::to_string(v);
}

// Every flag with its value as text, and whether it must be the same on every rank of an mpirun
// job (`ranks`) and the same as in the checkpoint a run resumes (`resume`). main() checks that
// each flag of the command line is listed here, so a new flag cannot escape these checks: add it
// with its two answers.
struct FlagInfo {
  std::string name, value;
  bool ranks, resume;
};
std::vector<FlagInfo> flag_table(const Options& o) {
  auto i = [](int64_t v) { return std::to_string(v); };
  return {
      // name              value                       ranks  resume
      {"--model", o.model, true, false},  // resume: compared with the checkpoint's model instead
      {"--data", o.data, true, true},
      {"--synthetic-bytes", i(o.synthetic_bytes), true, true},
      {"--batch", i(o.batch), true, false},  // resume: the global batch (x ranks) is compared
      {"--seq-len", i(o.seq_len), true, true},
      {"--steps", i(o.steps), true, false},  // a resumed run may train on to a larger --steps
      {"--lr", num(o.lr), true, true},
      {"--min-lr-frac", num(o.min_lr_frac), true, true},
      {"--warmup", i(o.warmup), true, true},
      {"--weight-decay", num(o.weight_decay), true, true},
      {"--clip", num(o.clip), true, true},
      {"--seed", std::to_string(o.seed), true, true},
      {"--eval-every", i(o.eval_every), true, false},
      {"--eval-batches", i(o.eval_batches), true, false},
      {"--out", o.out_dir, true, false},
      {"--checkpoint-every", i(o.checkpoint_every), true, false},
      {"--stop-at", i(o.stop_at), true, false},
      {"--resume", o.resume, true, false},
      {"--device", o.device, true, false},
      {"--dtype", o.dtype, true, true},
      {"--recompute", o.recompute, true, false},  // the same numbers either way: a resume may change it
      {"--loss-scale", num(o.loss_scale), true, true},  // resume: the checkpoint's scale goes on
      {"--loss-scale-window", i(o.loss_scale_window), true, true},
      {"--bucket-kib", std::to_string(o.bucket_kib), true, false},
      {"--zero", i(o.zero), true, false},  // resume: any strategy resumes any checkpoint
      // The layout may change when resuming: checkpoints hold the consolidated model.
      {"--pp", i(o.pp), true, false},
      {"--micro-batches", i(o.micro_batches), true, false},
      {"--schedule", o.schedule, true, false},
      {"--tp", i(o.tp), true, false},
      {"--sequence-parallel", o.sequence_parallel ? "1" : "0", true, false},
      {"--untie-embeddings", o.untie_embeddings ? "1" : "0", true, false},  // resume: the checkpoint's model decides
      {"--dp", i(o.dp), true, false},
      {"--plan", o.plan ? "1" : "0", true, false},
      {"--plan-gpus", i(o.plan_gpus), true, false},
      {"--plan-gpus-per-node", i(o.plan_gpus_per_node), true, false},
      {"--plan-memory-gb", num(o.plan_memory_gb), true, false},
      {"--comm-timeout", num(o.comm_timeout), true, false},
      {"--sample-tokens", i(o.sample_tokens), true, false},
      {"--prompt", o.prompt, true, false},
      {"--temperature", num(o.temperature), true, false},
      // Per-rank matters: speed and logging only.
      {"--threads", i(o.threads), false, false},
      {"--peak-tflops", num(o.peak_tflops), false, false},
      {"--log-every", i(o.log_every), false, false},
      {"--quiet", o.quiet ? "1" : "0", false, false},
      {"--verify", o.verify, false, false},
  };
}

// Every flag is checked before any work: a value that cannot mean anything is an error naming
// the flag, never a silent default, a crash later on, or a run that does nothing and exits 0.
void validate_flags(const Options& o) {
  auto positive = [](double v) { return std::isfinite(v) && v > 0; };
  auto non_negative = [](double v) { return std::isfinite(v) && v >= 0; };
  SGPT_CHECK(positive(o.lr), "--lr must be a finite learning rate > 0, got ", o.lr);
  SGPT_CHECK(non_negative(o.min_lr_frac) && o.min_lr_frac <= 1, "--min-lr-frac must be in [0, 1], got ", o.min_lr_frac);
  SGPT_CHECK(o.warmup >= 0, "--warmup must be >= 0 steps, got ", o.warmup);
  SGPT_CHECK(non_negative(o.weight_decay), "--weight-decay must be a finite number >= 0, got ", o.weight_decay);
  SGPT_CHECK(non_negative(o.clip), "--clip must be a finite norm >= 0 (0 = off), got ", o.clip);
  SGPT_CHECK(o.batch >= 1, "--batch must be at least 1 sequence, got ", o.batch);
  SGPT_CHECK(o.seq_len >= 0, "--seq-len must be at least 1 token (or 0 for the model's context), got ", o.seq_len);
  SGPT_CHECK(o.steps >= 1, "--steps must be at least 1, got ", o.steps);
  SGPT_CHECK(o.data != "synthetic" || o.synthetic_bytes >= 1, "--synthetic-bytes must be at least 1, got ",
             o.synthetic_bytes);
  SGPT_CHECK(o.data == "synthetic" || !o.given.count("--synthetic-bytes"), "--synthetic-bytes applies to --data ",
             "synthetic only, but --data is ", o.data);
  SGPT_CHECK(o.eval_every >= 0, "--eval-every must be >= 0 (0 = never), got ", o.eval_every);
  SGPT_CHECK(o.eval_batches >= 1, "--eval-batches must be at least 1, got ", o.eval_batches);
  SGPT_CHECK(o.checkpoint_every >= 0, "--checkpoint-every must be >= 0 (0 = only at the end), got ",
             o.checkpoint_every);
  SGPT_CHECK(o.stop_at == -1 || (o.stop_at >= 1 && o.stop_at < o.steps), "--stop-at ", o.stop_at,
             " must be a step between 1 and --steps - 1 = ", o.steps - 1, " (at --steps the run ends anyway)");
  SGPT_CHECK(o.dtype == "fp16" || (!o.given.count("--loss-scale") && !o.given.count("--loss-scale-window")),
             "--loss-scale and --loss-scale-window apply to --dtype fp16 only, but --dtype is ", o.dtype);
  SGPT_CHECK(o.recompute == "none" || o.recompute == "gelu", "--recompute must be none or gelu, got '", o.recompute,
             "'");
  SGPT_CHECK(positive(o.loss_scale), "--loss-scale must be a finite number > 0, got ", o.loss_scale);
  SGPT_CHECK(o.loss_scale_window >= 1, "--loss-scale-window must be at least 1 step, got ", o.loss_scale_window);
  SGPT_CHECK(o.device == "cpu" || o.device == "cuda", "--device must be cpu or cuda, got '", o.device, "'");
  SGPT_CHECK(o.threads >= 0, "--threads must be >= 0 (0 = all cores), got ", o.threads);
  SGPT_CHECK(o.sample_tokens >= 0, "--sample-tokens must be >= 0, got ", o.sample_tokens);
  SGPT_CHECK(o.sample_tokens == 0 || positive(o.temperature), "--temperature must be a finite number > 0, got ",
             o.temperature);
  SGPT_CHECK(non_negative(o.peak_tflops), "--peak-tflops must be a finite number >= 0 (0 = measure), got ",
             o.peak_tflops);
  SGPT_CHECK(o.log_every >= 1, "--log-every must be at least 1, got ", o.log_every);
  SGPT_CHECK(non_negative(o.comm_timeout), "--comm-timeout must be a finite number of seconds >= 0 (0 = wait ",
             "forever), got ", o.comm_timeout);
  SGPT_CHECK(!o.out_dir.empty(), "--out must name a directory");
  SGPT_CHECK(o.bucket_kib >= 0, "--bucket-kib must be >= 0 (0 = one all-reduce after backward), got ", o.bucket_kib);
  SGPT_CHECK(o.pp >= 1, "--pp must be at least 1 pipeline stage, got ", o.pp);
  SGPT_CHECK(o.tp >= 1, "--tp must be at least 1 rank, got ", o.tp);
  SGPT_CHECK(o.micro_batches >= 1, "--micro-batches must be at least 1, got ", o.micro_batches);
  SGPT_CHECK(o.schedule == "gpipe" || o.schedule == "1f1b", "--schedule must be gpipe or 1f1b, got '", o.schedule,
             "'");
  SGPT_CHECK(o.zero >= 0 && o.zero <= 3, "--zero must be 1, 2 or 3 (0 = plain data parallelism), got ", o.zero);
  // --dp D selects lesson 12's grid (D x P x T ranks, --batch rows per replica); without it, --pp
  // and --tp each run their own lessons, on exactly P or T ranks.
  const bool grid = o.given.count("--dp") > 0;
  SGPT_CHECK(o.dp >= 1, "--dp must be at least 1 replica, got ", o.dp);
  SGPT_CHECK(o.pp > 1 || grid || (!o.given.count("--micro-batches") && !o.given.count("--schedule")),
             "--micro-batches and --schedule apply to pipeline parallelism only: pass --pp P (P > 1) too");
  SGPT_CHECK(o.tp > 1 || !o.sequence_parallel, "--sequence-parallel applies to tensor parallelism only: pass --tp T ",
             "(T > 1) too");
  SGPT_CHECK(o.pp == 1 || o.tp == 1 || grid, "--pp ", o.pp, " with --tp ", o.tp, ": to combine pipeline and ",
             "tensor parallelism, pass --dp D as well (lesson 12's grid of D x P x T ranks; --dp 1 for one replica)");
  SGPT_CHECK(!grid || o.schedule == "1f1b", "--dp runs lesson 12's composition, whose pipeline schedule is 1f1b, ",
             "got --schedule ", o.schedule);
  SGPT_CHECK(!grid || !o.sequence_parallel, "--dp runs lesson 12's composition, whose tensor-parallel stages have no ",
             "sequence parallelism: leave out --sequence-parallel");
  SGPT_CHECK(!grid || (o.zero <= 1 && o.bucket_kib == 0), "--dp runs lesson 12's composition, whose replicas meet ",
             "once per step with one all-reduce, or with --zero 1 ZeRO-1's reduce-scatter and all-gather (lesson 12, ",
             "task 4): --zero ", o.zero, " and --bucket-kib do not combine with it");
  SGPT_CHECK(o.batch % o.micro_batches == 0, "--micro-batches ", o.micro_batches, " does not divide --batch ",
             o.batch, ": each micro-batch must hold the same number of sequences");
  SGPT_CHECK((o.pp == 1 && o.tp == 1) || o.bucket_kib == 0, "--bucket-kib applies to data parallelism only, not to ",
             o.pp > 1 ? "--pp" : "--tp");
  SGPT_CHECK(o.zero == 0 || grid || (o.pp == 1 && o.tp == 1 && o.bucket_kib == 0), "--zero ", o.zero,
             " is data parallelism with sharded state: it does not combine with --pp, --tp or --bucket-kib",
             o.zero == 1 && o.bucket_kib == 0 ? " (ZeRO-1 across the replicas of a pipeline or tensor-parallel layout is "
                                                "lesson 12's grid: pass --dp D too)" : "");
  SGPT_CHECK(o.plan || (!o.given.count("--plan-gpus") && !o.given.count("--plan-gpus-per-node") &&
                        !o.given.count("--plan-memory-gb")),
             "--plan-gpus, --plan-gpus-per-node and --plan-memory-gb apply to --plan only: pass --plan too");
  SGPT_CHECK(o.plan_gpus >= 0, "--plan-gpus must be >= 1 GPU (0 = this job's ranks), got ", o.plan_gpus);
  SGPT_CHECK(o.plan_gpus_per_node >= 1, "--plan-gpus-per-node must be at least 1, got ", o.plan_gpus_per_node);
  SGPT_CHECK(positive(o.plan_memory_gb), "--plan-memory-gb must be a finite number of GB > 0, got ", o.plan_memory_gb);
  SGPT_CHECK(!o.plan || o.resume.empty(), "--plan plans a run without training: it does not take --resume");
}

// The layout's checks that need the world and the model: every rank makes them (run_on_all_ranks),
// so each one prints the same error.
void check_layout(const Options& o, const GPTConfig& cfg, int n_ranks) {
  const int split = o.pp * o.tp;
  if (o.given.count("--dp")) {
    const std::string grid = str("--dp ", o.dp, " --pp ", o.pp, " --tp ", o.tp);
    SGPT_CHECK(o.dp * split == n_ranks, grid, " is a grid of D*P*T = ", o.dp * split, " ranks (mpirun -np ",
               o.dp * split, "), but this job has ", n_ranks);
    SGPT_CHECK(o.dtype == "f32" && o.device == "cpu", grid, " runs lesson 12's CPU code in f32: pass --device cpu ",
               "--dtype f32");
    SGPT_CHECK(o.pp <= cfg.n_layer, "--pp ", o.pp, " asks for more pipeline stages than model '", cfg.name, "' has ",
               "blocks (", cfg.n_layer, "): each stage needs at least one");
    SGPT_CHECK(!cfg.tied_embeddings, grid, " keeps the token embedding (first stage) and the head (last stage) apart, ",
               "but model '", cfg.name, "' ties them: pass --untie-embeddings (to the runs you compare with too)",
               o.resume.empty() ? "" : ", or resume a checkpoint trained with it");
    SGPT_CHECK(cfg.n_head % o.tp == 0 && 4 * cfg.n_embd % o.tp == 0, "--tp ", o.tp, " does not divide the ",
               cfg.n_head, " attention heads and the MLP width 4C = ", 4 * cfg.n_embd, " of model '", cfg.name, "'");
    return;
  }
  if (split == 1) return;
  const char* flag = o.pp > 1 ? "--pp" : "--tp";
  SGPT_CHECK(split == n_ranks, flag, " ", split, " needs exactly ", split, " ranks (mpirun -np ", split,
             "), but this job has ", n_ranks,
             n_ranks > split ? str(" (", o.pp > 1 ? "pipeline" : "tensor",
                                   " parallelism is not combined with data parallelism yet)")
                             : std::string());
  SGPT_CHECK(o.dtype == "f32", "--dtype ", o.dtype, " runs on one rank for now: ", flag, " trains in f32");
  if (o.pp > 1) {
    SGPT_CHECK(o.pp <= cfg.n_layer, "--pp ", o.pp, " asks for more pipeline stages than model '", cfg.name, "' has ",
               "blocks (", cfg.n_layer, "): each stage needs at least one");
    SGPT_CHECK(!cfg.tied_embeddings, "--pp ", o.pp, " puts the token embedding (first stage) and the head (last stage) ",
               "on different ranks, but model '", cfg.name, "' ties them (its head reuses wte, as GPT-2's does): pass ",
               "--untie-embeddings (to the runs you compare with too)",
               o.resume.empty() ? "" : ", or resume a checkpoint trained with it");
  } else {
    SGPT_CHECK(cfg.n_head % o.tp == 0, "--tp ", o.tp, " does not divide the ", cfg.n_head, " attention heads of model '",
               cfg.name, "' (each rank holds whole heads)");
    SGPT_CHECK(4 * cfg.n_embd % o.tp == 0, "--tp ", o.tp, " does not divide the MLP width 4C = ", 4 * cfg.n_embd,
               " of model '", cfg.name, "'");
    SGPT_CHECK(!o.sequence_parallel || o.seq_len % o.tp == 0, "--tp ", o.tp, " does not divide the sequence length ",
               o.seq_len, " (--seq-len): --sequence-parallel gives each rank T/t positions");
    SGPT_CHECK(o.device == "cpu", "--tp runs lesson 10's blocks, which are CPU code: pass --device cpu");
  }
}

// Test-only fault injection, driven by environment variables so that no flag advertises it:
//   SGPT_TEST_KILL_AT_STEP=s       the process kills itself (SIGKILL) when it reaches step s
//   SGPT_TEST_STALL_RANK=r         rank r stops taking part (sleeps) before its gradient
//   SGPT_TEST_STALL_AT_STEP=s      all-reduce of step s (default 1), as a hung rank would
void inject_faults(int64_t step, int rank) {
  static const char* kill_at = std::getenv("SGPT_TEST_KILL_AT_STEP");
  static const char* stall_rank = std::getenv("SGPT_TEST_STALL_RANK");
  static const char* stall_step = std::getenv("SGPT_TEST_STALL_AT_STEP");
  if (kill_at && std::atoll(kill_at) == step) std::raise(SIGKILL);
  if (stall_rank && std::atoi(stall_rank) == rank && (stall_step ? std::atoll(stall_step) : 1) == step) {
    std::fprintf(stderr, "[rank %d] test: stalling at step %lld (SGPT_TEST_STALL_RANK)\n", rank, (long long)step);
    for (;;) std::this_thread::sleep_for(std::chrono::hours(1));
  }
}

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

// Mean validation loss over the first --eval-batches global batches; each rank evaluates its rows
// (its data share, strategy.hpp) and the strategy averages over the data-parallel ranks.
double evaluate(train::Strategy& strategy, const TokenFile& val, const Options& o) {
  const int n_data = strategy.data_ranks();
  DataLoader loader(val, o.batch * n_data, o.seq_len, strategy.data_rank(), n_data);
  Tensor x = Tensor::empty({o.batch, o.seq_len}, DType::I32), y = Tensor::empty({o.batch, o.seq_len}, DType::I32);
  const int64_t n = std::min<int64_t>(o.eval_batches, loader.batches_per_epoch());
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) {
    loader.next(x, y);
    sum += strategy.eval_loss(x, y);
  }
  return strategy.mean_eval_loss(sum / double(n));
}

// --verify CKPT: structure, format, configuration and every checksum, without training.
int verify(const std::string& path) {
  SafeTensorsHeader h = verify_checkpoint(path);
  const GPTConfig cfg = checkpoint_config(path);
  SGPT_CHECK(h.checksummed, path, ": a version 1 checkpoint (written before checkpoints carried checksums): its ",
             "structure is valid but its contents cannot be verified");
  std::printf("%s: OK, %zu tensors and the metadata match their checksums (model %s, step %s)\n", path.c_str(),
              h.tensors.size(), cfg.name.c_str(), h.metadata.at("step").c_str());
  return 0;
}

// What a resumed run must agree with: the checkpoint's flags (as saved in its metadata).
void check_resume_flags(const Options& o, const SafeTensorsHeader& h, int64_t global_batch, int64_t step) {
  SGPT_CHECK(o.steps > step, "--steps ", o.steps, " is not beyond step ", step, " of the checkpoint ", o.resume,
             ": there is nothing to train (pass a larger --steps to go on)");
  SGPT_CHECK(o.stop_at == -1 || o.stop_at > step, "--stop-at ", o.stop_at, " is not beyond step ", step,
             " of the checkpoint ", o.resume);
  auto it = h.metadata.find("train_flags");
  if (it == h.metadata.end()) return;  // written by a tool or an older trainer: nothing to compare
  const auto saved = nlohmann::json::parse(it->second, nullptr, /*allow_exceptions=*/false);
  SGPT_CHECK(saved.is_object(), o.resume, ": the train_flags metadata is damaged");
  auto differ = [&](const std::string& name, const std::string& now) {
    if (!saved.contains(name) || !saved[name].is_string()) return;
    const std::string then = saved[name].get<std::string>();
    SGPT_CHECK(then == now, name, " is ", now, " but the checkpoint ", o.resume, " was trained with ", name, " ",
               then, ": a resumed run continues the same run, so pass the same value (or train a new run without ",
               "--resume)");
  };
  for (const FlagInfo& f : flag_table(o))
    if (f.resume) differ(f.name, f.value);
  differ("global batch (--batch x ranks)", std::to_string(global_batch));
}

int run(Options o, int argc, char** argv) {
  if (!o.verify.empty()) return verify(o.verify);
  // Started under mpirun/srun with several processes, the ranks share the run as the strategy says
  // (strategy.hpp): data parallelism by default. Ranks talk through MPI on the CPU and NCCL on GPUs.
  std::shared_ptr<Communicator> world;
  if (detect_launch().world > 1) {
    SGPT_CHECK(std::isfinite(o.comm_timeout) && o.comm_timeout >= 0, "--comm-timeout must be >= 0, got ",
               o.comm_timeout);
    world = init_distributed(argc, argv, o.device == "cuda" ? Backend::NCCL : Backend::MPI);
    // A rank that stops taking part (hung, deadlocked, dead) ends the job after --comm-timeout.
    world->set_timeout(o.comm_timeout);
    // The ranks must train the same run: compare every flag that must agree (a hash of each).
    std::vector<Setting> agreed;
    for (const FlagInfo& f : flag_table(o))
      if (f.ranks) agreed.push_back({f.name, f.value});
    check_same_on_all_ranks(*world, agreed, "flags");
  }
  const int rank = world ? world->rank() : 0, n_ranks = world ? world->size() : 1;
  const bool writer = rank == 0;  // one rank writes files
  if (o.threads > 0) {
    omp_set_num_threads(o.threads);
    openblas_set_num_threads(o.threads);
  }
  const Device device = o.device == "cuda" ? Device::CUDA : Device::CPU;

  // Set-up: everything that can fail on bad input happens here, before any training, and a
  // failure on any rank stops every rank with the same message.
  std::optional<std::pair<TokenFile, TokenFile>> data;
  std::unique_ptr<train::Strategy> strategy;
  std::optional<DataLoader> loader_slot;
  std::optional<train::MetricsLog> metrics;
  GPTConfig cfg;
  // The parallel strategies run the course's code (the reference in the instructors' tree, your
  // files in the student release, where an unfinished task stops every rank here).
  TrainState state;
  run_on_all_ranks(world.get(), [&] {
    validate_flags(o);
    // --out first: a read-only or misnamed directory is reported before anything slow happens.
    if (writer && !o.plan)
      for (const std::string& f : train::prepare_out_dir(o.out_dir, {"checkpoint.safetensors", "metrics.jsonl", "loss.svg"}))
        log_info("removed ", f, ", an orphan temporary file of an earlier run that was killed while writing");
    int64_t resume_step = -1;
    if (!o.resume.empty()) {
      const SafeTensorsHeader h = read_safetensors_header(o.resume);  // verifies the metadata checksum
      cfg = checkpoint_config(o.resume);
      SGPT_CHECK(!o.untie_embeddings || !cfg.tied_embeddings, "--untie-embeddings, but the checkpoint ", o.resume,
                 " holds model '", cfg.name, "' with tied embeddings (a resumed run keeps its model)");
      SGPT_CHECK(!o.given.count("--model") || o.model == cfg.name, "--model ", o.model, " but the checkpoint ",
                 o.resume, " holds model '", cfg.name, "' (leave out --model when resuming, or pass --model ",
                 cfg.name, ")");
      o.model = cfg.name;
      try {
        resume_step = std::stoll(h.metadata.at("step"));
      } catch (const std::exception&) {
        SGPT_FAIL(o.resume, ": the checkpoint's step is missing or damaged");
      }
    } else {
      cfg = gpt_config(o.model);
      if (o.untie_embeddings) {
        cfg.tied_embeddings = false;  // the head gets its own matrix (initialised from the seed like wte)
        cfg.validate();
      }
    }
    const GPTConfig preset = cfg;  // --plan without --data plans the preset's vocabulary (GPT-2's for d12 ...)
    data.emplace(open_data(o));
    if (cfg.vocab_size != data->first.vocab_size()) cfg.set_vocab(static_cast<int>(data->first.vocab_size()));
    if (o.seq_len == 0) o.seq_len = std::min<int64_t>(128, cfg.max_seq_len);
    SGPT_CHECK(o.seq_len <= cfg.max_seq_len, "--seq-len ", o.seq_len, " is longer than the context ", cfg.max_seq_len,
               " of model '", cfg.name, "'");
    if (o.plan) {  // lesson 12's planner, no training
      train::PlanRequest p;
      p.cfg = o.given.count("--data") ? cfg : preset;
      p.seq_len = o.seq_len;
      p.global_batch = o.batch * o.dp;  // --batch rows per replica, as a run of the layout trains
      p.dtype = o.dtype;
      p.gpus = o.plan_gpus > 0 ? o.plan_gpus : n_ranks;
      p.gpus_per_node = o.plan_gpus_per_node;
      p.memory_gb = o.plan_memory_gb;
      if (o.given.count("--dp")) {
        p.given = lesson12::Layout{o.dp, o.pp, o.tp, o.batch / o.micro_batches, o.zero, lesson12::Recompute::None,
                                   lesson12::Schedule::OneFOneB};
      }
      if (writer) train::print_plan(p);
      return;
    }
    check_layout(o, cfg, n_ranks);
    const int n_data = n_ranks / (o.pp * o.tp);  // ranks with their own rows of each global batch
    if (!o.resume.empty())
      check_resume_flags(o, read_safetensors_header(o.resume), o.batch * n_data, resume_step);
    // Both loaders check here that their file holds at least one global batch.
    const int data_rank = rank / (o.pp * o.tp);  // the grid's replica (rank = (dp * P + pp) * T + tp)
    loader_slot.emplace(data->first, o.batch * n_data, o.seq_len, data_rank, n_data);
    DataLoader(data->second, o.batch * n_data, o.seq_len, data_rank, n_data);

    train::StrategySetup setup;
    setup.cfg = cfg;
    setup.seed = o.seed;
    setup.adamw.lr = o.lr;
    setup.adamw.weight_decay = o.weight_decay;
    setup.device = device;
    setup.dtype = o.dtype;
    setup.recompute_gelu = o.recompute == "gelu";
    setup.loss_scale = o.loss_scale;
    setup.loss_scale_window = o.loss_scale_window;
    setup.batch = o.batch;
    setup.seq_len = o.seq_len;
    const bool one_device = !o.given.count("--dp") && o.pp == 1 && o.tp == 1 && o.zero == 0 && !world;
    SGPT_CHECK(!setup.recompute_gelu || one_device, "--recompute gelu applies to one process on one device for now ",
               "(the single-device GPT), not to --dp, --pp, --tp, --zero or mpirun jobs");
    if (o.given.count("--dp"))
      strategy = train::make_parallel_3d(setup, world, o.dp, o.pp, o.tp, o.micro_batches, o.zero);
    else if (o.pp > 1)
      strategy = train::make_pipeline_parallel(setup, world, o.micro_batches, o.schedule);
    else if (o.tp > 1)
      strategy = train::make_tensor_parallel(setup, world, o.sequence_parallel);
    else if (o.zero > 0)
      strategy = train::make_zero(setup, world, o.zero);
    else if (world)
      strategy = train::make_data_parallel(setup, world, o.bucket_kib);
    else
      strategy = train::make_single_device(setup);

    SGPT_CHECK(strategy->data_ranks() == n_data && strategy->data_rank() == data_rank, "internal: the strategy reads ",
               "share ", strategy->data_rank(), " of ", strategy->data_ranks(), ", the loaders ", data_rank, " of ", n_data);
    state.seed = o.seed;
    if (!o.resume.empty()) {
      state = strategy->load(o.resume);  // verifies every checksum
      loader_slot->set_state({state.data_position, state.data_epoch});
    }
    if (writer) metrics.emplace(o.out_dir + "/metrics.jsonl", o.resume.empty() ? -1 : state.step);
  });
  if (o.plan) return 0;
  if (!o.resume.empty()) log_info("resumed from ", o.resume, " at step ", state.step);
  auto& [train, val] = *data;
  DataLoader& loader = *loader_slot;
  const int n_data = strategy->data_ranks();

  // Per rank: its rows, and its part of the model's work.
  const double flops_per_step =
      training_flops_per_token(cfg, o.seq_len) * double(o.batch * o.seq_len) / double(strategy->model_parts());
  // MFU's peak: --peak-tflops, else the best of many short GEMMs (measure_peak_flops): f32, or on a
  // GPU with --dtype bf16 bf16 (its products run at the bf16 rate; against the f32/TF32 peak a bf16
  // run's MFU would read about twice too high). A step that computes faster than that proves the
  // peak low (measured at a busy moment): the peak then becomes the best rate achieved, so MFU
  // never exceeds 100%.
  const DType peak_dtype = device == Device::CUDA && o.dtype == "bf16" ? DType::BF16 : DType::F32;
  double peak = o.peak_tflops > 0 ? o.peak_tflops * 1e12 : measure_peak_flops(device, 1.0, peak_dtype);
  log_info("model ", cfg.name, ": ", human(double(cfg.num_parameters())), " parameters, L=", cfg.n_layer,
           " C=", cfg.n_embd, " NH=", cfg.n_head, " V=", cfg.vocab_size, " | data ", train.path(), ": ",
           human(double(train.size())), " train / ", human(double(val.size())), " val tokens");
  log_info("batch ", o.batch, " x ", o.seq_len, " tokens", strategy->describe(),
           ", ", o.steps, " steps, lr ", o.lr, ", ", o.dtype, " on ", device_name(device), " (", omp_get_max_threads(),
           " threads", n_ranks > 1 ? " per rank" : "", "); MFU against a measured ", peak_dtype == DType::BF16 ? "bf16 " : "", "peak of ", human(peak / 1e9),
           " GFLOP/s", n_ranks > 1 ? " per rank" : "");
  PlotSeries train_curve{"train loss", {}, {}, "#1f77b4"}, val_curve{"val loss", {}, {}, "#d62728", true};
  // A resumed run keeps the history before its step (for the plot).
  if (metrics)
    for (const nlohmann::json& j : metrics->kept()) {
      if (j.contains("loss")) train_curve.x.push_back(j["step"]), train_curve.y.push_back(j["loss"]);
      if (j.contains("val_loss")) val_curve.x.push_back(j["step"]), val_curve.y.push_back(j["val_loss"]);
    }
  auto log_metrics = [&](const nlohmann::json& j) {
    if (metrics) metrics->append(j);
  };
  auto write_plot = [&] {
    if (writer)
      train::write_text_atomic(o.out_dir + "/loss.svg",
                               line_chart_svg("ScaleGPT " + cfg.name + " on " + train.path(), "step",
                                              "cross-entropy loss (nats/token)", {train_curve, val_curve}));
  };
  // The flags a resumed run must repeat (checked by check_resume_flags).
  nlohmann::json train_flags = nlohmann::json::object();
  for (const FlagInfo& f : flag_table(o))
    if (f.resume) train_flags[f.name] = f.value;
  train_flags["global batch (--batch x ranks)"] = std::to_string(o.batch * n_data);
  const bool tty = isatty(fileno(stderr)) && !o.quiet && writer;
  Tensor x = Tensor::empty({o.batch, o.seq_len}, DType::I32), y = Tensor::empty({o.batch, o.seq_len}, DType::I32);
  double val_loss = NAN;
  std::vector<double> step_times;
  auto save = [&](int64_t step) {
    TrainState s = state;
    s.step = step;
    s.extra["train_flags"] = train_flags.dump();
    LoaderState ls = loader.state();
    s.data_position = ls.position;
    s.data_epoch = ls.epoch;
    strategy->save(o.out_dir + "/checkpoint.safetensors", s);  // collective: rank 0 writes
    write_plot();
    if (world) world->barrier();  // nobody resumes from a checkpoint that is still being written
  };

  for (int64_t step = state.step; step <= o.steps; ++step) {
    const bool last = step == o.steps;
    if (o.eval_every > 0 && (step % o.eval_every == 0 || last)) {
      val_loss = evaluate(*strategy, val, o);
      val_curve.x.push_back(double(step));
      val_curve.y.push_back(val_loss);
      log_metrics({{"step", step}, {"val_loss", val_loss}});
      if (!tty) log_info("step ", step, " | val loss ", val_loss);
    }
    if (last) break;
    if (step == o.stop_at) {
      save(step);
      log_info("stopped at step ", step, " as asked (--stop-at); continue with --resume ", o.out_dir,
               "/checkpoint.safetensors");
      return 0;
    }
    inject_faults(step, rank);
    Timer t;
    loader.next(x, y);
    const double lr = lr_at(step, o.warmup, o.steps, o.lr, o.lr * o.min_lr_frac);
    const train::StepResult r = strategy->step(x, y, lr, o.clip);
    const double loss = r.loss, norm = r.grad_norm;
    device_synchronize(device);
    const double dt = t.seconds();
    if (step > state.step) step_times.push_back(dt);  // the first step warms up
    SGPT_CHECK(std::isfinite(loss), "the loss became ", loss, " at step ", step, " (try a lower --lr)");
    if (flops_per_step / dt > peak) {
      log_info("step ", step, " ran at ", human(flops_per_step / dt / 1e9), " GFLOP/s, above the measured peak of ",
               human(peak / 1e9), " GFLOP/s: MFU is reported against the best rate achieved from now on");
      peak = flops_per_step / dt;
    }
    const double tok_s = double(o.batch * o.seq_len * n_data) / dt, mfu = flops_per_step / dt / peak;
    train_curve.x.push_back(double(step));
    train_curve.y.push_back(loss);
    log_metrics({{"step", step}, {"loss", loss}, {"lr", lr}, {"grad_norm", norm}, {"step_s", dt},
                 {"tokens_per_s", tok_s}, {"mfu", mfu}});
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
  save(o.steps);  // the checkpoint and loss.svg; each write is checked, so "wrote" below is true
  const double med = median(step_times);
  const std::string speed = step_times.empty()
                                ? std::string("no timed steps")
                                : str("median step ", med * 1e3, " ms, ", human(double(o.batch * o.seq_len * n_data) / med),
                                      " tokens/s, ", flops_per_step / med / 1e9, " GFLOP/s (MFU ",
                                      100 * flops_per_step / med / peak, "%)");
  const std::string final_val =
      o.eval_every > 0 ? str("final val loss ", val_loss) : std::string("no validation (--eval-every 0)");
  log_info("done: ", final_val, " | ", speed, " | wrote ", o.out_dir,
           "/{checkpoint.safetensors, metrics.jsonl, loss.svg}");
  log_info(MemoryTracker::instance().report(device));

  GPT* whole = o.sample_tokens > 0 ? strategy->whole_model() : nullptr;  // collective
  if (o.sample_tokens > 0 && writer) {
    ByteTokenizer tok;
    std::vector<int32_t> prompt = tok.encode(o.prompt);
    if (cfg.vocab_size != tok.vocab_size()) prompt = {0};
    auto out = generate(*whole, prompt, o.sample_tokens, o.temperature, o.seed);
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
  app.add_option("-b,--batch", o.batch, "sequences per step (B), per data-parallel rank")->capture_default_str();
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
  app.add_option("-o,--out", o.out_dir, "directory for checkpoint, metrics and plot (default: runs/<model>)");
  app.add_option("--checkpoint-every", o.checkpoint_every, "also checkpoint every N steps")->capture_default_str();
  app.add_option("--stop-at", o.stop_at, "save a checkpoint and exit before this step (for time-limited jobs)");
  app.add_option("--resume", o.resume, "continue from a checkpoint (same flags otherwise)");
  app.add_option("--device", o.device, "cpu or cuda")->capture_default_str();
  app.add_option("--dtype", o.dtype, "f32, or bf16/fp16 with fp32 master weights (lesson 05)")->capture_default_str();
  app.add_option("--recompute", o.recompute,
                 "none, or gelu: keep GELU's input only and recompute its output in the backward (the same "
                 "numbers, L*4*B*T*C fewer activations; one device)")
      ->capture_default_str();
  app.add_option("--loss-scale", o.loss_scale, "fp16: the first dynamic loss scale (halved after an overflow)")
      ->capture_default_str();
  app.add_option("--loss-scale-window", o.loss_scale_window, "fp16: good steps in a row before the loss scale "
                 "doubles")->capture_default_str();
  app.add_option("--threads", o.threads, "CPU threads (default: all cores)");
  app.add_option("--sample-tokens", o.sample_tokens, "tokens to sample at the end")->capture_default_str();
  app.add_option("--prompt", o.prompt, "prompt for the sample")->capture_default_str();
  app.add_option("--temperature", o.temperature, "sampling temperature")->capture_default_str();
  app.add_option("--peak-tflops", o.peak_tflops, "peak for MFU (default: measured matmul speed)");
  app.add_option("--log-every", o.log_every, "steps between log lines when not on a terminal")->capture_default_str();
  app.add_option("--bucket-kib", o.bucket_kib, "data parallelism: gradient buckets of this many KiB all-reduced "
                 "during backward (lesson 07); 0: one all-reduce after backward (lesson 06)")->capture_default_str();
  app.add_option("--pp", o.pp, "pipeline parallelism: stages, one per rank (mpirun -np P; lessons 08 and 09)")
      ->capture_default_str();
  app.add_option("--micro-batches", o.micro_batches, "pipeline: micro-batches per --batch (must divide it)")
      ->capture_default_str();
  app.add_option("--schedule", o.schedule, "pipeline schedule: gpipe (lesson 08) or 1f1b (lesson 09)")
      ->capture_default_str();
  app.add_option("--tp", o.tp, "tensor parallelism: ranks sharing every block (mpirun -np T; lesson 10)")
      ->capture_default_str();
  app.add_flag("--sequence-parallel", o.sequence_parallel,
               "tensor parallelism: shard LayerNorm and residual activations along the sequence (lesson 10)");
  app.add_flag("--untie-embeddings", o.untie_embeddings,
               "give the head its own matrix instead of reusing wte (needed by --pp)");
  app.add_option("--dp", o.dp, "with --pp/--tp: data-parallel replicas of lesson 12's grid (mpirun -np D*P*T; "
                 "--batch rows per replica, 1F1B, f32, CPU)")->capture_default_str();
  app.add_flag("--plan", o.plan, "print lesson 12's planner's best layouts for this model, --batch x --dp rows per "
               "step and --plan-gpus GPUs, and where --dp/--pp/--tp stands; no training");
  app.add_option("--plan-gpus", o.plan_gpus, "--plan: GPUs to plan for (default: this job's ranks)");
  app.add_option("--plan-gpus-per-node", o.plan_gpus_per_node, "--plan: GPUs per node")->capture_default_str();
  app.add_option("--plan-memory-gb", o.plan_memory_gb, "--plan: memory per GPU in GB")->capture_default_str();
  app.add_option("--zero", o.zero, "ZeRO stage 1, 2 or 3 under mpirun (lesson 11; f32 or --dtype bf16, needs "
                 "--untie-embeddings); with --dp: 1, across the grid's replicas (lesson 12, task 4)")
      ->capture_default_str();
  app.add_flag("-q,--quiet", o.quiet, "no live progress line");
  app.add_option("--comm-timeout", o.comm_timeout,
                 "seconds a rank may wait for the others in a collective before the job is aborted (0 = forever)")
      ->capture_default_str();
  app.add_option("--verify", o.verify, "check a checkpoint's checksums and exit (no training)");
  CLI11_PARSE(app, argc, argv);
  // Each model its own folder (runs/micro, runs/nano, ...); a resumed run goes on in its checkpoint's.
  if (o.out_dir.empty())
    o.out_dir = o.resume.empty() ? "runs/" + o.model
                                 : std::filesystem::path(o.resume).parent_path().lexically_normal().string();
  if (o.out_dir.empty()) o.out_dir = ".";
  return run_guarded("scalegpt-train", [&] {
    // Every flag must be in flag_table, which says whether it must agree between ranks and on resume.
    std::set<std::string> listed;
    for (const FlagInfo& f : flag_table(o)) listed.insert(f.name);
    for (const CLI::Option* opt : app.get_options()) {
      const std::string name = opt->get_name();
      if (name == "--help") continue;
      SGPT_CHECK(listed.count(name), "internal: flag ", name, " is missing from flag_table in ", __FILE__,
                 " (list it, saying whether ranks and resumed runs must agree on it)");
      if (opt->count() > 0) o.given.insert(name);
    }
    try {
      return run(o, argc, argv);
    } catch (const CollectiveError&) {
      throw;  // every rank has it at the same point: each prints it and exits 1, nobody waits
    } catch (const std::exception& e) {
      // Only this rank failed: end the others too, rather than leave them waiting for it.
      if (detect_launch().world > 1) abort_all(str("scalegpt-train: ", e.what()));
      throw;
    }
  });
}
