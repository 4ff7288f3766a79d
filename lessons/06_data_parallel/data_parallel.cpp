// Lesson 06: data parallelism. Each rank reads its own rows of every global batch, runs forward and
// backward on them like lesson 02, and the ranks average their gradients once per optimizer step;
// from identical parameters, identical averaged gradients give identical updates on every rank.

#include "data_parallel.hpp"

#include "core/check.hpp"

namespace sgpt::lesson06 {

void load_shard(const TokenFile& tokens, int64_t step, int64_t global_batch, int64_t seq_len, uint64_t seed,
                int rank, int dp, Tensor& x, Tensor& y) {
  // TODO(lesson 06, task 1): this rank's rows of a global batch
  // HINT: every check depends only on arguments that all ranks share, so all ranks throw together.
  SGPT_TODO(6, 1, "this rank's rows of a global batch");
}

void replicate_parameters(Communicator& comm, Tensor& params) {
  // TODO(lesson 06, task 2): the replicated start
  // HINT: after this call every rank holds rank 0's bytes.
  SGPT_TODO(6, 2, "the replicated start");
}

void average_gradients(Communicator& comm, Tensor& grads) {
  // TODO(lesson 06, task 3): average the gradients and the loss over the ranks
  // HINT: which ReduceOp gives the mean?
  SGPT_TODO(6, 3, "average the gradients and the loss over the ranks");
}

double global_mean_loss(Communicator& comm, double local_loss, Device device) {
  // TODO(lesson 06, task 3): average the gradients and the loss over the ranks
  SGPT_TODO(6, 3, "average the gradients and the loss over the ranks");
}

StepStats train_step(GPT& model, AdamW& opt, Communicator& comm, const Tensor& x, const Tensor& y,
                     int64_t micro_batch, double lr, double clip) {
  // TODO(lesson 06, task 4): one data-parallel optimizer step
  // HINT: check the sizes before any communication; communicate after the last micro-batch only.
  SGPT_TODO(6, 4, "one data-parallel optimizer step");
}

}  // namespace sgpt::lesson06
