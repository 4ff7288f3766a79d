// scalegpt-train under mpirun: data parallelism through the course's code. Every rank holds the
// whole model and trains on its own rows of each global batch; the gradients are averaged before
// the optimizer step by lesson 06's all-reduce after backward, or by lesson 07's buckets
// all-reduced while backward runs (--bucket-kib). N ranks x --batch b compute what one rank with
// --batch N*b computes. In the student release an unfinished task stops every rank at set-up.

#include <memory>

#include "core/check.hpp"
#include "data_parallel.hpp"  // lesson 06: the replicated start, gradient and loss averaging
#include "overlapped_dp.hpp"  // lesson 07: bucketed all-reduce overlapped with backward
#include "precision.hpp"
#include "single_device.hpp"

namespace sgpt::train {

namespace {

class DataParallel final : public SingleDevice {
 public:
  DataParallel(const StrategySetup& s, std::shared_ptr<Communicator> world, int64_t bucket_kib)
      : SingleDevice(s), world_(std::move(world)) {
    lesson06::replicate_parameters(*world_, model_.params());
    if (bucket_kib > 0)
      reducer_ = std::make_unique<lesson07::OverlappedReducer>(
          *world_, model_.grads(),
          lesson07::make_buckets(model_.layout(), bucket_kib * 1024, int64_t(dtype_size(model_.dtype()))));
  }

  int data_rank() const override { return world_->rank(); }
  int data_ranks() const override { return world_->size(); }
  std::string describe() const override { return str(" per rank x ", world_->size(), " ranks"); }

  double mean_eval_loss(double local_mean) override {
    Tensor t = Tensor::from(std::vector<double>{local_mean}, {1}).to(model_.device());
    world_->all_reduce(t, ReduceOp::Avg);
    return t.to_vector()[0];
  }

 protected:
  bool writes() const override { return world_->rank() == 0; }  // every rank holds the same model

  double forward_backward(const Tensor& x, const Tensor& y) override {
    model_.zero_grad();
    const double loss = model_.forward(x, y);
    if (reducer_) {
      model_.backward(1.0, [&](int64_t first_final) { reducer_->on_grads_ready(first_final); });
      reducer_->finish();  // the mean gradient of the global batch, bucket by bucket
    } else {
      model_.backward();
      lesson06::average_gradients(*world_, model_.grads());  // the mean gradient
    }
    return lesson06::global_mean_loss(*world_, loss, model_.device());  // for the log: the global batch's loss
  }

 private:
  std::shared_ptr<Communicator> world_;
  std::unique_ptr<lesson07::OverlappedReducer> reducer_;
};

}  // namespace

std::unique_ptr<Strategy> make_data_parallel(const StrategySetup& s, std::shared_ptr<Communicator> world,
                                             int64_t bucket_kib) {
  SGPT_CHECK(world && world->size() > 1, "internal: data parallelism needs a world of several ranks");
  // Throws for bf16/fp16 on several ranks (data parallelism trains in f32).
  make_mixed_precision_run(s, world->size());
  return std::make_unique<DataParallel>(s, std::move(world), bucket_kib);
}

}  // namespace sgpt::train
