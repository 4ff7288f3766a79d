// scalegpt-train on one rank: the whole model, f32 (the trainer's own step) or bf16/fp16 (lesson
// 05's recipe, precision.hpp).

#include "single_device.hpp"

#include "precision.hpp"

namespace sgpt::train {

SingleDevice::SingleDevice(const StrategySetup& s)
    : setup_(s), model_(s.cfg, s.seed, s.device), opt_(model_.layout(), s.adamw, model_.dtype(), s.device) {
  model_.set_recompute_gelu(s.recompute_gelu);
}

double SingleDevice::forward_backward(const Tensor& x, const Tensor& y) {
  model_.zero_grad();
  const double loss = model_.forward(x, y);
  model_.backward();
  return loss;
}

StepResult SingleDevice::step(const Tensor& x, const Tensor& y, double lr, double clip) {
  StepResult r;
  r.loss = forward_backward(x, y);
  r.grad_norm = clip_grad_norm(model_.grads(), clip);
  opt_.step(model_.params(), model_.grads(), lr);
  return r;
}

void SingleDevice::save(const std::string& path, const TrainState& state) {
  if (writes()) save_checkpoint(path, model_, opt_, state);
}

namespace {

// --dtype bf16|fp16: lesson 05's MixedPrecisionRun owns the working model, the fp32 master and AdamW.
class MixedPrecision final : public Strategy {
 public:
  explicit MixedPrecision(std::unique_ptr<MixedPrecisionRun> run) : run_(std::move(run)) {}
  StepResult step(const Tensor& x, const Tensor& y, double lr, double clip) override {
    StepResult r;
    r.loss = run_->step(x, y, lr, clip, &r.grad_norm);
    return r;
  }
  double eval_loss(const Tensor& x, const Tensor& y) override { return run_->model().forward(x, y); }
  GPT* whole_model() override { return &run_->model(); }
  void save(const std::string& path, const TrainState& state) override { run_->save(path, state); }
  TrainState load(const std::string& path) override { return run_->load(path); }

 private:
  std::unique_ptr<MixedPrecisionRun> run_;
};

}  // namespace

std::unique_ptr<Strategy> make_single_device(const StrategySetup& s) {
  if (auto mp = make_mixed_precision_run(s, 1)) {
    mp->model().set_recompute_gelu(s.recompute_gelu);
    return std::make_unique<MixedPrecision>(std::move(mp));
  }
  return std::make_unique<SingleDevice>(s);
}

}  // namespace sgpt::train
