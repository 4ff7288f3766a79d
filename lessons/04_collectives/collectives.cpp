// Lesson 04: ring collectives from point-to-point messages. What each function must do (shapes,
// the chunking rule, the calls and bytes on every rank) is in collectives.hpp; the README has the
// diagram, the math and hints in three levels. The helpers below are given: they run on the
// tensors' device (CPU or CUDA) through the library's ops.

#include "collectives.hpp"

#include "core/check.hpp"
#include "kernels/ops.hpp"

namespace sgpt::lesson04 {

namespace {

// Given: the elements of chunk c of the 1-D tensor t (a view; it may have 0 elements).
[[maybe_unused]] Tensor chunk(const Tensor& t, int p, int c) {
  const ShardRange s = shard_range(t.numel(), p, c);
  return t.view(s.begin, {s.count});
}

// Given: dst += src, element by element (same dtype, size and device). It calls the library's
// axpy_, which runs on the tensors' device: the ring works on CUDA tensors under NCCL as well.
[[maybe_unused]] void add_into(Tensor& dst, const Tensor& src) {
  SGPT_CHECK(dst.dtype() == src.dtype() && dst.numel() == src.numel(), "add_into: mismatched tensors (",
             dtype_name(dst.dtype()), " [", dst.numel(), "] += ", dtype_name(src.dtype()), " [", src.numel(), "])");
  if (dst.numel() > 0) axpy_(dst, 1.0, src);
}

// Given: t *= 1/divisor, element by element, on the tensor's device (the library's scale_).
[[maybe_unused]] void divide_by(Tensor& t, double divisor) {
  SGPT_CHECK(divisor != 0, "divide_by: division by zero");
  if (t.numel() > 0) scale_(t, 1.0 / divisor);
}

// Given: an uninitialised 1-D tensor of n elements with t's dtype, on t's device.
[[maybe_unused]] Tensor empty_like(const Tensor& t, int64_t n) { return Tensor::empty({n}, t.dtype(), t.device()); }

// Given: the chunk index k mod p, always in [0, p).
[[maybe_unused]] int wrap(int k, int p) { return ((k % p) + p) % p; }

}  // namespace

void ring_reduce_scatter(Communicator& comm, Tensor& out, const Tensor& in) {
  // TODO(lesson 04, task 1): ring reduce-scatter (sum)
  // Contract: the comment of this function in the header. Hints: README.md, section "Hints", task 1.
  SGPT_TODO(4, 1, "ring reduce-scatter (sum)");
}

void ring_all_gather(Communicator& comm, Tensor& out, const Tensor& in) {
  // TODO(lesson 04, task 2): ring all-gather
  // Contract: the comment of this function in the header. Hints: README.md, section "Hints", task 2.
  SGPT_TODO(4, 2, "ring all-gather");
}

void ring_all_reduce(Communicator& comm, Tensor& t, ReduceOp op) {
  // TODO(lesson 04, task 3): ring all-reduce and average
  // Contract: the comment of this function in the header. Hints: README.md, section "Hints", task 3.
  SGPT_TODO(4, 3, "ring all-reduce and average");
}

}  // namespace sgpt::lesson04
