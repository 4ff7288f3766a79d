// Lesson 04: ring collectives from point-to-point messages. Rank r of p sends to (r + 1) % p and
// receives from (r - 1 + p) % p, one chunk per step, with send_recv (both directions at once, so
// nobody waits for a receive that is never posted). Chunk c of an n-element buffer is
// shard_range(n, p, c): the first n % p chunks are one element longer.

#include "collectives.hpp"

#include "core/check.hpp"

namespace sgpt::lesson04 {

namespace {

// Given: the elements of chunk c of the 1-D tensor t (a view; it may have 0 elements).
[[maybe_unused]] Tensor chunk(const Tensor& t, int p, int c) {
  const ShardRange s = shard_range(t.numel(), p, c);
  return t.view(s.begin, {s.count});
}

// Given: dst += src, element by element (f32 or f64, same dtype and size).
[[maybe_unused]] void add_into(Tensor& dst, const Tensor& src) {
  SGPT_CHECK(dst.dtype() == src.dtype() && dst.numel() == src.numel(), "add_into: mismatched tensors");
  if (dst.dtype() == DType::F32) {
    float* d = dst.data<float>();
    const float* s = src.data<float>();
    for (int64_t i = 0; i < dst.numel(); ++i) d[i] += s[i];
  } else {
    SGPT_CHECK(dst.dtype() == DType::F64, "lesson 04 handles f32 and f64 tensors, not ", dtype_name(dst.dtype()));
    double* d = dst.data<double>();
    const double* s = src.data<double>();
    for (int64_t i = 0; i < dst.numel(); ++i) d[i] += s[i];
  }
}

// Given: t /= divisor, element by element (f32 or f64).
[[maybe_unused]] void divide_by(Tensor& t, double divisor) {
  if (t.dtype() == DType::F32) {
    float* d = t.data<float>();
    for (int64_t i = 0; i < t.numel(); ++i) d[i] = static_cast<float>(d[i] / divisor);
  } else {
    SGPT_CHECK(t.dtype() == DType::F64, "lesson 04 handles f32 and f64 tensors, not ", dtype_name(t.dtype()));
    double* d = t.data<double>();
    for (int64_t i = 0; i < t.numel(); ++i) d[i] /= divisor;
  }
}

// Given: the chunk index k mod p, always in [0, p).
[[maybe_unused]] int wrap(int k, int p) { return ((k % p) + p) % p; }

}  // namespace

void ring_reduce_scatter(Communicator& comm, Tensor& out, const Tensor& in) {
  // TODO(lesson 04, task 1): ring reduce-scatter (sum)
  // HINT: work on a copy of `in` (Tensor::empty + copy_from) and a receive buffer of the largest
  // HINT: chunk, shard_range(n, p, 0).count. Step s = 0 .. p-2: send chunk (r - s - 1) mod p to
  // HINT: next, receive chunk (r - s - 2) mod p from prev into the buffer, add it to your copy.
  // HINT: After the last step chunk r of the copy holds the full sum; copy it into `out`.
  const int p = comm.size(), r = comm.rank();
  const int64_t n = in.numel();
  SGPT_CHECK(out.dtype() == in.dtype() && out.numel() == shard_range(n, p, r).count,
             "ring_reduce_scatter: out must hold this rank's shard of in");
  Tensor work = Tensor::empty({n}, in.dtype());
  work.copy_from(in.reshape({n}));
  Tensor buf = Tensor::empty({shard_range(n, p, 0).count}, in.dtype());
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
  // HINT: copy `in` into chunk r of `out`, then at step s = 0 .. p-2 send chunk (r - s) mod p of
  // HINT: `out` to next and receive chunk (r - s - 1) mod p from prev straight into `out`.
  const int p = comm.size(), r = comm.rank();
  const int64_t n = out.numel();
  SGPT_CHECK(out.dtype() == in.dtype() && in.numel() == shard_range(n, p, r).count,
             "ring_all_gather: in must hold this rank's shard of out");
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
  // HINT: reduce-scatter into this rank's chunk of t itself, then all-gather it back; for Avg
  // HINT: divide by p (the given divide_by() does it).
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
