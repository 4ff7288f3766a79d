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
  const int p = comm.size(), r = comm.rank();
  const int64_t n = in.numel();
  SGPT_CHECK(out.dtype() == in.dtype() && out.numel() == shard_range(n, p, r).count,
             "ring_reduce_scatter: out must hold rank ", r, "'s shard of the ", n, " elements of in (",
             shard_range(n, p, r).count, " elements of ", dtype_name(in.dtype()), "), got ", out.numel(), " of ",
             dtype_name(out.dtype()));
  Tensor work = empty_like(in, n);
  if (n > 0) work.copy_from(in.reshape({n}));
  Tensor buf = empty_like(in, shard_range(n, p, 0).count);
  const int next = (r + 1) % p, prev = wrap(r - 1, p);
  for (int s = 0; s < p - 1; ++s) {
    const int send_c = wrap(r - s - 1, p), recv_c = wrap(r - s - 2, p);
    Tensor incoming = buf.view(0, {shard_range(n, p, recv_c).count});
    comm.send_recv(chunk(work, p, send_c), next, incoming, prev);
    Tensor mine = chunk(work, p, recv_c);
    add_into(mine, incoming);
  }
  if (out.numel() > 0) out.copy_from(chunk(work, p, r).reshape(out.shape()));
  // END TODO
}

void ring_all_gather(Communicator& comm, Tensor& out, const Tensor& in) {
  // TODO(lesson 04, task 2): ring all-gather
  const int p = comm.size(), r = comm.rank();
  const int64_t n = out.numel();
  SGPT_CHECK(out.dtype() == in.dtype() && in.numel() == shard_range(n, p, r).count,
             "ring_all_gather: in must hold rank ", r, "'s shard of the ", n, " elements of out (",
             shard_range(n, p, r).count, " elements of ", dtype_name(out.dtype()), "), got ", in.numel(), " of ",
             dtype_name(in.dtype()));
  Tensor flat = out.reshape({n});
  Tensor own = chunk(flat, p, r);
  if (own.numel() > 0 && own.raw() != in.raw()) own.copy_from(in.reshape({in.numel()}));
  const int next = (r + 1) % p, prev = wrap(r - 1, p);
  for (int s = 0; s < p - 1; ++s) {
    Tensor incoming = chunk(flat, p, wrap(r - s - 1, p));
    comm.send_recv(chunk(flat, p, wrap(r - s, p)), next, incoming, prev);
  }
  // END TODO
}

void ring_all_reduce(Communicator& comm, Tensor& t, ReduceOp op) {
  // TODO(lesson 04, task 3): ring all-reduce and average
  const int p = comm.size(), r = comm.rank();
  const int64_t n = t.numel();
  Tensor flat = t.reshape({n});
  Tensor mine = chunk(flat, p, r);
  ring_reduce_scatter(comm, mine, flat);
  if (op == ReduceOp::Avg) divide_by(mine, double(p));
  ring_all_gather(comm, flat, mine);
  // END TODO
}

}  // namespace sgpt::lesson04
