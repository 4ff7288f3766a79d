#pragma once
// Shared by the public and hidden tests of lesson 04: integer-valued inputs (sums are exact in any
// order), the expected results computed by hand in double, the ring's byte counts, and a helper
// that runs a check on in-process groups of several sizes and on the MPI world of the test run.

#include <gtest/gtest.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "collectives.hpp"
#include "comm/testing/mpi_test.hpp"

namespace lesson04_test {

using namespace sgpt;

// Element i of rank r's input: an integer in [-8, 8], so any sum over ranks is exact in f32.
inline double value(uint64_t seed, int r, int64_t i) {
  return double(int64_t((uint64_t(i) * 7 + uint64_t(r) * 13 + seed * 3 + (uint64_t(i) * uint64_t(i)) % 5) % 17) - 8);
}

// Rank r's input of n elements.
inline Tensor input(int64_t n, DType dt, uint64_t seed, int r) {
  std::vector<double> v(n);
  for (int64_t i = 0; i < n; ++i) v[i] = value(seed, r, i);
  return Tensor::from(v, {n}).cast(dt);
}

// The element-wise sum over p ranks, written out (not the library's all_reduce).
inline std::vector<double> expected_sum(int64_t n, int p, uint64_t seed) {
  std::vector<double> s(n, 0.0);
  for (int r = 0; r < p; ++r)
    for (int64_t i = 0; i < n; ++i) s[i] += value(seed, r, i);
  return s;
}

// Elements [begin, begin + count) of v.
inline std::vector<double> part(const std::vector<double>& v, ShardRange s) {
  return std::vector<double>(v.begin() + s.begin, v.begin() + s.begin + s.count);
}

// Shard sizes by the course's rule, written out: the first n % p ranks get one element more.
inline int64_t shard_count(int64_t n, int p, int r) { return n / p + (r < n % p ? 1 : 0); }

// Bytes rank r sends and receives in the ring (see collectives.hpp). Reduce-scatter: r sends every
// chunk but r (it keeps the full sum of r) and receives every chunk but r - 1 (its first send).
// All-gather: r sends every chunk but r + 1 (the last one it receives), receives every chunk but r.
inline int64_t rs_sent(int64_t n, int p, int r, int64_t es) { return (n - shard_count(n, p, r)) * es; }
inline int64_t rs_received(int64_t n, int p, int r, int64_t es) { return (n - shard_count(n, p, (r + p - 1) % p)) * es; }
inline int64_t ag_sent(int64_t n, int p, int r, int64_t es) { return (n - shard_count(n, p, (r + 1) % p)) * es; }
inline int64_t ag_received(int64_t n, int p, int r, int64_t es) { return (n - shard_count(n, p, r)) * es; }

// "" when equal, else the first difference.
inline std::string diff(const std::vector<double>& got, const std::vector<double>& want) {
  if (got.size() != want.size())
    return "size " + std::to_string(got.size()) + " != " + std::to_string(want.size());
  for (size_t i = 0; i < got.size(); ++i)
    if (got[i] != want[i])
      return "element " + std::to_string(i) + ": " + std::to_string(got[i]) + " != " + std::to_string(want[i]);
  return "";
}

// Runs fn on in-process groups (threads backend) of each size in `ranks`, then on the MPI world of
// this run (one rank when the grader runs the binary directly, N under `mpirun -np N`).
inline void on_groups(const std::vector<int>& ranks, const std::function<void(Communicator&)>& fn) {
  for (int p : ranks) {
    SCOPED_TRACE("threads group of " + std::to_string(p) + " ranks");
    run_threads(p, fn);
  }
  SCOPED_TRACE("MPI world of " + std::to_string(sgpt::testing::world().size()) + " ranks");
  fn(sgpt::testing::world());
}

// Label for failures: which group, rank, n and dtype.
inline std::string where(const Communicator& c, int64_t n, DType dt) {
  return std::string("[p=") + std::to_string(c.size()) + " rank " + std::to_string(c.rank()) + " n=" +
         std::to_string(n) + " " + dtype_name(dt) + "]";
}

// Counts of the p2p ops and that no library collective was used.
inline void expect_only_send_recv(const Communicator& c, int64_t calls, int64_t sent, int64_t received,
                                  const std::string& at) {
  const CommStats& st = c.stats();
  EXPECT_EQ(st[OpKind::Send].calls, calls) << at << " send calls";
  EXPECT_EQ(st[OpKind::Recv].calls, calls) << at << " recv calls";
  EXPECT_EQ(st[OpKind::Send].bytes, sent) << at << " bytes sent";
  EXPECT_EQ(st[OpKind::Recv].bytes, received) << at << " bytes received";
  for (OpKind k : {OpKind::AllReduce, OpKind::ReduceScatter, OpKind::AllGather, OpKind::Broadcast})
    EXPECT_EQ(st[k].calls, 0) << at << " used the library's " << op_name(k);
}

}  // namespace lesson04_test
