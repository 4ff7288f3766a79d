#pragma once
// What the strategies that split one model over their ranks (pipeline stages, lesson 12's grid) share:
// rank 0 assembles the whole model for sampling and the consolidated checkpoint from every rank's
// part. Each strategy says how its parts are placed in the single-device flat buffer (gather) and
// where its part of the parameters and of AdamW's state lives.

#include <memory>
#include <optional>
#include <string>

#include "strategy.hpp"

namespace sgpt::train {

class PartitionedStrategy : public Strategy {
 public:
  /// Rank 0: the whole model, its parameters gathered now (collective); nullptr on other ranks.
  GPT* whole_model() override {
    if (world_->rank() == 0 && !whole_) whole_.emplace(setup_.cfg, setup_.seed, setup_.device);
    gather(whole_ ? &whole_->params() : nullptr, local_params());
    return whole_ ? &*whole_ : nullptr;
  }

  /// Gathers parameters and AdamW moments on rank 0, which writes the single-device checkpoint.
  void save(const std::string& path, const TrainState& state) override {
    std::optional<GPT> holder;
    std::optional<AdamW> full;
    if (world_->rank() == 0) {
      holder.emplace(setup_.cfg, 0, setup_.device);
      full.emplace(holder->layout(), setup_.adamw, DType::F32, setup_.device);
      full->set_t(adam_steps());
    }
    gather(holder ? &holder->params() : nullptr, local_params());
    gather(full ? &full->m() : nullptr, local_m());
    gather(full ? &full->v() : nullptr, local_v());
    if (holder) save_checkpoint(path, *holder, *full, state);
  }

 protected:
  PartitionedStrategy(const StrategySetup& s, std::shared_ptr<Communicator> world)
      : setup_(s), world_(std::move(world)) {}

  /// *full (rank 0 only; nullptr on the others) = the single-device flat buffer assembled from
  /// every rank's `local` (collective).
  virtual void gather(Tensor* full, const Tensor& local) = 0;
  /// This rank's part of the parameters, of AdamW's first and second moments, and AdamW's step count.
  virtual Tensor local_params() = 0;
  virtual Tensor local_m() = 0;
  virtual Tensor local_v() = 0;
  virtual int64_t adam_steps() const = 0;

  StrategySetup setup_;
  std::shared_ptr<Communicator> world_;

 private:
  std::optional<GPT> whole_;  // rank 0: the consolidated model for sampling
};

}  // namespace sgpt::train
