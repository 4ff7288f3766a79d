// Lesson 04 hidden tests: other counts, dtypes and seeds, 5 and 6 ranks, and a sub-group made by
// split() (its ranks are not the world's, and only its own counters move).

#include <gtest/gtest.h>

#include "tests/test_util.hpp"

using namespace sgpt;
using namespace sgpt::lesson04;
using namespace lesson04_test;

namespace {
const std::vector<int> kRanks = {2, 3, 5, 6};
const std::vector<int64_t> kCounts = {4, 6, 11, 17, 29, 997, 4096};
}  // namespace

TEST(HiddenRingReduceScatter, OtherSizesF64Seed) {
  on_groups(kRanks, [](Communicator& c) {
    const int p = c.size(), r = c.rank();
    for (int64_t n : kCounts) {
      Tensor in = input(n, DType::F64, 41, r);
      Tensor out = Tensor::zeros({shard_count(n, p, r)}, DType::F64);
      c.reset_stats();
      ring_reduce_scatter(c, out, in);
      expect_only_send_recv(c, p - 1, rs_sent(n, p, r, 8), rs_received(n, p, r, 8), where(c, n, DType::F64));
      EXPECT_EQ(diff(out.to_vector(), part(expected_sum(n, p, 41), shard_range(n, p, r))), "") << where(c, n, DType::F64);
    }
  });
}

TEST(HiddenRingAllGather, OtherSizesF32Seed) {
  on_groups(kRanks, [](Communicator& c) {
    const int p = c.size(), r = c.rank();
    for (int64_t n : kCounts) {
      const std::vector<double> full = expected_sum(n, 2, 43);
      Tensor in = Tensor::from(part(full, shard_range(n, p, r)), {shard_count(n, p, r)}).cast(DType::F32);
      Tensor out = Tensor::zeros({n}, DType::F32);
      c.reset_stats();
      ring_all_gather(c, out, in);
      expect_only_send_recv(c, p - 1, ag_sent(n, p, r, 4), ag_received(n, p, r, 4), where(c, n, DType::F32));
      EXPECT_EQ(diff(out.to_vector(), full), "") << where(c, n, DType::F32);
    }
  });
}

TEST(HiddenRingAllReduce, FiveAndSixRanksSumAndAvg) {
  on_groups(kRanks, [](Communicator& c) {
    const int p = c.size(), r = c.rank();
    for (int64_t n : kCounts) {
      Tensor t = input(n, DType::F32, 47, r);
      c.reset_stats();
      ring_all_reduce(c, t);
      expect_only_send_recv(c, 2 * (p - 1), rs_sent(n, p, r, 4) + ag_sent(n, p, r, 4),
                            rs_received(n, p, r, 4) + ag_received(n, p, r, 4), where(c, n, DType::F32));
      EXPECT_EQ(diff(t.to_vector(), expected_sum(n, p, 47)), "") << where(c, n, DType::F32);
      Tensor a = input(n, DType::F64, 53, r);
      double* d = a.data<double>();
      for (int64_t i = 0; i < n; ++i) d[i] *= p;
      ring_all_reduce(c, a, ReduceOp::Avg);
      EXPECT_EQ(diff(a.to_vector(), expected_sum(n, p, 53)), "") << where(c, n, DType::F64);
    }
  });
}

TEST(HiddenRingAllReduce, SubGroupFromSplit) {
  // 7 ranks split by parity, ordered backwards: groups {6,4,2,0} and {5,3,1}. Each group sums its
  // own members' inputs; the parent's counters do not move.
  run_threads(7, [](Communicator& world) {
    const int wr = world.rank();
    auto sub = world.split(wr % 2, -wr, "parity");
    ASSERT_NE(sub, nullptr);
    const int p = sub->size(), r = sub->rank();
    EXPECT_EQ(p, wr % 2 == 0 ? 4 : 3);
    for (int64_t n : {int64_t(2), int64_t(10), int64_t(301)}) {
      Tensor t = input(n, DType::F32, 59, r);
      world.reset_stats();
      sub->reset_stats();
      ring_all_reduce(*sub, t);
      expect_only_send_recv(*sub, 2 * (p - 1), rs_sent(n, p, r, 4) + ag_sent(n, p, r, 4),
                            rs_received(n, p, r, 4) + ag_received(n, p, r, 4), where(*sub, n, DType::F32));
      EXPECT_EQ(world.stats().total().calls, 0) << "the ring ran on the parent group";
      EXPECT_EQ(diff(t.to_vector(), expected_sum(n, p, 59)), "") << where(*sub, n, DType::F32);
    }
  });
}
