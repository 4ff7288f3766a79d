// Lesson 07: bucketed, overlapped data parallelism. The gradient buffer is cut into buckets in the
// order backward finishes it; each bucket's all-reduce starts as soon as its last gradient is
// final, so communication runs while backward computes the layers below, and the step waits only
// for what is still in flight when backward ends.

#include "overlapped_dp.hpp"

#include "core/check.hpp"

namespace sgpt::lesson07 {

std::vector<Bucket> make_buckets(const ParameterLayout& layout, int64_t bucket_bytes, int64_t element_bytes) {
  // TODO(lesson 07, task 1): gradient buckets in backward order
  SGPT_CHECK(element_bytes > 0, "make_buckets: element size ", element_bytes, " bytes must be positive");
  SGPT_CHECK(bucket_bytes >= element_bytes, "make_buckets: a bucket of ", bucket_bytes,
             " bytes cannot hold one gradient element of ", element_bytes, " bytes");
  const std::vector<ParamInfo>& params = layout.params();
  std::vector<Bucket> buckets;
  Bucket open;
  for (int i = int(params.size()) - 1; i >= 0; --i) {
    const int64_t n = params[i].numel;
    if (open.num_params > 0 && (open.count + n) * element_bytes > bucket_bytes) {
      buckets.push_back(open);
      open = Bucket{};
    }
    open.begin = params[i].offset;  // walking down: the bucket grows towards the start
    open.count += n;
    open.first_param = i;
    open.num_params += 1;
  }
  if (open.num_params > 0) buckets.push_back(open);
  return buckets;
  // END TODO
}

void OverlappedReducer::on_grads_ready(int64_t first_final) {
  // TODO(lesson 07, task 2): start every finished bucket's all-reduce
  while (next_ < buckets_.size() && buckets_[next_].begin >= first_final) {
    const Bucket& b = buckets_[next_];
    views_.push_back(grads_.view(b.begin, {b.count}));
    pending_.push_back(comm_.all_reduce_async(views_.back(), ReduceOp::Avg));
    ++next_;
  }
  // END TODO
}

void OverlappedReducer::finish() {
  // TODO(lesson 07, task 3): wait for every bucket
  SGPT_CHECK(next_ == buckets_.size(), "OverlappedReducer::finish: only ", next_, " of ", buckets_.size(),
             " buckets were started (run the last micro-batch's backward with on_grads_ready as its hook)");
  for (Work& w : pending_) w.wait();
  pending_.clear();
  views_.clear();
  next_ = 0;
  // END TODO
}

StepStats train_step(GPT& model, AdamW& opt, OverlappedReducer& reducer, Communicator& comm, const Tensor& x,
                     const Tensor& y, int64_t micro_batch, double lr, double clip) {
  // TODO(lesson 07, task 4): one overlapped data-parallel step with no_sync accumulation
  // Given: GPT::backward(scale) without a hook communicates nothing; with one, it calls it per stage.
  SGPT_CHECK(x.dim() == 2 && y.shape() == x.shape(), "train_step: x and y must be [rows, T], got ",
             shape_str(x.shape()), " and ", shape_str(y.shape()));
  const int64_t b = x.size(0);
  SGPT_CHECK(micro_batch > 0 && b % micro_batch == 0, "train_step: micro-batch ", micro_batch,
             " does not divide this rank's ", b, " rows: the global batch ", b * comm.size(),
             " is not a multiple of micro-batch x data-parallel ranks = ", micro_batch, " x ", comm.size());
  const int64_t k = b / micro_batch;
  model.zero_grad();
  double loss = 0;
  for (int64_t i = 0; i < k; ++i) {
    loss += model.forward(x.slice(i * micro_batch, (i + 1) * micro_batch),
                          y.slice(i * micro_batch, (i + 1) * micro_batch));
    if (i + 1 < k) {
      model.backward(1.0 / double(k));  // no_sync: accumulate only
    } else {
      model.backward(1.0 / double(k), [&](int64_t first_final) { reducer.on_grads_ready(first_final); });
    }
  }
  reducer.finish();
  Tensor l = Tensor::from(std::vector<double>{loss / double(k)}, {1});
  comm.all_reduce(l, ReduceOp::Avg);
  StepStats s;
  s.loss = l.to_vector()[0];
  s.grad_norm = clip_grad_norm(model.grads(), clip);
  opt.step(model.params(), model.grads(), lr);
  return s;
  // END TODO
}

}  // namespace sgpt::lesson07
