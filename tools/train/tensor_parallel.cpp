// scalegpt-train --tp T [--sequence-parallel] (under mpirun -np T): Megatron-style tensor
// parallelism through lesson 10's code. Every rank reads the whole global batch (--batch rows) and
// holds the replicated embeddings and head and its shard of every block (lesson10::TPGPT, built on
// your tasks: in the student release an unfinished one stops every rank at set-up or at the first
// step with its name). Checkpoints gather the shards into the single-device flat buffer.

#include <memory>
#include <optional>

#include "core/check.hpp"
#include "strategy.hpp"
#include "tp_gpt.hpp"  // lesson 10: a whole GPT on the tensor-parallel blocks

namespace sgpt::train {

namespace {

class TensorParallel final : public Strategy {
 public:
  TensorParallel(const StrategySetup& s, std::shared_ptr<Communicator> world, bool sp)
      : setup_(s), world_(std::move(world)), model_(*world_, s.cfg, s.seed, sp, DType::F32) {}

  int model_parts() const override { return world_->size(); }
  std::string describe() const override {
    return str(" on ", world_->size(), " tensor-parallel ranks",
               model_.sequence_parallel() ? " (sequence parallel)" : "");
  }

  StepResult step(const Tensor& x, const Tensor& y, double lr, double clip) override {
    StepResult r;
    model_.zero_grad();
    r.loss = model_.forward(x, y);
    model_.backward();
    r.grad_norm = model_.clip_grad_norm(clip);
    model_.adamw_step(setup_.adamw, lr);
    return r;
  }

  double eval_loss(const Tensor& x, const Tensor& y) override { return model_.forward(x, y); }

  GPT* whole_model() override {
    if (!whole_) whole_.emplace(setup_.cfg, setup_.seed, setup_.device);  // every rank: the gather fills it
    model_.full_from_shards(whole_->params(), model_.params());
    return &*whole_;
  }

  void save(const std::string& path, const TrainState& state) override {
    GPT holder(setup_.cfg, 0, setup_.device);
    AdamW full(holder.layout(), setup_.adamw, DType::F32, setup_.device);
    model_.full_from_shards(holder.params(), model_.params());
    model_.full_from_shards(full.m(), model_.adam_m());
    model_.full_from_shards(full.v(), model_.adam_v());
    full.set_t(model_.adam_t());
    if (world_->rank() == 0) save_checkpoint(path, holder, full, state);
  }

  TrainState load(const std::string& path) override {
    GPT holder(setup_.cfg, 0, setup_.device);
    AdamW full(holder.layout(), setup_.adamw, DType::F32, setup_.device);
    const TrainState s = load_checkpoint(path, holder, full);
    model_.shard_from_full(model_.params(), holder.params());
    model_.shard_from_full(model_.adam_m(), full.m());
    model_.shard_from_full(model_.adam_v(), full.v());
    model_.set_adam_t(full.t());
    return s;
  }

 private:
  StrategySetup setup_;
  std::shared_ptr<Communicator> world_;
  lesson10::TPGPT model_;
  std::optional<GPT> whole_;
};

}  // namespace

std::unique_ptr<Strategy> make_tensor_parallel(const StrategySetup& s, std::shared_ptr<Communicator> world,
                                               bool sequence_parallel) {
  SGPT_CHECK(s.device == Device::CPU, "--tp runs lesson 10's blocks, which are CPU code: pass --device cpu");
  // t must divide the heads, the MLP width and, with --sequence-parallel, the sequence.
  lesson10::check_tp_sizes(s.cfg, world->size(), s.seq_len, sequence_parallel);
  return std::make_unique<TensorParallel>(s, std::move(world), sequence_parallel);
}

}  // namespace sgpt::train
