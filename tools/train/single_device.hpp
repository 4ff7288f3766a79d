#pragma once
// The whole model on this rank (f32): single_device.cpp's strategy, which data_parallel.cpp
// extends. Internal to the trainer; the interface is strategy.hpp.

#include "strategy.hpp"

namespace sgpt::train {

/// A GPT and its AdamW, stepped by the trainer itself (plain f32).
class SingleDevice : public Strategy {
 public:
  explicit SingleDevice(const StrategySetup& s);

  StepResult step(const Tensor& x, const Tensor& y, double lr, double clip) override;
  double eval_loss(const Tensor& x, const Tensor& y) override { return model_.forward(x, y); }
  GPT* whole_model() override { return &model_; }
  void save(const std::string& path, const TrainState& state) override;
  TrainState load(const std::string& path) override { return load_checkpoint(path, model_, opt_); }

 protected:
  /// The gradient of the loss of (x, y) into model_.grads() (zeroed first); returns the loss to report.
  virtual double forward_backward(const Tensor& x, const Tensor& y);
  /// True on the rank that writes files.
  virtual bool writes() const { return true; }

  StrategySetup setup_;
  GPT model_;
  AdamW opt_;
};

}  // namespace sgpt::train
