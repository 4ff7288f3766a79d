// scalegpt-train --dtype bf16|fp16 through lesson 05's MixedPrecisionTrainer (see precision.hpp).

#include "precision.hpp"

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
  void save(const std::string& path, const TrainState& state) override {
    GPT holder(cfg_, 0, tr_.model().device());
    holder.params().copy_from(tr_.master());
    TrainState s = state;
    s.extra["dtype"] = lesson05::precision_name(tr_.recipe().precision);
    save_checkpoint(path, holder, tr_.optimizer(), s);
  }

  TrainState load(const std::string& path) override {
    GPT holder(cfg_, 0, tr_.model().device());
    TrainState s = load_checkpoint(path, holder, tr_.optimizer());
    tr_.master().copy_from(holder.params());
    lesson05::cast_into(tr_.model().params(), tr_.master());
    return s;
  }

 private:
  GPTConfig cfg_;
  lesson05::MixedPrecisionTrainer tr_;
};

}  // namespace

std::unique_ptr<MixedPrecisionRun> make_mixed_precision_run(const std::string& dtype, const GPTConfig& cfg,
                                                            uint64_t seed, const AdamWConfig& adamw, Device device,
                                                            int n_ranks) {
  SGPT_CHECK(dtype == "f32" || dtype == "bf16" || dtype == "fp16", "--dtype must be f32, bf16 or fp16, got '", dtype,
             "'");
  if (dtype == "f32") return nullptr;
  SGPT_CHECK(n_ranks == 1, "--dtype ", dtype, " runs on one rank for now (data parallelism trains in f32)");
  lesson05::Recipe r;
  r.precision = lesson05::parse_precision(dtype);
  r.loss_scaling = r.precision == lesson05::Precision::FP16;  // bf16 has f32's range: no scaling needed
  return std::make_unique<LessonRun>(cfg, seed, r, adamw, device);
}

}  // namespace sgpt::train
