// Lesson 12 (given): the planner's layout check and the alpha-beta cost of a message.

#include <string>

#include "comm/communicator.hpp"
#include "core/check.hpp"
#include "planner.hpp"

namespace sgpt::lesson12 {

std::string Layout::str() const {
  return "dp" + std::to_string(dp) + " pp" + std::to_string(pp) + " tp" + std::to_string(tp) + " mb" +
         std::to_string(micro_batch) + " z" + std::to_string(zero) +
         (schedule == Schedule::GPipe ? " gpipe" : " 1f1b") + (recompute == Recompute::Full ? " rc" : "");
}

void check_layout(const Job& job, int world, const Layout& l) {
  const GPTConfig& cfg = job.cfg;
  const std::string at = "layout " + l.str() + ": ";
  SGPT_CHECK(l.dp >= 1 && l.pp >= 1 && l.tp >= 1, at, "every dimension must be >= 1");
  SGPT_CHECK(l.dp * l.pp * l.tp == world, at, "dp*pp*tp = ", l.dp * l.pp * l.tp, " is not the world size ", world);
  SGPT_CHECK(cfg.n_head % l.tp == 0, at, "tp = ", l.tp, " does not divide the ", cfg.n_head, " heads");
  SGPT_CHECK((4 * cfg.n_embd) % l.tp == 0, at, "tp = ", l.tp, " does not divide the MLP width ", 4 * cfg.n_embd);
  SGPT_CHECK(l.pp <= cfg.n_layer, at, "pp = ", l.pp, " stages for ", cfg.n_layer, " layers (at most one stage per layer)");
  SGPT_CHECK(l.micro_batch >= 1 && job.global_batch % (l.dp * l.micro_batch) == 0, at, "dp*mb = ",
             l.dp * l.micro_batch, " does not divide the global batch of ", job.global_batch, " rows");
  SGPT_CHECK(l.zero >= 0 && l.zero <= 3, at, "ZeRO stage ", l.zero, " is not 0, 1, 2 or 3");
  SGPT_CHECK(!cfg.tied_embeddings, at, "the 3D model needs untied embeddings (tied_embeddings = false)");
  SGPT_CHECK(job.seq_len >= 1 && job.seq_len <= cfg.max_seq_len, at, "sequence length ", job.seq_len,
             " is outside [1, ", cfg.max_seq_len, "]");
}

StageSpec plan_stage(const GPTConfig& cfg, int pp, int r) {
  SGPT_CHECK(pp >= 1 && pp <= cfg.n_layer && r >= 0 && r < pp, "plan_stage: stage ", r, " of ", pp, " for ",
             cfg.n_layer, " layers");
  const ShardRange blocks = shard_range(cfg.n_layer, pp, r);
  StageSpec s;
  s.stage = r;
  s.num_stages = pp;
  s.first_layer = static_cast<int>(blocks.begin);
  s.end_layer = static_cast<int>(blocks.begin + blocks.count);
  return s;
}

double all_reduce_time(double bytes, int n, double bw, double alpha) {
  if (n <= 1) return 0.0;
  return 2.0 * (n - 1) / n * bytes / bw + 2.0 * (n - 1) * alpha;
}

double p2p_time(double bytes, double bw, double alpha) { return alpha + bytes / bw; }

}  // namespace sgpt::lesson12
