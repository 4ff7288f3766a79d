#pragma once
/// @file overlapped_dp.hpp
/// @brief Lesson 07: bucketed, overlapped data parallelism — the gradient all-reduce is cut into
/// buckets, and each bucket's all-reduce starts while backward is still computing the others.
///
/// Buckets. The flat gradient buffer is laid out embeddings, block 0 .. block L-1, final
/// LayerNorm (, lm_head); backward produces it from the end to the start. Buckets are contiguous
/// ranges of whole parameter tensors, made in that backward order (make_buckets):
///
///     walk the parameters from the last one (highest offset) to the first;
///     a parameter joins the open bucket if the bucket's bytes + its bytes <= bucket_bytes,
///     else the open bucket (if it holds anything) is closed and the parameter opens a new one.
///
/// So bucket 0 ends at the end of the buffer, bucket i+1 ends where bucket i begins, every bucket
/// holds at most bucket_bytes — except that a parameter larger than bucket_bytes is a bucket of
/// its own (a tensor is never split). bucket_bytes >= the whole buffer gives one bucket (lesson
/// 06's single all-reduce); bucket_bytes smaller than one element is an error.
///
/// Overlap. GPT::backward(scale, hook) calls the hook after each stage with `first_final`: the
/// gradients at [first_final, numel) are final. A bucket whose elements all lie there can start
/// its all-reduce (Communicator::all_reduce_async) while backward goes on; before the optimizer
/// reads the gradients, every bucket's Work must have been waited for.
///
/// You write the four functions below in overlapped_dp.cpp.

#include <cstdint>
#include <vector>

#include "comm/communicator.hpp"
#include "core/tensor.hpp"
#include "model/gpt.hpp"
#include "model/layout.hpp"
#include "optim/optim.hpp"

namespace sgpt::lesson07 {

/// A range of the flat gradient buffer that is all-reduced as one message.
struct Bucket {
  int64_t begin = 0;    ///< first element (an offset into the flat buffer)
  int64_t count = 0;    ///< number of elements
  int first_param = 0;  ///< index in ParameterLayout::params() of its first (lowest-offset) parameter
  int num_params = 0;   ///< how many consecutive parameters it holds
  /// Equal when every field is.
  bool operator==(const Bucket&) const = default;
};

/// Task 1: the buckets of `layout` for a cap of `bucket_bytes` bytes, with `element_bytes` bytes
/// per gradient element (4 for f32, 8 for f64), in backward order (bucket 0 holds the last
/// parameters of the buffer), by the rule in the file comment. Throws sgpt::Error naming the
/// numbers when element_bytes is not positive or bucket_bytes < element_bytes.
std::vector<Bucket> make_buckets(const ParameterLayout& layout, int64_t bucket_bytes, int64_t element_bytes);

/// Averages a model's gradient buffer over the ranks of a communicator, bucket by bucket, each
/// bucket as soon as backward has finished it.
class OverlappedReducer {
 public:
  /// Reduces `grads` (the flat gradient buffer; the reducer keeps this view of it) over `comm`
  /// in `buckets` (from make_buckets, in backward order).
  OverlappedReducer(Communicator& comm, Tensor grads, std::vector<Bucket> buckets)
      : comm_(comm), grads_(std::move(grads)), buckets_(std::move(buckets)) {}

  /// Task 2: the hook to pass to GPT::backward. Gradients [first_final, numel) are final: start,
  /// in bucket order, the asynchronous average (ReduceOp::Avg) of every bucket not started yet
  /// whose elements all lie there, and return at once (do not wait here). Each bucket is started
  /// exactly once per step.
  void on_grads_ready(int64_t first_final);

  /// Task 3: waits for every bucket started this step; afterwards the gradient buffer holds the
  /// average over the ranks and the reducer is ready for the next step. Throws sgpt::Error when a
  /// bucket was never started (backward did not run with the hook, or not to the end).
  void finish();

  /// The buckets, in backward order.
  const std::vector<Bucket>& buckets() const { return buckets_; }

 private:
  Communicator& comm_;
  Tensor grads_;
  std::vector<Bucket> buckets_;
  std::vector<Tensor> views_;  // the views of the buckets in flight (a Work needs its tensor untouched)
  std::vector<Work> pending_;  // the Works of the buckets started this step
  size_t next_ = 0;            // the first bucket not started yet this step
};

/// What a training step reports.
struct StepStats {
  double loss = 0;       ///< mean loss of the global batch (all ranks' rows), the same on every rank
  double grad_norm = 0;  ///< norm of the averaged gradient before clipping
};

/// Task 4: one data-parallel optimizer step with overlapped communication. (x, y) are this rank's
/// rows [b, T] of the global batch, trained in k = b / micro_batch micro-batches of scale 1/k
/// after zeroing the gradients once. Only the last micro-batch's backward communicates (the
/// earlier ones only accumulate: "no_sync"); then finish the reducer, take the mean loss of the
/// global batch (one blocking all-reduce of a one-element f64 tensor), clip to `clip` (<= 0:
/// off) and update with `opt` at `lr`. Per step: one all-reduce per bucket and one for the loss.
/// Throws sgpt::Error naming the numbers, before any communication, when micro_batch is not
/// positive or does not divide b.
StepStats train_step(GPT& model, AdamW& opt, OverlappedReducer& reducer, Communicator& comm, const Tensor& x,
                     const Tensor& y, int64_t micro_batch, double lr, double clip);

}  // namespace sgpt::lesson07
