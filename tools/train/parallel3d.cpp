// scalegpt-train --dp D --pp P --tp T [--micro-batches M] (under mpirun -np D*P*T): 3D parallelism
// through lesson 12's code. The ranks form lesson 12's grid (make_grid: rank = (dp*P + pp)*T + tp);
// each holds a TPStage, stage pp of P with its blocks split T ways; replica dp trains on its own
// --batch rows of the global batch (D x --batch rows), in M micro-batches that flow through its
// pipeline in 1F1B order (train_step_3d), and the replicas average their gradients (sync_replicas).
// With --zero 1 each stage keeps ZeRO-1's optimizer shard (zero1_shard, lesson 12's task 4), and the
// replicas meet through sync_replicas_zero1: a reduce-scatter over the dp group, each rank updating
// its 1/D, an all-gather of the parameters.
// Your files in the student release: an unfinished task stops every rank at set-up (the grid) or
// at the first step (the composition) with its name.
//
// Gradient clipping and resuming need what train_step_3d does not give: the norm of the whole
// gradient before the update, and an AdamW step counter restored from a checkpoint. So the lesson's
// step runs at learning rate 0 (parameters unchanged; its own AdamW moments are scratch) and the
// trainer keeps the real moments: it clips the averaged gradients by the global norm (replicated
// tensors counted once per stage, split ones summed over the tensor-parallel group) and applies
// AdamW with the same segments (decay on matrices and embeddings) as TPStage. Evaluation runs each
// batch forward through the stages as one micro-batch (its backward with weight 0 frees it).
// Under ZeRO-1 the trainer's moments are this rank's shard too: after the lesson's step only the
// shard's gradients are averaged, so the norm sums the shards over the dp group, and the trainer
// updates the shard and all-gathers the parameters over dp itself (the lesson's own all-gather, at
// lr 0, moved unchanged parameters).
// Checkpoints gather replica 0's shards into the single-device flat buffer on rank 0 (each rank's
// element -> single-device index map comes from TPStage::load_from_full at set-up), so a 3D run
// resumes under any layout and any layout resumes it.

#include <algorithm>
#include <cmath>
#include <memory>
#include <optional>
#include <vector>

#include "core/check.hpp"
#include "grid.hpp"        // lesson 12
#include "kernels/ops.hpp"
#include "model/layout.hpp"
#include "pipeline_gpipe.hpp"
#include "parallel3d.hpp"  // lesson 12
#include "partitioned.hpp"

namespace sgpt::train {

namespace {

constexpr int kEvalMicroBatch = -1;  // the id of the evaluation's forward (the schedule uses 0..M-1)

class Parallel3D final : public PartitionedStrategy {
 public:
  Parallel3D(const StrategySetup& s, std::shared_ptr<Communicator> world, lesson12::GridShape shape, int micro_batches,
             bool zero1)
      : PartitionedStrategy(s, std::move(world)),
        m_(micro_batches),
        grid_(lesson12::make_grid(*world_, shape)),
        stage_(s.cfg, shape.pp, grid_.coord.pp, *grid_.tp, s.seed, DType::F32, s.adamw,
               zero1 ? std::optional<ShardRange>(lesson12::zero1_shard(grid_, s.cfg)) : std::nullopt),
        shard_(stage_.optimizer_shard()),
        adam_m_(Tensor::zeros({shard_.count}, DType::F32, Device::CPU, MemCategory::OptimizerState)),
        adam_v_(Tensor::zeros({shard_.count}, DType::F32, Device::CPU, MemCategory::OptimizerState)) {
    make_segments();
    share_index_maps();
  }

  int data_rank() const override { return grid_.coord.dp; }
  int data_ranks() const override { return grid_.shape.dp; }
  int model_parts() const override { return grid_.shape.pp * grid_.shape.tp; }
  std::string describe() const override {
    const lesson12::GridShape& g = grid_.shape;
    std::string blocks;
    for (int r = 0; r < g.pp; ++r) blocks += str(r ? "+" : "", lesson08::stage_spec(setup_.cfg, g.pp, r).num_layers());
    return str(" per replica on a ", g.str(), " grid: ", g.dp, " replicas x ", g.pp, " pipeline stages of ", blocks,
               " blocks (", m_, " micro-batches of ", setup_.batch / m_, ", 1F1B) x ", g.tp, " tensor-parallel ranks",
               zero1() ? str(", ZeRO-1: each stage's AdamW state sharded over its ", g.dp, " replicas") : "");
  }

