// scalegpt-train --pp P --micro-batches M --schedule gpipe|1f1b (under mpirun -np P): pipeline
// parallelism through the course's code. Rank r holds stage r of the model (its blocks, plus the
// embeddings on the first stage and the final LayerNorm and head on the last) and its slice of
// AdamW; every rank reads the whole global batch (--batch rows), which the schedule cuts into M
// micro-batches. Both schedules run on lesson 08's stage split; gpipe runs lesson 08's schedule,
// 1f1b lesson 09's: your files in the student release, where an unfinished task stops every rank
// at set-up or at the first step with the task's name.
//
// Gradient clipping needs the norm of the whole gradient before the update, and the lessons' train
// steps end with their own optimizer step: with --clip > 0 the lesson's step gets a scratch AdamW
// and learning rate 0 (parameters unchanged), and the trainer clips by the global norm (a sum over
// the stages) and applies the real update. Evaluation runs each batch forward through the stages
// as one micro-batch; checkpoints gather every stage's range of the flat buffer on rank 0.

#include <cmath>
#include <memory>
#include <optional>

#include "core/check.hpp"
#include "kernels/ops.hpp"
#include "pipeline_1f1b.hpp"   // lesson 09
#include "pipeline_gpipe.hpp"  // lesson 08
#include "partitioned.hpp"

namespace sgpt::train {

namespace {

constexpr int kEvalMicroBatch = -1;  // the id of the evaluation's forward (the schedules use 0..M-1)

class PipelineParallel final : public PartitionedStrategy {
 public:
  PipelineParallel(const StrategySetup& s, std::shared_ptr<Communicator> world, int micro_batches, bool gpipe)
      : PartitionedStrategy(s, std::move(world)),
        p_(world_->size()),
        m_(micro_batches),
        gpipe_(gpipe),
        spec_(split(world_->rank())),
        stage_(s.cfg, spec_, s.seed, DType::F32, s.device),
        opt_(stage_.layout(), s.adamw, DType::F32, s.device, spec_.param_begin, spec_.num_params()) {
    // The schedule of this stage (task 1 of lesson 09, task 3a of lesson 08): checked at set-up.
    if (gpipe_)
      lesson08::gpipe_schedule(p_, spec_.stage, m_);
    else
      lesson09::one_f_one_b_schedule(p_, spec_.stage, m_);
  }

  int model_parts() const override { return p_; }
  std::string describe() const override {
    std::string blocks;
    for (int r = 0; r < p_; ++r) blocks += str(r ? "+" : "", split(r).num_layers());
    return str(" through ", p_, " pipeline stages of ", blocks, " blocks (", m_, " micro-batches of ",
               setup_.batch / m_, ", ", gpipe_ ? "GPipe" : "1F1B", " schedule)");
  }

  StepResult step(const Tensor& x, const Tensor& y, double lr, double clip) override {
    const bool clipping = clip > 0;
    if (clipping && !scratch_) scratch_.emplace(stage_.layout(), setup_.adamw, DType::F32, setup_.device,
                                                spec_.param_begin, spec_.num_params());
    AdamW& lesson_opt = clipping ? *scratch_ : opt_;
    const double lesson_lr = clipping ? 0.0 : lr;
    const double loss = gpipe_ ? lesson08::gpipe_train_step(*world_, stage_, lesson_opt, x, y, m_, lesson_lr)
                               : lesson09::one_f_one_b_train_step(*world_, stage_, lesson_opt, x, y, m_, lesson_lr);
    StepResult r;
    r.loss = from_last_stage(loss);
    Tensor sq = Tensor::from(std::vector<double>{sum_of_squares(stage_.grads())}, {1}).to(setup_.device);
    world_->all_reduce(sq);
    r.grad_norm = std::sqrt(sq.to_vector()[0]);
    if (clipping) {
      if (r.grad_norm > clip) scale_(stage_.grads(), clip / (r.grad_norm + 1e-6));
      opt_.step(stage_.params(), stage_.grads(), lr);
    }
    return r;
  }

  double eval_loss(const Tensor& x, const Tensor& y) override {
    const int r = spec_.stage;
    Tensor in = x;
    if (!spec_.is_first()) {
      in = Tensor::empty({x.size(0), x.size(1), setup_.cfg.n_embd}, DType::F32, setup_.device, MemCategory::Activations);
      world_->recv(in, r - 1);
    }
    const Tensor out = stage_.forward(kEvalMicroBatch, in, spec_.is_last() ? y : Tensor());
    double loss = NAN;
    if (spec_.is_last())
      loss = stage_.loss(kEvalMicroBatch);
    else
      world_->send(out, r + 1);
    stage_.free_activations();
    return from_last_stage(loss);
  }

  TrainState load(const std::string& path) override {
    GPT holder(setup_.cfg, 0, setup_.device);
    AdamW full(holder.layout(), setup_.adamw, DType::F32, setup_.device);
    const TrainState s = load_checkpoint(path, holder, full);
    const int64_t b = spec_.param_begin, n = spec_.num_params();
    stage_.params().copy_from(holder.params().view(b, {n}));
    opt_.m().copy_from(full.m().view(b, {n}));
    opt_.v().copy_from(full.v().view(b, {n}));
    opt_.set_t(full.t());
    return s;
  }

 private:
  Tensor local_params() override { return stage_.params(); }
  Tensor local_m() override { return opt_.m(); }
  Tensor local_v() override { return opt_.v(); }
  int64_t adam_steps() const override { return opt_.t(); }

  StageSpec split(int stage) const {
    return lesson08::stage_spec(setup_.cfg, p_, stage);  // both schedules run on lesson 08's split
  }

  // The last stage's value on every rank.
  double from_last_stage(double v) {
    Tensor t = Tensor::from(std::vector<double>{v}, {1}).to(setup_.device);
    world_->broadcast(t, p_ - 1);
    return t.to_vector()[0];
  }

  // full (rank 0 only: the whole flat buffer) = every stage's `local` range.
  void gather(Tensor* full, const Tensor& local) override {
    if (world_->rank() != 0) {
      world_->send(local, 0);
      return;
    }
    for (int r = 0; r < p_; ++r) {
      const StageSpec sr = split(r);
      Tensor dst = full->view(sr.param_begin, {sr.num_params()});
      if (r == 0)
        dst.copy_from(local);
      else
        world_->recv(dst, r);
    }
  }

  int p_, m_;
  bool gpipe_;
  StageSpec spec_;
  PipelineStage stage_;
  AdamW opt_;
  std::optional<AdamW> scratch_;  // the lessons' optimizer step when the trainer clips
};

}  // namespace

std::unique_ptr<Strategy> make_pipeline_parallel(const StrategySetup& s, std::shared_ptr<Communicator> world,
                                                 int micro_batches, const std::string& schedule) {
  SGPT_CHECK(schedule == "gpipe" || schedule == "1f1b", "--schedule must be gpipe or 1f1b, got '", schedule, "'");
  return std::make_unique<PipelineParallel>(s, std::move(world), micro_batches, schedule == "gpipe");
}

}  // namespace sgpt::train
