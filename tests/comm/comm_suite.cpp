#include "comm_suite.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "comm/trace_gather.hpp"
#include "core/half.hpp"
#include "core/trace.hpp"

namespace sgpt::commtest {

namespace {

const std::vector<DType> kTypes = {DType::F32, DType::F64, DType::I32};
// Counts that do not divide by 2, 3 or 4, smaller than the group, and one that is large.
const std::vector<int64_t> kCounts = {0, 1, 2, 3, 5, 7, 13, 1000};

// A tensor on the communicator's device holding `v` converted to `dt`.
Tensor make(const std::vector<double>& v, DType dt, Device dev) {
  Tensor t = Tensor::empty({static_cast<int64_t>(v.size())}, dt);
  for (std::size_t i = 0; i < v.size(); ++i) {
    switch (dt) {
      case DType::F32: t.data<float>()[i] = static_cast<float>(v[i]); break;
      case DType::F64: t.data<double>()[i] = v[i]; break;
      case DType::I32: t.data<int32_t>()[i] = static_cast<int32_t>(v[i]); break;
      default: break;
    }
  }
  return dev == Device::CPU ? t : t.to(dev);
}

std::string where(const Communicator& c, DType dt, int64_t n) {
  return str("group '", c.name(), "' rank ", c.rank(), "/", c.size(), " ", dtype_name(dt), " n=", n);
}

}  // namespace

void check_barrier(Communicator& c) {
  for (int i = 0; i < 3; ++i) c.barrier();
}

void check_broadcast(Communicator& c) {
  Device dev = c.preferred_device();
  for (DType dt : kTypes) {
    for (int64_t n : {int64_t{1}, int64_t{7}, int64_t{1000}}) {
      for (int root = 0; root < c.size(); ++root) {
        std::vector<double> want(n);
        for (int64_t i = 0; i < n; ++i) want[i] = static_cast<double>(i * 3 + root);
        Tensor t = c.rank() == root ? make(want, dt, dev) : make(std::vector<double>(n, -1.0), dt, dev);
        c.broadcast(t, root);
        EXPECT_EQ(t.to_vector(), want) << where(c, dt, n) << " root " << root;
      }
    }
  }
}

void check_all_reduce(Communicator& c) {
  Device dev = c.preferred_device();
  const int p = c.size();
  const double ranks_sum = p * (p + 1) / 2.0;  // sum over ranks of (rank + 1)
  for (DType dt : kTypes) {
    for (int64_t n : kCounts) {
      std::vector<double> mine(n), want(n);
      for (int64_t i = 0; i < n; ++i) {
        double k = static_cast<double>(i % 11) - 3;  // also negative values
        mine[i] = (c.rank() + 1) * k;
        want[i] = ranks_sum * k;
      }
      Tensor t = make(mine, dt, dev);
      c.all_reduce(t, ReduceOp::Sum);
      EXPECT_EQ(t.to_vector(), want) << where(c, dt, n) << " sum";
      if (dt == DType::I32) continue;
      // Avg: p * x summed then divided by p is exact.
      for (auto& x : mine) x *= p;
      Tensor a = make(mine, dt, dev);
      c.all_reduce(a, ReduceOp::Avg);
      EXPECT_EQ(a.to_vector(), want) << where(c, dt, n) << " avg";
    }
  }
  Tensor bad = make({1.0}, DType::I32, dev);
  EXPECT_THROW(c.all_reduce(bad, ReduceOp::Avg), Error);
}

void check_reduce_scatter(Communicator& c) {
  Device dev = c.preferred_device();
  const int p = c.size();
  const double ranks_sum = p * (p + 1) / 2.0;
  for (DType dt : kTypes) {
    for (int64_t n : kCounts) {
      std::vector<double> mine(n), full(n);
      for (int64_t i = 0; i < n; ++i) {
        mine[i] = (c.rank() + 1) * static_cast<double>(i % 13 + 1);
        full[i] = ranks_sum * static_cast<double>(i % 13 + 1);
      }
      ShardRange sh = shard_range(n, p, c.rank());
      std::vector<double> want(full.begin() + sh.begin, full.begin() + sh.begin + sh.count);
      // A separate output tensor.
      Tensor in = make(mine, dt, dev);
      Tensor out = make(std::vector<double>(sh.count, -1.0), dt, dev);
      c.reduce_scatter(out, in, ReduceOp::Sum);
      EXPECT_EQ(out.to_vector(), want) << where(c, dt, n) << " separate output";
      EXPECT_EQ(in.to_vector(), mine) << where(c, dt, n) << " input must be untouched";
      // In place: the output is the view of the input at this rank's shard (ZeRO's layout).
      Tensor buf = make(mine, dt, dev);
      Tensor view = buf.view(sh.begin, {sh.count});
      c.reduce_scatter(view, buf, ReduceOp::Sum);
      EXPECT_EQ(view.to_vector(), want) << where(c, dt, n) << " in place";
      if (dt == DType::I32) continue;
      for (auto& x : mine) x *= p;
      Tensor in2 = make(mine, dt, dev);
      Tensor out2 = Tensor::empty({sh.count}, dt, dev);
      c.reduce_scatter(out2, in2, ReduceOp::Avg);
      EXPECT_EQ(out2.to_vector(), want) << where(c, dt, n) << " avg";
    }
  }
}

void check_all_gather(Communicator& c) {
  Device dev = c.preferred_device();
  const int p = c.size();
  for (DType dt : kTypes) {
    for (int64_t n : kCounts) {
      std::vector<double> want(n);
      for (int64_t i = 0; i < n; ++i) want[i] = static_cast<double>(2 * i + 1);
      ShardRange sh = shard_range(n, p, c.rank());
      std::vector<double> mine(want.begin() + sh.begin, want.begin() + sh.begin + sh.count);
      Tensor in = make(mine, dt, dev);
      Tensor out = make(std::vector<double>(n, -1.0), dt, dev);
      c.all_gather(out, in);
      EXPECT_EQ(out.to_vector(), want) << where(c, dt, n) << " separate input";
      // In place: the input is the view of the output at this rank's shard.
      std::vector<double> start(n, -1.0);
      std::copy(mine.begin(), mine.end(), start.begin() + sh.begin);
      Tensor buf = make(start, dt, dev);
      Tensor view = buf.view(sh.begin, {sh.count});
      c.all_gather(buf, view);
      EXPECT_EQ(buf.to_vector(), want) << where(c, dt, n) << " in place";
    }
  }
}

void check_send_recv(Communicator& c) {
  Device dev = c.preferred_device();
  const int p = c.size(), r = c.rank();
  const int next = (r + 1) % p, prev = (r + p - 1) % p;
  for (DType dt : kTypes) {
    for (int64_t n : {int64_t{1}, int64_t{6}, int64_t{1000}}) {
      // A ring shift: every rank sends to the next and receives from the previous.
      std::vector<double> mine(n), want(n);
      for (int64_t i = 0; i < n; ++i) {
        mine[i] = static_cast<double>(100 * r + i % 50);
        want[i] = static_cast<double>(100 * prev + i % 50);
      }
      Tensor s = make(mine, dt, dev);
      Tensor got = make(std::vector<double>(n, -1.0), dt, dev);
      c.send_recv(s, next, got, prev);
      EXPECT_EQ(got.to_vector(), want) << where(c, dt, n) << " send_recv";
      if (c.backend() == Backend::NCCL) continue;  // lone sends need their receive posted (see docs)
      Tensor got2 = make(std::vector<double>(n, -1.0), dt, dev);
      Work w = c.send_async(s, next, 3);
      c.recv(got2, prev, 3);
      w.wait();
      EXPECT_EQ(got2.to_vector(), want) << where(c, dt, n);
    }
  }
  if (c.backend() == Backend::NCCL) return;  // no tags on NCCL
  // Tags: two messages received in the opposite order to the one they were sent in.
  Tensor a = make({1.0 + r}, DType::F32, dev), b = make({10.0 + r, 20.0 + r}, DType::F32, dev);
  Work wa = c.send_async(a, next, 1);
  Work wb = c.send_async(b, next, 2);
  Tensor gb = Tensor::empty({2}, DType::F32, dev), ga = Tensor::empty({1}, DType::F32, dev);
  c.recv(gb, prev, 2);
  c.recv(ga, prev, 1);
  wa.wait();
  wb.wait();
  EXPECT_EQ(ga.to_vector(), std::vector<double>({1.0 + prev}));
  EXPECT_EQ(gb.to_vector(), std::vector<double>({10.0 + prev, 20.0 + prev}));
  // Two messages on the same tag arrive in order.
  Tensor m1 = make({5.0}, DType::I32, dev), m2 = make({6.0}, DType::I32, dev);
  Work w1 = c.send_async(m1, next, 4);
  Work w2 = c.send_async(m2, next, 4);
  Tensor g1 = Tensor::empty({1}, DType::I32, dev), g2 = Tensor::empty({1}, DType::I32, dev);
  Work r1 = c.recv_async(g1, prev, 4);
  Work r2 = c.recv_async(g2, prev, 4);
  r2.wait();
  r1.wait();
  w1.wait();
  w2.wait();
  EXPECT_EQ(g1.to_vector()[0], 5.0);
  EXPECT_EQ(g2.to_vector()[0], 6.0);
}

void check_split(Communicator& c) {
  Device dev = c.preferred_device();
  const int p = c.size(), r = c.rank();
  // Parity groups, ordered by descending old rank (key = -rank).
  auto sub = c.split(r % 2, -r, "parity");
  ASSERT_NE(sub, nullptr);
  std::vector<int> members;
  for (int q = p - 1; q >= 0; --q)
    if (q % 2 == r % 2) members.push_back(q);
  EXPECT_EQ(sub->size(), static_cast<int>(members.size()));
  EXPECT_EQ(members[sub->rank()], r);
  EXPECT_EQ(sub->name(), "parity");
  double want = 0;
  for (int q : members) want += q;
  Tensor t = make({static_cast<double>(r), 1.0}, DType::F32, dev);
  sub->all_reduce(t);
  EXPECT_EQ(t.to_vector(), std::vector<double>({want, static_cast<double>(members.size())}));
  // Uneven shards inside the sub-group.
  Tensor full = make(std::vector<double>(5, 1.0), DType::F64, dev);
  ShardRange sh = shard_range(5, sub->size(), sub->rank());
  Tensor part = Tensor::empty({sh.count}, DType::F64, dev);
  sub->reduce_scatter(part, full);
  EXPECT_EQ(part.to_vector(), std::vector<double>(sh.count, static_cast<double>(sub->size())));

  // A 2-D grid as in 3D parallelism: rows of width 2 ("tp") and columns ("dp"), then a nested split.
  auto row = c.split(r / 2, r, "tp");
  auto col = c.split(r % 2, r, "dp");
  ASSERT_TRUE(row && col);
  EXPECT_EQ(row->rank(), r % 2);
  EXPECT_EQ(col->rank(), r / 2);
  Tensor x = make({1.0}, DType::I32, dev);
  row->all_reduce(x);
  col->all_reduce(x);
  double want_x = 0;  // the sizes of the rows of my column's members
  for (int q = r % 2; q < p; q += 2) want_x += std::min(2, p - 2 * (q / 2));
  EXPECT_EQ(x.to_vector()[0], want_x);
  auto single = row->split(row->rank(), 0);
  ASSERT_NE(single, nullptr);
  EXPECT_EQ(single->size(), 1);

  // A negative color leaves the rank out.
  auto others = c.split(r == 0 ? -1 : 0, r, "others");
  if (r == 0) {
    EXPECT_EQ(others, nullptr);
  } else {
    ASSERT_NE(others, nullptr);
    EXPECT_EQ(others->size(), p - 1);
    EXPECT_EQ(others->rank(), r - 1);
    Tensor y = make({1.0}, DType::F32, dev);
    others->all_reduce(y);
    EXPECT_EQ(y.to_vector()[0], static_cast<double>(p - 1));
  }
  c.barrier();
}

void check_async(Communicator& c) {
  Device dev = c.preferred_device();
  const int p = c.size(), r = c.rank();
  const int64_t n = 20000;
  std::vector<double> mine(n), full(n);
  for (int64_t i = 0; i < n; ++i) {
    mine[i] = (r + 1) * static_cast<double>(i % 7);
    full[i] = p * (p + 1) / 2.0 * static_cast<double>(i % 7);
  }
  Tensor a = make(mine, DType::F32, dev), b = make(mine, DType::F32, dev), g_in, g_out;
  ShardRange sh = shard_range(n, p, r);
  Tensor rs = Tensor::empty({sh.count}, DType::F32, dev);
  Tensor src = make(mine, DType::F64, dev);
  g_out = Tensor::zeros({n}, DType::F64, dev);
  g_in = make(std::vector<double>(full.begin() + sh.begin, full.begin() + sh.begin + sh.count), DType::F64, dev);

  // Several operations in flight at once, overlapped with local work, completed out of order.
  Work w1 = c.all_reduce_async(a);
  Work w2 = c.reduce_scatter_async(rs, b);
  Work w3 = c.all_gather_async(g_out, g_in);
  Tensor bc = make(std::vector<double>(3, r == p - 1 ? 42.0 : 0.0), DType::I32, dev);
  Work w4 = c.broadcast_async(bc, p - 1);
  double work = 0;
  int polls = 0;
  while (!w1.test()) {  // compute while the first one progresses
    for (int i = 0; i < 1000; ++i) work += i * 1e-9;
    ++polls;
  }
  EXPECT_GE(work, 0.0);
  w4.wait();
  w3.wait();
  w2.wait();
  w1.wait();  // idempotent
  EXPECT_TRUE(w2.test());
  EXPECT_EQ(a.to_vector(), full);
  EXPECT_EQ(rs.to_vector(), std::vector<double>(full.begin() + sh.begin, full.begin() + sh.begin + sh.count));
  EXPECT_EQ(g_out.to_vector(), full);
  EXPECT_EQ(bc.to_vector(), std::vector<double>(3, 42.0));
  (void)src;
  // A default Work is complete.
  Work none;
  EXPECT_TRUE(none.test());
  none.wait();
}

void check_accounting(Communicator& c) {
  Device dev = c.preferred_device();
  const int p = c.size(), r = c.rank();
  c.reset_stats();
  EXPECT_EQ(c.stats().total(), OpStats{});
  Tensor f10 = Tensor::zeros({10}, DType::F32, dev);
  Tensor d3 = Tensor::zeros({3}, DType::F64, dev);
  c.all_reduce(f10);
  c.all_reduce_async(f10).wait();
  c.broadcast(d3, 0);
  Tensor shard = Tensor::empty({shard_range(10, p, r).count}, DType::F32, dev);
  c.reduce_scatter(shard, f10);
  c.all_gather(f10, shard);
  c.barrier();
  Tensor i5 = Tensor::zeros({5}, DType::I32, dev), j5 = Tensor::empty({5}, DType::I32, dev);
  if (c.backend() == Backend::NCCL && p == 1) {
    c.send_recv(i5, 0, j5, 0);  // NCCL cannot pair a lone send and recv on one rank
  } else {
    Work w = c.send_async(i5, (r + 1) % p);
    c.recv(j5, (r + p - 1) % p);
    w.wait();
  }
  c.send_recv(i5, (r + 1) % p, j5, (r + p - 1) % p);
  const CommStats& s = c.stats();
  EXPECT_EQ(s[OpKind::AllReduce], (OpStats{2, 80}));
  EXPECT_EQ(s[OpKind::Broadcast], (OpStats{1, 24}));
  EXPECT_EQ(s[OpKind::ReduceScatter], (OpStats{1, 40}));
  EXPECT_EQ(s[OpKind::AllGather], (OpStats{1, 40}));
  EXPECT_EQ(s[OpKind::Barrier], (OpStats{1, 0}));
  EXPECT_EQ(s[OpKind::Send], (OpStats{2, 40}));
  EXPECT_EQ(s[OpKind::Recv], (OpStats{2, 40}));
  EXPECT_EQ(s.total(), (OpStats{10, 264}));
  // A sub-group counts its own calls only.
  auto sub = c.split(0, r, "sub");
  EXPECT_EQ(c.stats()[OpKind::Split].calls, 1);
  sub->all_reduce(f10);
  EXPECT_EQ(sub->stats()[OpKind::AllReduce], (OpStats{1, 40}));
  EXPECT_EQ(c.stats()[OpKind::AllReduce], (OpStats{2, 80}));
  c.reset_stats();
  EXPECT_EQ(c.stats().total(), OpStats{});
  EXPECT_NE(sub->stats().report().find("all_reduce: 1 calls, 40 bytes"), std::string::npos);
  // bus_bytes: the ring factors.
  EXPECT_DOUBLE_EQ(bus_bytes(OpKind::AllReduce, 400, 4), 600);
  EXPECT_DOUBLE_EQ(bus_bytes(OpKind::ReduceScatter, 400, 4), 300);
  EXPECT_DOUBLE_EQ(bus_bytes(OpKind::AllGather, 400, 4), 300);
}

void check_mismatch(Communicator& c) {
  Device dev = c.preferred_device();
  const int p = c.size(), r = c.rank();
  // Ranks outside the group: detected locally, before anything is exchanged.
  Tensor t = make({1.0, 2.0}, DType::F32, dev);
  EXPECT_THROW(c.send(t, p), Error);
  EXPECT_THROW(c.send(t, -1), Error);
  EXPECT_THROW(c.recv(t, p + 3), Error);
  // Every rank passes the same bad root: the call check agrees, then every rank throws.
  EXPECT_THROW(c.broadcast(t, p), Error);
  if (p == 1 || !c.call_checks()) return;
  // Different counts on different ranks: every rank gets an Error naming the mismatch.
  Tensor u = make(std::vector<double>(3 + r, 1.0), DType::F32, dev);
  try {
    c.all_reduce(u);
    ADD_FAILURE() << "mismatched all_reduce did not throw on rank " << r;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("mismatched collective calls"), std::string::npos) << e.what();
  }
  // Different operations on different ranks.
  Tensor v = make({1.0}, DType::F32, dev);
  if (r == 0) {
    EXPECT_THROW(c.broadcast(v, 0), Error);
  } else {
    EXPECT_THROW(c.all_reduce(v), Error);
  }
  // A wrong shard size on one rank only.
  Tensor full = make(std::vector<double>(7, 1.0), DType::F32, dev);
  int64_t want = shard_range(7, p, r).count;
  Tensor out = Tensor::empty({r == p - 1 ? want + 1 : want}, DType::F32, dev);
  EXPECT_THROW(c.reduce_scatter(out, full), Error);
  // The group still works afterwards: nothing was left half-done.
  Tensor w = make({1.0}, DType::F32, dev);
  c.all_reduce(w);
  EXPECT_EQ(w.to_vector()[0], static_cast<double>(p));
}