  StepResult step(const Tensor& x, const Tensor& y, double lr, double clip) override {
    // train_step_3d takes the global batch and trains replica d on rows d*B/D...: this replica's
    // rows go there (the other replicas' rows are theirs to read, never this rank's).
    const Tensor gx = global_rows(x), gy = global_rows(y);
    StepResult r;
    r.loss = lesson12::train_step_3d(grid_, stage_, gx, gy, setup_.batch / m_, 0.0);
    r.grad_norm = grad_norm();
    Tensor mine = stage_.grads().view(shard_.begin, {shard_.count});  // the averaged gradients (all, without ZeRO)
    if (clip > 0 && r.grad_norm > clip) scale_(mine, clip / (r.grad_norm + 1e-6));
    ++t_;
    AdamWConfig c = setup_.adamw;
    c.lr = lr;
    for_each_in_shard([&](const Segment& sg, int64_t b, int64_t e) {
      Tensor p = stage_.params().view(b, {e - b}), m = adam_m_.view(b - shard_.begin, {e - b}),
             v = adam_v_.view(b - shard_.begin, {e - b});
      adamw_update(p, stage_.grads().view(b, {e - b}), m, v, c, t_, sg.decay);
    });
    if (zero1()) grid_.dp->all_gather(stage_.params(), stage_.params().view(shard_.begin, {shard_.count}));
    return r;
  }

  double eval_loss(const Tensor& x, const Tensor& y) override {
    const lesson12::GridCoord& at = grid_.coord;
    const int P = grid_.shape.pp;
    const bool first = at.pp == 0, last = at.pp == P - 1;
    Tensor in = x;
    if (!first) {
      in = Tensor::empty({x.size(0), x.size(1), setup_.cfg.n_embd}, DType::F32, Device::CPU, MemCategory::Activations);
      grid_.pp->recv(in, at.pp - 1);
    }
    const Tensor out = stage_.forward(kEvalMicroBatch, in, last ? y : Tensor());
    double loss = NAN;
    Tensor dout;
    if (last) {
      loss = stage_.loss(kEvalMicroBatch);
    } else {
      grid_.pp->send(out, at.pp + 1);
      dout = Tensor::zeros(out.shape(), DType::F32, Device::CPU, MemCategory::Communication);
    }
    stage_.backward(kEvalMicroBatch, dout, 0.0);  // frees the micro-batch; adds 0 to the gradients
    Tensor l = Tensor::from(std::vector<double>{loss}, {1});
    grid_.pp->broadcast(l, P - 1);
    return l.to_vector()[0];
  }

  double mean_eval_loss(double local_mean) override {
    Tensor t = Tensor::from(std::vector<double>{local_mean}, {1});
    grid_.dp->all_reduce(t, ReduceOp::Avg);
    return t.to_vector()[0];
  }

  TrainState load(const std::string& path) override {
    GPT holder(setup_.cfg, 0, setup_.device);
    AdamW full(holder.layout(), setup_.adamw, DType::F32, setup_.device);
    const TrainState s = load_checkpoint(path, holder, full);
    stage_.load_from_full(stage_.params(), holder.params());
    Tensor whole = Tensor::empty({stage_.params().numel()});  // this rank's moments before the shard is cut
    stage_.load_from_full(whole, full.m());
    adam_m_.copy_from(whole.view(shard_.begin, {shard_.count}));
    stage_.load_from_full(whole, full.v());
    adam_v_.copy_from(whole.view(shard_.begin, {shard_.count}));
    t_ = full.t();
    return s;
  }

 private:
  Tensor local_params() override { return stage_.params(); }
  Tensor local_m() override { return whole_stage(adam_m_); }
  Tensor local_v() override { return whole_stage(adam_v_); }

  bool zero1() const { return stage_.optimizer_sharded(); }

  // The stage's moments: the shard itself, or under ZeRO-1 the shards of the dp group gathered
  // (collective over dp; for the checkpoint only).
  Tensor whole_stage(const Tensor& shard) {
    if (!zero1()) return shard;
    Tensor whole = Tensor::empty({stage_.params().numel()});
    grid_.dp->all_gather(whole, shard);
    return whole;
  }
  int64_t adam_steps() const override { return t_; }

  struct Segment {
    int64_t begin, numel;
    bool decay;  // AdamW decays matrices and embeddings (the 2-D tensors)
    bool split;  // each tensor-parallel rank holds its own part (else the whole tensor, replicated)
  };

