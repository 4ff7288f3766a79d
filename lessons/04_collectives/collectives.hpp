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
/// You write the three functions in collectives.cpp.

#include "comm/communicator.hpp"
#include "core/tensor.hpp"

namespace sgpt::lesson04 {

/// Task 1: ring reduce-scatter (sum). `in` holds n elements on every rank (1-D, contiguous);
/// `out` (shard_range(n, p, r).count elements, same dtype) receives chunk r of the element-wise
/// sum over ranks. `in` is not modified. p - 1 steps: at step s rank r sends its partial sum of
/// chunk (r - s - 1) mod p and adds the chunk (r - s - 2) mod p it receives to its own.
void ring_reduce_scatter(Communicator& comm, Tensor& out, const Tensor& in);

/// Task 2: ring all-gather. `in` holds this rank's chunk (shard_range(n, p, r).count elements);
/// `out` (n elements, same dtype) receives every rank's chunk in rank order. p - 1 steps: at
/// step s rank r forwards chunk (r - s) mod p and receives chunk (r - s - 1) mod p.
void ring_all_gather(Communicator& comm, Tensor& out, const Tensor& in);

/// Task 3: ring all-reduce, in place: ring_reduce_scatter then ring_all_gather (2(p - 1)
/// steps). ReduceOp::Avg divides the sum by p.
void ring_all_reduce(Communicator& comm, Tensor& t, ReduceOp op = ReduceOp::Sum);

}  // namespace sgpt::lesson04
