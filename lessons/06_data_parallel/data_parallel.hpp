#pragma once
/// @file data_parallel.hpp
/// @brief Lesson 06: data parallelism — every rank holds the whole model, trains on its own rows
/// of each global batch, and the ranks average their gradients once per optimizer step.
///
///     global batch = micro-batch x accumulation steps x data-parallel ranks   (gbs = mbs * k * dp)
///
/// The data. A token stream of S tokens is cut into W = (S - 1) / T windows of T + 1 tokens:
/// window w has inputs tokens[w*T, w*T + T) and targets tokens[w*T + 1, w*T + T + 1) (the next
/// token of each input). An epoch visits the windows in the order epoch_order(W, seed, epoch)
/// (given below), in global batches of gbs consecutive entries of that order; the W % gbs windows
/// left at the end of an epoch are skipped, so an epoch has W / gbs steps. Step s is global batch
/// j = s % (W / gbs) of epoch s / (W / gbs), and its row i (0 <= i < gbs) is window
/// order[j * gbs + i]. Rank r of dp ranks trains on rows [r * gbs/dp, (r + 1) * gbs/dp).
///
/// You write the five functions below in data_parallel.cpp.

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "comm/communicator.hpp"
#include "core/rng.hpp"
#include "core/tensor.hpp"
#include "data/token_file.hpp"
#include "model/gpt.hpp"
#include "optim/optim.hpp"

namespace sgpt::lesson06 {

/// Given: the order in which epoch `epoch` visits `n` windows, a permutation of [0, n) that
/// depends only on (n, seed, epoch) — so every rank computes the same one without talking.
/// (A Fisher-Yates shuffle driven by the counter-based generator of core/rng.hpp.)
inline std::vector<int64_t> epoch_order(int64_t n, uint64_t seed, int64_t epoch) {
  std::vector<int64_t> order(static_cast<std::size_t>(n));
  for (int64_t i = 0; i < n; ++i) order[i] = i;
  const uint64_t key = rng::stream_key(seed, "lesson06-epoch-" + std::to_string(epoch));
  for (int64_t i = n - 1; i > 0; --i) {
    const auto j = static_cast<int64_t>(rng::uniform(key, uint64_t(i)) * double(i + 1)) % (i + 1);
    std::swap(order[i], order[j]);
  }
  return order;
}

/// Task 1: fills `x` and `y` (i32 [gbs/dp, T]) with this rank's rows of the global batch of
/// step `step` (>= 0, any epoch), as the file comment defines them: x the inputs, y the targets.
/// Undefined tensors are allocated on the CPU; defined ones must already have that shape and
/// dtype. Read tokens with TokenFile::read (only this rank's windows). Throws sgpt::Error
/// (SGPT_CHECK), naming the numbers, when gbs or T is not positive, rank is not in [0, dp),
/// dp does not divide gbs, or the data holds fewer than gbs windows (not one global batch).
void load_shard(const TokenFile& tokens, int64_t step, int64_t global_batch, int64_t seq_len, uint64_t seed,
                int rank, int dp, Tensor& x, Tensor& y);

/// Task 2: the replicated start. Makes `params` on every rank of `comm` bit-identical to rank
/// 0's (one collective of the library's Communicator). Call once, before the first step.
void replicate_parameters(Communicator& comm, Tensor& params);

/// Task 3a: replaces `grads` on every rank with the average over the ranks of `comm` (the
/// gradient of the mean loss of the global batch). One collective call.
void average_gradients(Communicator& comm, Tensor& grads);

/// Task 3b: the mean of `local_loss` over the ranks of `comm`. Each rank passes the mean loss of
/// its rows; every rank has the same number of rows, so this is the mean loss of the global
/// batch. One all-reduce of a one-element f64 tensor on the CPU (the MPI and threads backends;
/// the trainer's NCCL runs pass `device` = CUDA, where NCCL needs the tensor).
double global_mean_loss(Communicator& comm, double local_loss, Device device = Device::CPU);

/// What a training step reports.
struct StepStats {
  double loss = 0;       ///< mean loss of the global batch (all ranks' rows), the same on every rank
  double grad_norm = 0;  ///< norm of the averaged gradient before clipping
};

/// Task 4: one data-parallel optimizer step. (x, y) are this rank's rows [b, T] of the global
/// batch (b = gbs/dp), trained in k = b / micro_batch micro-batches: zero the gradients once,
/// accumulate (GPT::backward(1/k) adds the scaled gradient), then — once, after the last
/// micro-batch — average the gradients over the ranks, take the global mean loss, clip the
/// global norm to `clip` (<= 0: off; clip_grad_norm) and update with `opt` (AdamW::step) at
/// `lr`. Per step the communicator sees exactly two all-reduces: the gradient buffer and the
/// loss. Throws sgpt::Error naming the numbers, before any communication, when micro_batch is not
/// positive or does not divide b (then mbs * dp does not divide the global batch).
StepStats train_step(GPT& model, AdamW& opt, Communicator& comm, const Tensor& x, const Tensor& y,
                     int64_t micro_batch, double lr, double clip);

}  // namespace sgpt::lesson06
