// Lesson 12, task 3: the planner. Memory is the sum of lessons 01-11's formulas for one rank;
// time is compute at a stated FLOP/s, plus the pipeline bubble, plus every message that is not
// hidden behind compute. A plan is only as good as these assumptions: the README says which
// ones a real run breaks.

#include "planner.hpp"

#include <algorithm>
#include <cmath>

#include "core/check.hpp"
#include "tp_stage.hpp"

namespace sgpt::lesson12 {

MemoryBreakdown predict_stage_memory(const Job& job, const Layout& l, int stage) {
  // TODO(lesson 12, task 3): one rank's model state (with ZeRO) and its peak activations
  check_layout(job, l.dp * l.pp * l.tp, l);
  const StageSpec spec = plan_stage(job.cfg, l.pp, stage);
  const Precision& pr = job.precision;
  const int64_t psi = tp_stage_numel(job.cfg, spec, l.tp), shard = (psi + l.dp - 1) / l.dp;
  MemoryBreakdown mem;
  mem.params = pr.param * (l.zero >= 3 ? shard : psi);
  mem.grads = pr.grad * (l.zero >= 2 ? shard : psi);
  mem.optimizer = pr.optim * (l.zero >= 1 ? shard : psi);
  const int64_t m = job.global_batch / (l.dp * l.micro_batch);
  const int64_t k = l.schedule == Schedule::GPipe ? m : std::min<int64_t>(l.pp - stage, m);
  const StageActivationParts a = stage_activation_parts(job.cfg, spec, l.tp, l.micro_batch, job.seq_len, pr.act);
  if (l.recompute == Recompute::None)
    mem.activations = k * a.per_microbatch() + a.backward;
  else
    mem.activations = k * (a.outer + a.layers * a.block_input) + a.block_cache + a.backward;
  return mem;
  // END TODO
}

MemoryBreakdown predict_memory(const Job& job, const Layout& l) {
  // TODO(lesson 12, task 3): the rank that needs the most
  MemoryBreakdown worst;
  for (int r = 0; r < l.pp; ++r) {
    MemoryBreakdown m = predict_stage_memory(job, l, r);
    if (r == 0 || m.total() > worst.total()) worst = m;
  }
  return worst;
  // END TODO
}

StepTime predict_step_time(const Job& job, const Cluster& c, const Layout& l) {
  // TODO(lesson 12, task 3): compute + bubble + the communication that is not overlapped
  check_layout(job, c.world, l);
  const GPTConfig& cfg = job.cfg;
  const Precision& pr = job.precision;
  const double T = double(job.seq_len), m = double(job.global_batch / (l.dp * l.micro_batch));
  const bool rc = l.recompute == Recompute::Full;
  // Which links a group uses: a group inside one node talks over NVLink.
  auto bw = [&](int span) { return span <= c.gpus_per_node ? c.intra_bw : c.inter_bw; };
  auto alpha = [&](int span) { return span <= c.gpus_per_node ? c.intra_alpha : c.inter_alpha; };
  StepTime st;
  const double flops = training_flops_per_token(cfg, job.seq_len) * double(job.global_batch) * T * (rc ? 4.0 / 3.0 : 1.0);
  st.compute = flops / (double(c.world) * c.achieved_flops);
  st.bubble = st.compute * double(l.pp - 1) / m;
  const double slots = m + l.pp - 1;  // micro-batch slots on the critical path, bubble included
  const double act_bytes = double(l.micro_batch) * T * cfg.n_embd * double(pr.act);
  if (l.tp > 1) {
    const double layers = std::ceil(double(cfg.n_layer) / l.pp);
    st.tp_comm = slots * layers * (rc ? 6 : 4) * all_reduce_time(act_bytes, l.tp, bw(l.tp), alpha(l.tp));
  }
  if (l.pp > 1) st.pp_comm = slots * 2 * p2p_time(act_bytes, bw(l.pp * l.tp), alpha(l.pp * l.tp));
  if (l.dp > 1) {
    int64_t psi = 0;
    for (int r = 0; r < l.pp; ++r) psi = std::max(psi, tp_stage_numel(cfg, plan_stage(cfg, l.pp, r), l.tp));
    st.dp_comm = all_reduce_time(double(pr.grad) * double(psi), l.dp, bw(c.world), alpha(c.world)) *
                 (l.zero == 3 ? 1.5 : 1.0);
  }
  return st;
  // END TODO
}

std::vector<Plan> plan(const Job& job, const Cluster& c) {
  // TODO(lesson 12, task 3): enumerate, predict, drop what does not fit, rank
  std::vector<Plan> plans;
  const GPTConfig& cfg = job.cfg;
  const double model_flops = training_flops_per_token(cfg, job.seq_len) * double(job.global_batch * job.seq_len);
  for (int tp = 1; tp <= c.world; ++tp) {
    if (c.world % tp || cfg.n_head % tp || (4 * cfg.n_embd) % tp) continue;
    for (int pp = 1; pp <= std::min(cfg.n_layer, c.world / tp); ++pp) {
      if ((c.world / tp) % pp) continue;
      const int dp = c.world / (tp * pp);
      for (int64_t mb = 1; dp * mb <= job.global_batch; mb *= 2) {
        if (job.global_batch % (dp * mb)) continue;
        for (int zero = 0; zero <= 3; ++zero)
          for (Recompute rc : {Recompute::None, Recompute::Full})
            for (Schedule sc : {Schedule::GPipe, Schedule::OneFOneB}) {
              Plan p;
              p.layout = {dp, pp, tp, mb, zero, rc, sc};
              p.memory = predict_memory(job, p.layout);
              if (double(p.memory.total()) > c.memory_bytes) continue;
              p.time = predict_step_time(job, c, p.layout);
              p.mfu = model_flops / (p.time.total() * c.world * c.peak_flops);
              p.bubble = p.time.bubble / p.time.total();
              plans.push_back(p);
            }
      }
    }
  }
  std::stable_sort(plans.begin(), plans.end(), [](const Plan& a, const Plan& b) {
    if (a.time.total() != b.time.total()) return a.time.total() < b.time.total();
    return a.memory.total() < b.memory.total();
  });
  return plans;
  // END TODO
}

}  // namespace sgpt::lesson12