  // The tensors of this rank's buffer, as TPStage lays them out: the embeddings (first stage),
  // each block's shard (lesson 10's views), the final LayerNorm and the head (last stage).
  void make_segments() {
    const GPTConfig& cfg = setup_.cfg;
    const StageSpec& spec = stage_.spec();
    const int T = grid_.shape.tp;
    const int64_t C = cfg.n_embd, Vp = cfg.padded_vocab_size, maxT = cfg.max_seq_len;
    const Tensor& buf = stage_.params();
    int64_t at = 0;
    auto add = [&](int64_t n, bool decay, bool split) {
      segments_.push_back({at, n, decay, split});
      at += n;
    };
    if (spec.is_first()) {
      add(Vp * C, true, false);
      add(maxT * C, true, false);
    }
    const int64_t bn = lesson10::tp_block_numel(cfg, T);
    const Tensor whole_block = Tensor::empty({lesson10::tp_block_numel(cfg, 1)});
    const BlockParams one = lesson10::tp_block_views(whole_block, cfg, 1);
    for (int i = 0; i < spec.num_layers(); ++i) {
      const BlockParams b = lesson10::tp_block_views(buf.view(at, {bn}), cfg, T);
      for (Tensor BlockParams::*f : {&BlockParams::ln1_w, &BlockParams::ln1_b, &BlockParams::qkv_w,
                                     &BlockParams::qkv_b, &BlockParams::attproj_w, &BlockParams::attproj_b,
                                     &BlockParams::ln2_w, &BlockParams::ln2_b, &BlockParams::fc_w, &BlockParams::fc_b,
                                     &BlockParams::fcproj_w, &BlockParams::fcproj_b}) {
        const Tensor& v = b.*f;
        segments_.push_back({v.offset() - buf.offset(), v.numel(), v.dim() == 2, v.numel() != (one.*f).numel()});
      }
      at += bn;
    }
    if (spec.is_last()) {
      add(C, false, false);
      add(C, false, false);
      add(Vp * C, true, false);
    }
    SGPT_CHECK(at == buf.numel(), "internal: the 3D strategy's segments cover ", at, " of the stage's ", buf.numel(),
               " elements");
  }

  // fn(segment, b, e) for the part [b, e) of each segment inside this rank's optimizer shard (the
  // whole segment without ZeRO).
  template <class Fn>
  void for_each_in_shard(Fn&& fn) const {
    for (const Segment& sg : segments_) {
      const int64_t b = std::max(sg.begin, shard_.begin), e = std::min(sg.begin + sg.numel, shard_.begin + shard_.count);
      if (b < e) fn(sg, b, e);
    }
  }

  // The global gradient norm: this stage's replicated tensors once, its split ones summed over the
  // tensor-parallel group, the stages summed over the pipeline; without ZeRO the replicas hold the
  // same average, under ZeRO-1 each holds its shard of it, summed over the dp group.
  double grad_norm() {
    double replicated = 0, split = 0;
    for_each_in_shard([&](const Segment& sg, int64_t b, int64_t e) {
      (sg.split ? split : replicated) += sum_of_squares(stage_.grads().view(b, {e - b}));
    });
    Tensor s = Tensor::from(std::vector<double>{split + (grid_.coord.tp == 0 ? replicated : 0.0)}, {1});
    grid_.tp->all_reduce(s);
    grid_.pp->all_reduce(s);
    if (zero1()) grid_.dp->all_reduce(s);
    return std::sqrt(s.to_vector()[0]);
  }

  // [D*b, T]: this replica's rows x at rows d*b (zeros elsewhere, which no rank of this replica reads).
  Tensor global_rows(const Tensor& x) const {
    const int D = grid_.shape.dp;
    if (D == 1) return x;
    const int64_t b = x.size(0), T = x.size(1);
    Tensor g = Tensor::zeros({D * b, T}, x.dtype());
    g.view(grid_.coord.dp * b * T, {b, T}).copy_from(x);
    return g;
  }

