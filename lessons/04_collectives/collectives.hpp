#pragma once
/// @file collectives.hpp
/// @brief Lesson 04: ring collectives (reduce-scatter, all-gather, all-reduce) from send/recv.
///
/// A group of p ranks is a ring: rank r sends to next = (r + 1) % p and receives from
/// prev = (r - 1 + p) % p, in one Communicator::send_recv per step. The buffer of n elements is
/// cut into p chunks by the course's sharding rule, chunk c = shard_range(n, p, c) (the first
/// n % p chunks have one element more). Every function below uses only send_recv (no library
/// collective), works for f32 and f64 tensors, any p >= 1 and any n >= 0 (n < p too: some
/// chunks are empty, and an empty chunk is still sent, so every rank makes the same calls).
///
/// What the tests count on rank r (c_k = shard_range(n, p, k).count, es = bytes per element):
///   ring_reduce_scatter: p - 1 send_recv calls, (n - c_r) * es bytes sent
///   ring_all_gather:     p - 1 send_recv calls, (n - c_{(r+1)%p}) * es bytes sent
///   ring_all_reduce:     2(p - 1) send_recv calls, the sum of the two above
///
/// Given in collectives.cpp: chunk(t, p, c) (the view of chunk c), add_into(dst, src),
/// divide_by(t, d), empty_like(t, n) and wrap(k, p) (k mod p in [0, p)); they use the library's
/// ops, so the same code runs on CUDA tensors under NCCL. You write the three functions in
/// collectives.cpp.

#include "comm/communicator.hpp"
#include "core/tensor.hpp"

namespace sgpt::lesson04 {

/// Task 1: ring reduce-scatter (sum). `in` holds n elements on every rank (1-D, contiguous);
/// `out` (shard_range(n, p, r).count elements, same dtype) receives chunk r of the element-wise
/// sum over ranks. `in` is not modified. Throws sgpt::Error naming the sizes when `out` does not
/// hold this rank's shard.
void ring_reduce_scatter(Communicator& comm, Tensor& out, const Tensor& in);

/// Task 2: ring all-gather. `in` holds this rank's chunk (shard_range(n, p, r).count elements);
/// `out` (n elements, same dtype) receives every rank's chunk in rank order. Throws sgpt::Error
/// naming the sizes when `in` is not this rank's shard of `out`.
void ring_all_gather(Communicator& comm, Tensor& out, const Tensor& in);

/// Task 3: ring all-reduce, in place: every rank ends with the element-wise sum over ranks
/// (ReduceOp::Sum) or that sum divided by p (ReduceOp::Avg), in 2(p - 1) send_recv calls.
void ring_all_reduce(Communicator& comm, Tensor& t, ReduceOp op = ReduceOp::Sum);

}  // namespace sgpt::lesson04
