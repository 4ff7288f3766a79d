// scalegpt-train --zero 1|2|3 under mpirun: data parallelism with ZeRO through lesson 11's code.
// Every rank trains on its own rows as with data parallelism, but keeps only its shard of the
// optimizer state (stage 1), of the gradients (2) and of the parameters (3); the model runs unit by
// unit (common/parallel/unit_runner.hpp), which needs an untied output layer (--untie-embeddings).
// Trains in f32, or with --dtype bf16 in lesson 05's recipe (bf16 parameters and gradients, each rank's
// pieces of the f32 master and moments). Checkpoints are the consolidated single-device file (gathered
// on save; the f32 master in bf16), so a ZeRO run resumes under any strategy and any number of ranks.

#include <memory>

#include "core/check.hpp"
#include "strategy.hpp"
#include "zero.hpp"  // lesson 11

namespace sgpt::train {

namespace {

// f32, or bf16 for lesson 05's recipe (the ZeRO state keeps the f32 master and moments).
DType working_dtype(const std::string& dtype) { return dtype == "bf16" ? DType::BF16 : DType::F32; }

class Zero final : public Strategy {
 public:
  Zero(const StrategySetup& s, std::shared_ptr<Communicator> world, int stage)
      : setup_(s),
        world_(std::move(world)),
        runner_(s.cfg, working_dtype(s.dtype), s.device),
        z_(lesson11::make_zero_state(runner_, *world_, stage, s.seed, s.adamw, working_dtype(s.dtype))) {}

  int data_rank() const override { return world_->rank(); }
  int data_ranks() const override { return world_->size(); }
  std::string describe() const override { return str(" per rank x ", world_->size(), " ranks, ZeRO stage ", z_.stage); }

  StepResult step(const Tensor& x, const Tensor& y, double lr, double clip) override {
    const lesson11::StepStats s = lesson11::zero_step(z_, runner_, *world_, x, y, x.size(0), lr, clip);
    return {s.loss, s.grad_norm};
  }

  double eval_loss(const Tensor& x, const Tensor& y) override {
    // Forward only, unit by unit; at stage 3 each unit is gathered (collective: every rank evaluates).
    runner_.start(x, y);
    int64_t at = 0;
    for (int u = 0; u < runner_.num_units(); ++u) {
      const auto [b, e] = runner_.unit_range(u);
      if (z_.stage < 3) {
        runner_.forward(u, z_.full_params.view(b, {e - b}));
      } else {
        Tensor up = z_.unit_params.view(0, {e - b});
        world_->all_gather(up, z_.shard_params.view(at, {z_.pieces[size_t(u)].count}));
        at += z_.pieces[size_t(u)].count;
        runner_.forward(u, up);
      }
    }
    return runner_.loss();
  }

  double mean_eval_loss(double local_mean) override {
    Tensor t = Tensor::from(std::vector<double>{local_mean}, {1}).to(world_->preferred_device());
    world_->all_reduce(t, ReduceOp::Avg);
    return t.to_vector()[0];
  }

  GPT* whole_model() override {
    // A consolidated f32 copy for sampling (collective when it is sharded: the units are gathered),
    // from the f32 master in the bf16 recipe.
    Tensor full = z_.full_params;
    const Tensor& packed = z_.master.defined() ? z_.master : z_.shard_params;
    if (z_.stage == 3 || z_.master.defined()) {
      full = Tensor::empty({runner_.layout().numel()}, DType::F32, world_->preferred_device());
      int64_t at = 0;
      for (size_t u = 0; u < z_.units.size(); ++u) {
        Tensor out = full.view(z_.units[u].begin, {z_.units[u].count});
        world_->all_gather(out, packed.view(at, {z_.pieces[u].count}));
        at += z_.pieces[u].count;
      }
    }
    if (world_->rank() != 0) return nullptr;
    whole_ = std::make_unique<GPT>(setup_.cfg, setup_.seed, setup_.device, DType::F32);
    whole_->params().copy_from(full);
    return whole_.get();
  }

  void save(const std::string& path, const TrainState& state) override {
    lesson11::save_zero_checkpoint(path, z_, runner_, *world_, state);
  }
  TrainState load(const std::string& path) override { return lesson11::load_zero_checkpoint(path, z_, runner_); }

 private:
  StrategySetup setup_;
  std::shared_ptr<Communicator> world_;
  UnitRunner runner_;
  lesson11::ZeroState z_;
  std::unique_ptr<GPT> whole_;
};

}  // namespace

std::unique_ptr<Strategy> make_zero(const StrategySetup& s, std::shared_ptr<Communicator> world, int stage) {
  SGPT_CHECK(world && world->size() > 1, "--zero ", stage, " needs several ranks: run under mpirun -np D (D >= 2)");
  SGPT_CHECK(s.dtype == "f32" || s.dtype == "bf16", "--zero ", stage, " trains in f32 or bf16 (lesson 11), got ",
             "--dtype ", s.dtype, ": fp16 needs a dynamic loss scale that every rank agrees on, which ZeRO here ",
             "does not keep. Pass --dtype bf16 (the same 2 bytes per parameter, no loss scaling), or train --dtype ",
             "fp16 on one rank without --zero");
  SGPT_CHECK(!s.cfg.tied_embeddings, "--zero runs the model unit by unit, which needs an untied output layer: add "
             "--untie-embeddings (model '", s.cfg.name, "' ties wte and lm_head)");
  return std::make_unique<Zero>(s, std::move(world), stage);
}

}  // namespace sgpt::train
