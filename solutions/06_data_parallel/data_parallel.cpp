// Lesson 06: data parallelism. Each rank reads its own rows of every global batch, runs forward and
// backward on them like lesson 02, and the ranks average their gradients once per optimizer step;
// from identical parameters, identical averaged gradients give identical updates on every rank.

#include "data_parallel.hpp"

#include "core/check.hpp"

namespace sgpt::lesson06 {

void load_shard(const TokenFile& tokens, int64_t step, int64_t global_batch, int64_t seq_len, uint64_t seed,
                int rank, int dp, Tensor& x, Tensor& y) {
  // TODO(lesson 06, task 1): this rank's rows of a global batch
  SGPT_CHECK(global_batch > 0 && seq_len > 0, "load_shard: global batch ", global_batch, " and sequence length ",
             seq_len, " must be positive");
  SGPT_CHECK(dp > 0 && rank >= 0 && rank < dp, "load_shard: rank ", rank, " is not in [0, dp=", dp, ")");
  SGPT_CHECK(global_batch % dp == 0, "load_shard: the global batch ", global_batch,
             " is not divisible by the ", dp, " data-parallel ranks");
  SGPT_CHECK(step >= 0, "load_shard: step ", step, " is negative");
  const int64_t windows = (tokens.size() - 1) / seq_len;
  SGPT_CHECK(windows >= global_batch, "load_shard: '", tokens.path(), "' holds ", tokens.size(), " tokens = ",
             windows, " windows of ", seq_len, " + 1, fewer than one global batch of ", global_batch, " rows");
  const int64_t b = global_batch / dp, T = seq_len;
  const Shape shape{b, T};
  for (Tensor* t : {&x, &y}) {
    if (!t->defined()) *t = Tensor::empty(shape, DType::I32, Device::CPU);
    SGPT_CHECK(t->dtype() == DType::I32 && t->shape() == shape && t->device() == Device::CPU,
               "load_shard: x and y must be CPU i32 ", shape_str(shape), ", got ", dtype_name(t->dtype()),
               shape_str(t->shape()));
  }
  const int64_t steps_per_epoch = windows / global_batch;
  const std::vector<int64_t> order = epoch_order(windows, seed, step / steps_per_epoch);
  const int64_t first = (step % steps_per_epoch) * global_batch + rank * b;  // this rank's first row
  std::vector<int32_t> window(static_cast<std::size_t>(T + 1));
  for (int64_t i = 0; i < b; ++i) {
    tokens.read(order[first + i] * T, T + 1, window.data());
    std::copy(window.begin(), window.end() - 1, x.data<int32_t>() + i * T);
    std::copy(window.begin() + 1, window.end(), y.data<int32_t>() + i * T);
  }
  // END TODO
}

void replicate_parameters(Communicator& comm, Tensor& params) {
  // TODO(lesson 06, task 2): the replicated start
  // After this call every rank holds rank 0's bytes.
  comm.broadcast(params, 0);
  // END TODO
}

void average_gradients(Communicator& comm, Tensor& grads) {
  // TODO(lesson 06, task 3): average the gradients and the loss over the ranks
  comm.all_reduce(grads, ReduceOp::Avg);
  // END TODO
}

double global_mean_loss(Communicator& comm, double local_loss, Device device) {
  // TODO(lesson 06, task 3): average the gradients and the loss over the ranks
  Tensor t = Tensor::from(std::vector<double>{local_loss}, {1});
  if (device != Device::CPU) t = t.to(device);
  comm.all_reduce(t, ReduceOp::Avg);
  return t.to_vector()[0];
  // END TODO
}

StepStats train_step(GPT& model, AdamW& opt, Communicator& comm, const Tensor& x, const Tensor& y,
                     int64_t micro_batch, double lr, double clip) {
  // TODO(lesson 06, task 4): one data-parallel optimizer step
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
    model.backward(1.0 / double(k));
  }
  average_gradients(comm, model.grads());
  StepStats s;
  s.loss = global_mean_loss(comm, loss / double(k));
  s.grad_norm = clip_grad_norm(model.grads(), clip);
  opt.step(model.params(), model.grads(), lr);
  return s;
  // END TODO
}

}  // namespace sgpt::lesson06
