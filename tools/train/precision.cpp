// scalegpt-train --dtype bf16|fp16 through lesson 05's MixedPrecisionTrainer (see precision.hpp).

#include "precision.hpp"

#include <charconv>
#include <cmath>

#include "core/log.hpp"
#include "mixed_precision.hpp"

namespace sgpt::train {

namespace {

class LessonRun final : public MixedPrecisionRun {
 public:
  LessonRun(const GPTConfig& cfg, uint64_t seed, const lesson05::Recipe& r, const AdamWConfig& adamw, Device device)
      : cfg_(cfg), tr_(cfg, seed, r, adamw, device) {}

  GPT& model() override { return tr_.model(); }

  double step(const Tensor& x, const Tensor& y, double lr, double clip, double* grad_norm) override {
    const lesson05::StepResult r = tr_.step(x, y, x.size(0), lr, clip);
    *grad_norm = r.grad_norm;
    return r.loss;
  }

  double loss_scale() override { return tr_.recipe().loss_scaling ? tr_.scaler().scale() : 1.0; }

  // A checkpoint's parameters are the master: an f32 model holds it while it is written or read.
  // With loss scaling, the scaler's state goes in the metadata (the scale as the shortest text that
  // reads back as the same double).
  void save(const std::string& path, const TrainState& state) override {
    GPT holder(cfg_, 0, tr_.model().device());
    holder.params().copy_from(tr_.master());
    TrainState s = state;
    s.extra["dtype"] = lesson05::precision_name(tr_.recipe().precision);
    if (tr_.recipe().loss_scaling) {
      char b[64];
      auto [end, ec] = std::to_chars(b, b + sizeof b, tr_.scaler().scale());
      SGPT_CHECK(ec == std::errc(), "internal: cannot write the loss scale ", tr_.scaler().scale());
      s.extra["loss_scale"] = std::string(b, end);
      s.extra["loss_scale_good_steps"] = std::to_string(tr_.scaler().good_steps());
    }
    save_checkpoint(path, holder, tr_.optimizer(), s);
  }

  TrainState load(const std::string& path) override {
    GPT holder(cfg_, 0, tr_.model().device());
    TrainState s = load_checkpoint(path, holder, tr_.optimizer());
    tr_.master().copy_from(holder.params());
    lesson05::cast_into(tr_.model().params(), tr_.master());
    if (tr_.recipe().loss_scaling) restore_scaler(path, s);
    return s;
  }

 private:
  // The scaler goes on from the checkpoint's scale and count of good steps. Its API (lesson 05) has
  // no setter: a scaler that starts at the saved scale replays the good steps through update(),
  // which only counts them (fewer than the growth interval: the count restarts when it is reached).
  void restore_scaler(const std::string& path, const TrainState& s) {
    auto scale = s.extra.find("loss_scale"), good = s.extra.find("loss_scale_good_steps");
    if (scale == s.extra.end() || good == s.extra.end()) {
      log_warn(path, " holds no loss scale (written by an older trainer): fp16 starts again at ",
               tr_.scaler().scale());
      return;
    }
    double v = 0;
    int64_t n = -1;
    const std::string& a = scale->second;
    const std::string& c = good->second;
    const auto ra = std::from_chars(a.data(), a.data() + a.size(), v);
    const auto rc = std::from_chars(c.data(), c.data() + c.size(), n);
    const lesson05::LossScalerConfig cfg = tr_.recipe().scaler;
    SGPT_CHECK(ra.ec == std::errc() && ra.ptr == a.data() + a.size() && std::isfinite(v) && v > 0, path,
               ": loss_scale '", a, "' is not a positive number");
    SGPT_CHECK(rc.ec == std::errc() && rc.ptr == c.data() + c.size() && n >= 0 && n < cfg.growth_interval, path,
               ": loss_scale_good_steps '", c, "' is not a count below --loss-scale-window ", cfg.growth_interval);
    lesson05::LossScalerConfig from = cfg;
    from.init_scale = v;
    tr_.scaler() = lesson05::DynamicLossScaler(from);
    for (int64_t i = 0; i < n; ++i) tr_.scaler().update(false);
  }

  GPTConfig cfg_;
  lesson05::MixedPrecisionTrainer tr_;
};

}  // namespace

std::unique_ptr<MixedPrecisionRun> make_mixed_precision_run(const StrategySetup& s, int n_ranks) {
  const std::string& dtype = s.dtype;
  SGPT_CHECK(dtype == "f32" || dtype == "bf16" || dtype == "fp16", "--dtype must be f32, bf16 or fp16, got '", dtype,
             "'");
  if (dtype == "f32") return nullptr;
  SGPT_CHECK(n_ranks == 1, "--dtype ", dtype, " runs on one rank for now (data parallelism trains in f32)");
  lesson05::Recipe r;
  r.precision = lesson05::parse_precision(dtype);
  r.loss_scaling = r.precision == lesson05::Precision::FP16;  // bf16 has f32's range: no scaling needed
  r.scaler.init_scale = s.loss_scale;
  r.scaler.growth_interval = s.loss_scale_window;
  return std::make_unique<LessonRun>(s.cfg, s.seed, r, s.adamw, s.device);
}

}  // namespace sgpt::train