  // Where each element of a rank's buffer sits in the single-device buffer: load_from_full of the
  // indices (as two exact f32 halves). Rank 0 keeps the maps of replica 0's ranks (set-up, collective).
  static constexpr int64_t kLow = 4096;
  void share_index_maps() {
    const int64_t N = ParameterLayout(setup_.cfg).numel();
    const int64_t n = stage_.params().numel();
    Tensor hi = Tensor::empty({N}), lo = Tensor::empty({N});
    float* h = hi.data<float>();
    float* l = lo.data<float>();
    for (int64_t i = 0; i < N; ++i) h[i] = float(i / kLow), l[i] = float(i % kLow);
    Tensor my_hi = Tensor::empty({n}), my_lo = Tensor::empty({n});
    stage_.load_from_full(my_hi, hi);
    stage_.load_from_full(my_lo, lo);
    const int holders = grid_.shape.pp * grid_.shape.tp;  // replica 0: world ranks 0 .. P*T-1
    if (world_->rank() == 0) {
      maps_.resize(size_t(holders));
      for (int r = 0; r < holders; ++r) {
        const int64_t nr = stage_numel(r);
        Tensor rh = my_hi, rl = my_lo;
        if (r != 0) {
          rh = Tensor::empty({nr});
          rl = Tensor::empty({nr});
          world_->recv(rh, r);
          world_->recv(rl, r);
        }
        std::vector<int64_t>& map = maps_[size_t(r)];
        map.resize(size_t(nr));
        for (int64_t k = 0; k < nr; ++k)
          map[size_t(k)] = int64_t(rh.data<float>()[k]) * kLow + int64_t(rl.data<float>()[k]);
      }
    } else if (world_->rank() < holders) {
      world_->send(my_hi, 0);
      world_->send(my_lo, 0);
    }
  }

  int64_t stage_numel(int world_rank) const {
    const int P = grid_.shape.pp, T = grid_.shape.tp;
    return lesson12::tp_stage_numel(setup_.cfg, lesson08::stage_spec(setup_.cfg, P, world_rank / T), T);
  }

  // full (rank 0 only: the single-device flat buffer) = replica 0's `local` buffers, placed by the maps.
  void gather(Tensor* full, const Tensor& local) override {
    const int holders = grid_.shape.pp * grid_.shape.tp;
    if (world_->rank() != 0) {
      if (world_->rank() < holders) world_->send(local, 0);
      return;
    }
    float* dst = full->data<float>();
    for (int r = 0; r < holders; ++r) {
      Tensor part = local;
      if (r != 0) {
        part = Tensor::empty({stage_numel(r)});
        world_->recv(part, r);
      }
      const float* src = part.data<float>();
      const std::vector<int64_t>& map = maps_[size_t(r)];
      for (size_t k = 0; k < map.size(); ++k) dst[map[k]] = src[k];
    }
  }

  int m_;
  lesson12::Grid grid_;
  lesson12::TPStage stage_;
  ShardRange shard_;        // the part of the stage buffer whose AdamW state this rank keeps (all without ZeRO)
  Tensor adam_m_, adam_v_;  // the real AdamW moments of shard_ (the lesson's optimizer runs at lr 0)
  int64_t t_ = 0;           // AdamW steps taken (restored on resume)
  std::vector<Segment> segments_;
  std::vector<std::vector<int64_t>> maps_;  // rank 0: element k of rank r's buffer -> single-device index
};

}  // namespace

std::unique_ptr<Strategy> make_parallel_3d(const StrategySetup& s, std::shared_ptr<Communicator> world, int dp,
                                           int pp, int tp, int micro_batches, int zero) {
  SGPT_CHECK(world, "--dp ", dp, " --pp ", pp, " --tp ", tp, " on one process is the single-device run: leave out ",
             "--dp, or start D*P*T >= 2 ranks under mpirun");
  const int n = world->size();
  SGPT_CHECK(dp * pp * tp == n, "--dp ", dp, " --pp ", pp, " --tp ", tp, " is a grid of ", dp * pp * tp,
             " ranks, but this job has ", n, " (run under mpirun -np ", dp * pp * tp, ")");
  SGPT_CHECK(s.dtype == "f32" && s.device == Device::CPU, "--dp runs lesson 12's CPU code in f32");
  SGPT_CHECK(micro_batches >= 1 && s.batch % micro_batches == 0, "--micro-batches ", micro_batches,
             " does not divide --batch ", s.batch);
  SGPT_CHECK(zero == 0 || zero == 1, "--dp ", dp, " --pp ", pp, " --tp ", tp, " shards the optimizer state across ",
             "the replicas with --zero 1 (lesson 12, task 4); --zero ", zero, " does not combine with the grid");
  return std::make_unique<Parallel3D>(s, std::move(world), lesson12::GridShape{dp, pp, tp}, micro_batches, zero == 1);
}

}  // namespace sgpt::train
