#pragma once
/// @file pipeline_testing.hpp
/// @brief Test helpers of the pipeline lessons (08, 09): a small untied f64 model with a padded
/// vocabulary, the single-device reference run, a watchdog that turns a deadlock into a failure
/// within seconds, pipelines on in-process ranks with synchronous sends (a send completes only
/// when its recv is posted, as on NCCL) or on the MPI world, trace capture, and the equivalence
/// check against the single device. Header-only; include it from GoogleTest programs.

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "comm/communicator.hpp"
#include "comm/testing/mpi_test.hpp"
#include "core/testing.hpp"
#include "core/trace.hpp"
#include "model/gpt.hpp"
#include "model/pipeline_stage.hpp"
#include "optim/optim.hpp"
#include "parallel/pipeline_types.hpp"

namespace sgpt::testing {

/// L blocks, 2 heads, C = 8, T = 8, V = 19 padded to 24, untied: every stage count 1..L works.
inline GPTConfig pipeline_config(int L = 5) {
  GPTConfig c;
  c.name = "pp-test";
  c.n_layer = L;
  c.n_head = 2;
  c.n_embd = 8;
  c.max_seq_len = 8;
  c.vocab_size = 19;
  c.padded_vocab_size = 24;
  c.tied_embeddings = false;
  return c;
}

/// Batches of B rows of T tokens (T = the context by default).
inline Tensor pipeline_tokens(const GPTConfig& c, int64_t B, uint64_t seed, int64_t T = 0) {
  return random_tokens(B, T ? T : c.max_seq_len, c.vocab_size, seed, "pipeline-tokens");
}
/// Targets for the same batch shape (an independent stream).
inline Tensor pipeline_targets(const GPTConfig& c, int64_t B, uint64_t seed, int64_t T = 0) {
  return random_tokens(B, T ? T : c.max_seq_len, c.vocab_size, seed, "pipeline-targets");
}

/// The AdamW settings of the tests (weight decay on, so decayed and undecayed parameters differ).
inline AdamWConfig adamw() {
  AdamWConfig a;
  a.weight_decay = 0.1;
  return a;
}

/// The single-device run: the whole model, one batch of B rows, AdamW on the whole buffer.
struct Reference {
  GPT model;   ///< the whole model, f64
  AdamW opt;   ///< AdamW over its whole buffer
  /// The model `c` initialised from `seed`.
  Reference(const GPTConfig& c, uint64_t seed)
      : model(c, seed, Device::CPU, DType::F64), opt(model.layout(), adamw(), DType::F64, Device::CPU) {}
  /// One step on the batch (x, y): zero, forward, backward, AdamW. Returns the loss.
  double step(const Tensor& x, const Tensor& y, double lr) {
    model.zero_grad();
    const double loss = model.forward(x, y);
    model.backward();
    opt.step(model.params(), model.grads(), lr);
    return loss;
  }
};

/// Fills t (f64) with a value, e.g. to start from dirty gradients.
inline void fill(Tensor& t, double v) { t.copy_from(Tensor::from(std::vector<double>(t.numel(), v), {t.numel()})); }

/// max |a - b| over elements [begin, end) of b; a has end - begin elements.
inline double max_diff(const Tensor& a, const Tensor& b, int64_t begin, int64_t end) {
  const std::vector<double> x = a.to_vector(), y = b.to_vector();
  double m = 0;
  for (int64_t i = begin; i < end; ++i) m = std::max(m, std::abs(x[i - begin] - y[i]));
  return m;
}
/// max |t|.
inline double max_abs(const Tensor& t) {
  double m = 0;
  for (double x : t.to_vector()) m = std::max(m, std::abs(x));
  return m;
}

/// Ends the process with a message when the work it guards has not finished after `seconds`: a
/// deadlocked schedule fails its test within the time limit instead of hanging until ctest or the
/// grader kills it. (Every graded test runs in its own process.)
class Watchdog {
 public:
  /// Starts watching: after `seconds` without destruction, prints `what` and ends the process.
  Watchdog(double seconds, std::string what)
      : seconds_(seconds), what_(std::move(what)), thread_([this] { watch(); }) {}
  /// Stops watching.
  ~Watchdog() {
    {
      std::lock_guard lk(mu_);
      done_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;

 private:
  void watch() {
    std::unique_lock lk(mu_);
    if (cv_.wait_for(lk, std::chrono::duration<double>(seconds_), [&] { return done_; })) return;
    std::fprintf(stderr,
                 "\n[watchdog] %s did not finish within %.0f s: the pipeline deadlocked (a rank waits for a "
                 "message that is never sent, or a send waits for a recv that is never posted). Failing.\n",
                 what_.c_str(), seconds_);
    std::fflush(stderr);
    std::_Exit(3);
  }
  double seconds_;
  std::string what_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  std::thread thread_;
};

/// Sends complete only once the matching recv is posted (threads and MPI backends, see
/// Communicator::send), so an order that needs buffering deadlocks here as it would on NCCL.
inline void synchronous_sends() { setenv("SGPT_SYNC_SEND", "1", 1); }

/// Runs fn on p in-process ranks (threads backend) with synchronous sends, under a watchdog.
inline void on_threads(int p, const std::function<void(Communicator&)>& fn, double seconds = 30) {
  synchronous_sends();
  Watchdog w(seconds, "a pipeline on " + std::to_string(p) + " thread ranks");
  run_threads(p, fn);
}

/// Runs fn on the MPI world of this test run (one rank when the grader runs the binary directly,
/// N under mpirun -np N), under a watchdog.
inline void on_world(const std::function<void(Communicator&)>& fn, double seconds = 30) {
  synchronous_sends();
  Watchdog w(seconds, "a pipeline on the MPI world");
  fn(world());
}

/// In-process groups are run by world rank 0 only: under mpirun the other ranks would repeat the
/// same work on the same two cores.
inline bool runs_thread_groups() { return world().rank() == 0; }

/// Records the trace of what runs in its scope into the process-wide recorder (run_threads
/// appends every rank's events there when the group ends).
class TraceCapture {
 public:
  /// Clears the process-wide recorder and turns it on.
  TraceCapture() : was_(TraceRecorder::global().enabled()) {
    TraceRecorder::global().clear();
    TraceRecorder::global().set_enabled(true);
  }
  /// Restores the recorder's state and clears it.
  ~TraceCapture() {
    TraceRecorder::global().set_enabled(was_);
    TraceRecorder::global().clear();
  }
  /// Every event recorded so far (all ranks of the thread groups that have ended).
  std::vector<TraceEvent> events() const { return TraceRecorder::global().events(); }

 private:
  bool was_;
};

/// Parameters of one block, from the shapes (not from the layout).
inline int64_t block_params(const GPTConfig& c) {
  const int64_t C = c.n_embd;
  return 12 * C * C + 13 * C;
}
/// Parameters of wte and wpe.
inline int64_t embedding_params(const GPTConfig& c) {
  return int64_t(c.padded_vocab_size) * c.n_embd + int64_t(c.max_seq_len) * c.n_embd;
}
/// Parameters of the final LayerNorm and lm_head (untied).
inline int64_t head_params(const GPTConfig& c) { return 2 * int64_t(c.n_embd) + int64_t(c.padded_vocab_size) * c.n_embd; }

/// The exception message fn throws ("" when it throws nothing; a stub's says "not implemented").
inline std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

/// Runs `steps` pipeline steps (`step`, stages from `spec`) of p stages and m micro-batches on p
/// thread ranks (or the MPI world when `world`), and the same steps on one device, from dirty
/// gradients; expects equal loss (1e-12 relative), gradients (1e-10 max|g|) and parameters (1e-9)
/// in f64. Batches are B rows of T tokens (T = 0: the context).
inline void expect_pipeline_equivalent(const StageSpecFn& spec, const PipelineStepFn& step, const GPTConfig& cfg,
                                       int p, int m, int64_t B, int steps, bool world = false, uint64_t seed0 = 100,
                                       int64_t T = 0) {
  const uint64_t seed = seed0 + p * 10 + m;
  const double lr = 1e-2;
  Reference ref(cfg, seed);
  std::vector<double> ref_loss;
  std::vector<Tensor> xs, ys;
  for (int s = 0; s < steps; ++s) {
    xs.push_back(pipeline_tokens(cfg, B, seed + s, T));
    ys.push_back(pipeline_targets(cfg, B, seed + s, T));
    ref_loss.push_back(ref.step(xs[s], ys[s], lr));
  }
  auto run = [&](Communicator& comm) {
    const std::string at = "[p=" + std::to_string(p) + " m=" + std::to_string(m) + " rank " +
                           std::to_string(comm.rank()) + "]";
    PipelineStage stage(cfg, spec(cfg, p, comm.rank()), seed, DType::F64);
    const StageSpec& sp = stage.spec();
    AdamW opt(stage.layout(), adamw(), DType::F64, Device::CPU, sp.param_begin, sp.num_params());
    fill(stage.grads(), 3.0);  // dirty gradients: the step must start from zero
    for (int s = 0; s < steps; ++s) {
      const double loss = step(comm, stage, opt, xs[s], ys[s], m, lr);
      if (sp.is_last())
        EXPECT_NEAR(loss, ref_loss[s], 1e-12 * std::abs(ref_loss[s])) << at << " loss of step " << s;
      else
        EXPECT_TRUE(std::isnan(loss)) << at << " only the last stage returns the loss";
    }
    const double gmax = max_abs(ref.model.grads());
    EXPECT_LE(max_diff(stage.grads(), ref.model.grads(), sp.param_begin, sp.param_end), 1e-10 * gmax)
        << at << " gradients of the last step";
    EXPECT_LE(max_diff(stage.params(), ref.model.params(), sp.param_begin, sp.param_end), 1e-9)
        << at << " parameters after " << steps << " steps";
    EXPECT_EQ(stage.in_flight(), 0) << at << " micro-batches left in flight after the step";
  };
  if (world)
    on_world(run);
  else
    on_threads(p, run);
}

}  // namespace sgpt::testing