void check_trace(Communicator& c) {
  Device dev = c.preferred_device();
  TraceRecorder& rec = TraceRecorder::current();
  bool was = rec.enabled();
  rec.set_enabled(true);
  rec.clear();
  align_trace_clocks(c, rec);
  {
    TraceScope s("forward", TraceCategory::Compute, {{"microbatch", "2"}});
  }
  Tensor t = Tensor::zeros({16}, DType::F32, dev);
  c.all_reduce(t);
  c.all_reduce_async(t).wait();
  auto local = rec.events();
  // barrier (from align, before the clock reset it is recorded too), forward, all_reduce, async.
  ASSERT_GE(local.size(), 3u);
  auto fw = rec.events_named("forward");
  ASSERT_EQ(fw.size(), 1u);
  EXPECT_EQ(fw[0].category, TraceCategory::Compute);
  EXPECT_EQ(fw[0].arg_int("microbatch"), 2);
  EXPECT_EQ(fw[0].rank, rec.rank());
  auto ar = rec.events_named("all_reduce");
  ASSERT_EQ(ar.size(), 1u);
  EXPECT_EQ(ar[0].category, TraceCategory::Comm);
  EXPECT_EQ(ar[0].arg_int("bytes"), 64);
  EXPECT_EQ(ar[0].args.at("group"), c.name());
  EXPECT_GE(ar[0].start_us, fw[0].start_us + fw[0].duration_us);
  auto as = rec.events_named("all_reduce_async");
  ASSERT_EQ(as.size(), 1u);
  EXPECT_EQ(as[0].track, 1);

  // Gather to rank 0 and read the JSON back.
  auto all = gather_trace(c, rec, 0);
  if (c.rank() == 0) {
    std::vector<int> forwards(c.size(), 0);
    for (const auto& e : all)
      if (e.name == "forward") forwards.at(e.rank) += 1;
    EXPECT_EQ(forwards, std::vector<int>(c.size(), 1));
    std::string json = trace_to_json(all);
    auto back = trace_from_json(json);
    ASSERT_EQ(back.size(), all.size());
    for (std::size_t i = 0; i < all.size(); ++i) {
      EXPECT_EQ(back[i].name, all[i].name);
      EXPECT_EQ(back[i].rank, all[i].rank);
      EXPECT_EQ(back[i].category, all[i].category);
      EXPECT_EQ(back[i].args, all[i].args);
    }
    EXPECT_NE(json.find("\"ph\":\"X\""), std::string::npos);
    EXPECT_NE(json.find("\"traceEvents\""), std::string::npos);
  } else {
    EXPECT_TRUE(all.empty());
  }
  rec.clear();
  rec.set_enabled(was);
  c.barrier();
}

}  // namespace sgpt::commtest

