// Lesson 06: data parallelism. Each rank reads its own rows of every global batch, runs forward and
// backward on them like lesson 02, and the ranks average their gradients once per optimizer step;
// from identical parameters, identical averaged gradients give identical updates on every rank.

#include "data_parallel.hpp"

#include "core/check.hpp"

namespace sgpt::lesson06 {

void load_shard(const TokenFile& tokens, int64_t step, int64_t global_batch, int64_t seq_len, uint64_t seed,
                int rank, int dp, Tensor& x, Tensor& y) {
  // TODO(lesson 06, task 1): this rank's rows of a global batch
  // Contract: the comment of this function in the header. Hints: README.md, section "Hints", task 1.
  SGPT_TODO(6, 1, "this rank's rows of a global batch");
}

void replicate_parameters(Communicator& comm, Tensor& params) {
  // TODO(lesson 06, task 2): the replicated start
  // After this call every rank holds rank 0's bytes.
  // Contract: the comment of this function in the header. Hints: README.md, section "Hints", task 2.
  SGPT_TODO(6, 2, "the replicated start");
}

void average_gradients(Communicator& comm, Tensor& grads) {
  // TODO(lesson 06, task 3): average the gradients and the loss over the ranks
  // Contract: the comment of this function in the header. Hints: README.md, section "Hints", task 3.
  SGPT_TODO(6, 3, "average the gradients and the loss over the ranks");
}

double global_mean_loss(Communicator& comm, double local_loss, Device device) {
  // TODO(lesson 06, task 3): average the gradients and the loss over the ranks
  // Contract: the comment of this function in the header. Hints: README.md, section "Hints", task 3.
  SGPT_TODO(6, 3, "average the gradients and the loss over the ranks");
}

StepStats train_step(GPT& model, AdamW& opt, Communicator& comm, const Tensor& x, const Tensor& y,
                     int64_t micro_batch, double lr, double clip) {
  // TODO(lesson 06, task 4): one data-parallel optimizer step
  // Contract: the comment of this function in the header. Hints: README.md, section "Hints", task 4.
  SGPT_TODO(6, 4, "one data-parallel optimizer step");
}

}  // namespace sgpt::lesson06
