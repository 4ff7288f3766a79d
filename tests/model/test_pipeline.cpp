// The pipeline pieces of common/: PipelineStage (a stage equals its slice of the single-device
// model; clear errors for specs it cannot run; micro-batches in flight), the schedule simulator
// (costs, deadlock and malformed lists), and synchronous sends on the threads backend (SGPT_SYNC_SEND=1: a send completes only once its recv is posted).

#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <thread>

#include "comm/communicator.hpp"
#include "core/testing.hpp"
#include "model/gpt.hpp"
#include "model/pipeline_schedule.hpp"
#include "model/pipeline_stage.hpp"
#include "model/layout.hpp"

namespace sgpt {
namespace {

GPTConfig small(int L) {
  GPTConfig c;
  c.name = "pp-lib-test";
  c.n_layer = L;
  c.n_head = 2;
  c.n_embd = 8;
  c.max_seq_len = 8;
  c.vocab_size = 11;
  c.padded_vocab_size = 16;
  c.tied_embeddings = false;
  return c;
}

// The two stages of a 3-block model, blocks {0, 1} and {2}, written out by hand: the general split
// is what lesson 08's students write (lesson08::stage_spec), and common/ holds no copy of it.
StageSpec two_stages_of_three(const GPTConfig& cfg, int stage) {
  const ParameterLayout layout(cfg);
  StageSpec s;
  s.stage = stage;
  s.num_stages = 2;
  s.first_layer = stage == 0 ? 0 : 2;
  s.end_layer = stage == 0 ? 2 : 3;
  s.param_begin = stage == 0 ? 0 : layout.layer_range(2).first;
  s.param_end = stage == 0 ? layout.layer_range(1).second : layout.numel();
  return s;
}

double max_diff(const std::vector<double>& a, const std::vector<double>& b) {
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(a[i] - b[i]));
  return m;
}

}  // namespace

// Two stages run one after the other on one thread equal the whole model: same loss, and the
// concatenated gradients equal the model's gradient buffer.
TEST(PipelineStage, TwoStagesEqualTheWholeModel) {
  const GPTConfig cfg = small(3);
  const Tensor x = testing::random_tokens(2, 8, cfg.vocab_size, 1), y = testing::random_tokens(2, 8, cfg.vocab_size, 2);
  GPT whole(cfg, 5, Device::CPU, DType::F64);
  const double want = whole.forward(x, y);
  whole.backward(0.5);
  PipelineStage s0(cfg, two_stages_of_three(cfg, 0), 5, DType::F64);
  PipelineStage s1(cfg, two_stages_of_three(cfg, 1), 5, DType::F64);
  Tensor h = s0.forward(7, x);
  s1.forward(7, h, y);
  EXPECT_NEAR(s1.loss(7), want, 1e-13);
  EXPECT_EQ(s0.in_flight(), 1);
  Tensor dh = s1.backward(7, Tensor(), 0.5);
  EXPECT_FALSE(s0.backward(7, dh, 0.5).defined()) << "the first stage returns no input gradient";
  EXPECT_EQ(s0.in_flight(), 0);
  EXPECT_EQ(s1.peak_in_flight(), 1);
  std::vector<double> g = s0.grads().to_vector(), g1 = s1.grads().to_vector();
  g.insert(g.end(), g1.begin(), g1.end());
  EXPECT_LE(max_diff(g, whole.grads().to_vector()), 1e-14);
}

TEST(PipelineStage, SpecsItCannotRunAreClearErrors) {
  const GPTConfig cfg = small(3);
  StageSpec s = two_stages_of_three(cfg, 1);
  s.param_begin += 1;  // misses a parameter of its first block
  EXPECT_THROW(PipelineStage(cfg, s, 1), Error);
  s = two_stages_of_three(cfg, 0);
  s.first_layer = 1;  // the first stage must start at block 0
  EXPECT_THROW(PipelineStage(cfg, s, 1), Error);
  GPTConfig tied = cfg;
  tied.tied_embeddings = true;
  EXPECT_THROW(PipelineStage(tied, two_stages_of_three(cfg, 1), 1), Error);
  PipelineStage ok(cfg, two_stages_of_three(cfg, 0), 1);
  EXPECT_THROW(ok.backward(0, Tensor()), Error) << "backward of a micro-batch not in flight";
}

TEST(PipelineSchedule, SimulatorCostsDeadlocksAndMalformedLists) {
  // One stage: F0 B0 F1 B1, costs 1 and 3.
  PipelineTimeline t = simulate_pipeline({parse_pipe_ops("F0 B0 F1 B1")}, 1, 3);
  EXPECT_EQ(t.makespan, 8);
  EXPECT_EQ(t.bubble(), 0);
  // Two stages, GPipe with m = 1: rank 1 waits for F0, rank 0 for B0.
  t = simulate_pipeline({parse_pipe_ops("F0 B0"), parse_pipe_ops("F0 B0")}, 1, 2);
  EXPECT_EQ(t.makespan, 6);
  EXPECT_EQ(t.ranks[1][0].start, 1);
  EXPECT_EQ(t.ranks[0][1].start, 4);
  EXPECT_NEAR(t.bubble(), 0.5, 1e-15);
  // Rank 0 wants B1 before F1 can reach rank 1: a deadlock, reported.
  EXPECT_THROW(simulate_pipeline({parse_pipe_ops("F0 B0 B1 F1"), parse_pipe_ops("F0 B0 F1 B1")}), Error);
  EXPECT_THROW(simulate_pipeline({parse_pipe_ops("F0 F0")}), Error) << "an operation twice";
  EXPECT_THROW(simulate_pipeline({parse_pipe_ops("F0 B0"), parse_pipe_ops("F0 B0 F1 B1")}), Error);
  EXPECT_THROW(parse_pipe_ops("F0 X1"), Error);
  EXPECT_EQ(pipe_ops_string(parse_pipe_ops("F0 F1 B1 B0")), "F0 F1 B1 B0");
}

TEST(SynchronousSends, SendCompletesOnlyOnceItsRecvIsPosted) {
  setenv("SGPT_SYNC_SEND", "1", 1);
  run_threads(2, [](Communicator& c) {
    Tensor t = Tensor::zeros({4}, DType::F32);
    if (c.rank() == 0) {
      Work w = c.send_async(t, 1);
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      EXPECT_FALSE(w.test()) << "rank 1 has not posted its recv yet";
      c.barrier();
      w.wait();
    } else {
      c.barrier();
      c.recv(t, 0);
    }
    // Both directions at once in one send_recv completes under synchronous sends.
    Tensor in = Tensor::zeros({4}, DType::F32);
    c.send_recv(t, 1 - c.rank(), in, 1 - c.rank());
  });
  unsetenv("SGPT_SYNC_SEND");
}

}  // namespace sgpt