namespace sgpt::commtest {

namespace {

// bf16 values with full 8-bit significands and mixed signs and magnitudes (2^-2 .. 2^2), different
// on every rank, so that sums of them round: rank r's element i. Returned as the exact doubles.
std::vector<double> bf16_values(int64_t n, int r) {
  std::vector<double> v(static_cast<std::size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const double x = std::sin(1.37 * double(i) + 0.71 * double(r) + 0.3) * std::ldexp(1.0, int(i % 5) - 2);
    v[static_cast<std::size_t>(i)] = bf16_to_f32(f32_to_bf16(static_cast<float>(x)));
  }
  return v;
}

Tensor bf16_tensor(const std::vector<double>& v, Device dev) {
  return Tensor::from(v, {static_cast<int64_t>(v.size())}).cast(DType::BF16).to(dev);
}

// One combine of a bf16 reduction: the f32 sum of two bf16 values, rounded to nearest even.
double bf16_add(double a, double b) {
  return bf16_to_f32(f32_to_bf16(static_cast<float>(a) + static_cast<float>(b)));
}

// The bound of a bf16 sum over p ranks against the exact (f64) sum: p - 1 combines, each rounding
// its partial sum (at most the sum of magnitudes) by at most half an ulp: u = 2^-8 relative (8 significant bits).
double bf16_sum_bound(double abs_sum, int p) { return (p - 1) * std::ldexp(1.0, -8) * abs_sum; }

// Checks `got` (bf16, this rank's shard [begin, begin + count) of the reduction) against the f64
// sum of every rank's bf16_values: exact at p = 1, the single rounded combine at p = 2, within
// bf16_sum_bound otherwise; Avg divides and rounds once more. Reports at most 5 elements.
void expect_bf16_reduced(Communicator& c, const Tensor& got, int64_t n, ShardRange sh, ReduceOp op,
                         const std::string& at) {
  const int p = c.size();
  std::vector<std::vector<double>> all;
  for (int r = 0; r < p; ++r) all.push_back(bf16_values(n, r));
  const std::vector<double> g = got.to_vector();
  ASSERT_EQ(static_cast<int64_t>(g.size()), sh.count) << at;
  int bad = 0;
  for (int64_t j = 0; j < sh.count && bad < 5; ++j) {
    const auto i = static_cast<std::size_t>(sh.begin + j);
    double exact = 0, mag = 0;
    for (int r = 0; r < p; ++r) exact += all[static_cast<std::size_t>(r)][i], mag += std::abs(all[static_cast<std::size_t>(r)][i]);
    double want = exact, tol = bf16_sum_bound(mag, p);
    if (p == 2) want = bf16_add(all[0][i], all[1][i]), tol = 0;  // one combine: exactly one rounding
    if (op == ReduceOp::Avg) {
      want /= p;
      tol = tol / p + std::ldexp(1.0, -8) * (std::abs(want) + tol / p);  // the division rounds once more
      if (p <= 2) want = bf16_to_f32(f32_to_bf16(static_cast<float>(want))), tol = 0;  // exact divisions
    }
    const double err = std::abs(g[static_cast<std::size_t>(j)] - want);
    if (err > tol) {
      ++bad;
      ADD_FAILURE() << at << " element " << i << ": got " << g[static_cast<std::size_t>(j)] << ", want " << want
                    << " within " << tol << " (exact f64 sum " << exact << ")";
    }
  }
}

}  // namespace

// bf16 collectives (ZeRO's 16-bit parameters and gradients): moved exactly, reduced in f32 with one
// rounding per combine (see communicator.hpp), counted at 2 bytes per element, in place and async
// too, with counts that do not divide by the group size. An f16 tensor is still a clear error.
void check_bf16(Communicator& c) {
  const Device dev = c.preferred_device();
  const int p = c.size(), r = c.rank();
  for (int64_t n : kCounts) {
    const std::string at = where(c, DType::BF16, n);
    const std::vector<double> mine = bf16_values(n, r);
    const ShardRange sh = shard_range(n, p, r);
    for (ReduceOp op : {ReduceOp::Sum, ReduceOp::Avg}) {
      const std::string ato = at + " " + reduce_op_name(op);
      c.reset_stats();
      Tensor t = bf16_tensor(mine, dev);
      c.all_reduce(t, op);
      expect_bf16_reduced(c, t, n, ShardRange{0, n}, op, ato + " all_reduce");
      // Every rank holds the same bits (compared with rank 0's, moved exactly by a broadcast).
      Tensor r0 = t.to(dev);
      c.broadcast(r0, 0);
      EXPECT_EQ(r0.to_vector(), t.to_vector()) << ato << " all_reduce: ranks disagree";
      // reduce_scatter into a separate output and in place (the output a view of the input).
      Tensor in = bf16_tensor(mine, dev), out = Tensor::empty({sh.count}, DType::BF16, dev);
      c.reduce_scatter(out, in, op);
      expect_bf16_reduced(c, out, n, sh, op, ato + " reduce_scatter");
      EXPECT_EQ(in.to_vector(), mine) << ato << " reduce_scatter: the input must be untouched";
      Tensor buf = bf16_tensor(mine, dev);
      Tensor view = buf.view(sh.begin, {sh.count});
      c.reduce_scatter(view, buf, op);
      EXPECT_EQ(view.to_vector(), out.to_vector()) << ato << " reduce_scatter in place";
      // The payload: numel x 2 bytes per call.
      EXPECT_EQ(c.stats()[OpKind::AllReduce], (OpStats{1, 2 * n})) << ato;
      EXPECT_EQ(c.stats()[OpKind::ReduceScatter], (OpStats{2, 4 * n})) << ato;
    }
    // all_gather moves bits: exact, from a separate input and in place.
    std::vector<double> full;
    for (int q = 0; q < p; ++q) {
      const std::vector<double> v = bf16_values(n, q);
      const ShardRange s = shard_range(n, p, q);
      full.insert(full.end(), v.begin() + s.begin, v.begin() + s.begin + s.count);
    }
    c.reset_stats();
    Tensor g = Tensor::zeros({n}, DType::BF16, dev);
    const Tensor part = bf16_tensor(std::vector<double>(mine.begin() + sh.begin, mine.begin() + sh.begin + sh.count), dev);
    c.all_gather(g, part);
    EXPECT_EQ(g.to_vector(), full) << at << " all_gather";
    Tensor g2 = bf16_tensor(mine, dev);
    Tensor own = g2.view(sh.begin, {sh.count});
    c.all_gather(g2, own);
    EXPECT_EQ(g2.to_vector(), full) << at << " all_gather in place";
    EXPECT_EQ(c.stats()[OpKind::AllGather], (OpStats{2, 4 * n})) << at;
  }
  // The async forms, several in flight.
  const int64_t n = 1001;
  const std::vector<double> mine = bf16_values(n, r);
  const ShardRange sh = shard_range(n, p, r);
  Tensor a = bf16_tensor(mine, dev), b = bf16_tensor(mine, dev), rs = Tensor::empty({sh.count}, DType::BF16, dev);
  Tensor gathered = Tensor::empty({n}, DType::BF16, dev), t_sync = bf16_tensor(mine, dev);
  Tensor g_sync = Tensor::empty({n}, DType::BF16, dev);
  const Tensor part = b.view(sh.begin, {sh.count}).to(dev);
  c.reset_stats();
  Work w1 = c.all_reduce_async(a, ReduceOp::Sum);
  Work w2 = c.reduce_scatter_async(rs, b, ReduceOp::Sum);
  Work w3 = c.all_gather_async(gathered, part);
  w3.wait();
  w2.wait();
  w1.wait();
  c.all_reduce(t_sync, ReduceOp::Sum);
  c.all_gather(g_sync, part);
  EXPECT_EQ(a.to_vector(), t_sync.to_vector()) << where(c, DType::BF16, n) << " async all_reduce = blocking one";
  EXPECT_EQ(gathered.to_vector(), g_sync.to_vector()) << where(c, DType::BF16, n) << " async all_gather";
  expect_bf16_reduced(c, rs, n, sh, ReduceOp::Sum, where(c, DType::BF16, n) + " async reduce_scatter");
  EXPECT_EQ(c.stats()[OpKind::AllReduce], (OpStats{2, 4 * n}));
  EXPECT_EQ(c.stats()[OpKind::ReduceScatter], (OpStats{1, 2 * n}));
  EXPECT_EQ(c.stats()[OpKind::AllGather], (OpStats{2, 4 * n}));
  // fp16 has no reduction here: a clear error naming the dtype, on every rank.
  Tensor h = Tensor::zeros({3}, DType::F16, dev);
  try {
    c.all_reduce(h);
    ADD_FAILURE() << where(c, DType::F16, 3) << " an f16 all_reduce must be an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("has dtype f16"), std::string::npos) << e.what();
  }
  c.reset_stats();
}

}  // namespace sgpt::commtest
