// Lesson 04 public tests: the ring collectives give exact results at every rank count (1, 2, 3 and
// 4 in-process ranks, then the MPI world of the run) and for counts that p does not divide
// (n < p and n = 0 included); they agree with the library's collectives; and each rank sends
// exactly the ring's bytes in exactly p - 1 (or 2(p - 1)) send_recv calls, using no library
// collective. Inputs are integer-valued, so every sum is exact whatever the order of additions.

#include <gtest/gtest.h>

#include "test_util.hpp"

using namespace sgpt;
using namespace sgpt::lesson04;
using namespace lesson04_test;

namespace {
const std::vector<int> kRanks = {1, 2, 3, 4};
// Counts that 2, 3 and 4 do not divide, fewer elements than ranks, none at all, and larger ones.
const std::vector<int64_t> kCounts = {0, 1, 2, 3, 5, 7, 12, 13, 1000, 1021};
}  // namespace

// ---- given: the sharding rule (not graded) ------------------------------------------------------------

TEST(ShardRange, FirstRanksGetOneMore) {
  EXPECT_EQ(shard_range(10, 4, 0), (ShardRange{0, 3}));
  EXPECT_EQ(shard_range(10, 4, 1), (ShardRange{3, 3}));
  EXPECT_EQ(shard_range(10, 4, 2), (ShardRange{6, 2}));
  EXPECT_EQ(shard_range(10, 4, 3), (ShardRange{8, 2}));
  EXPECT_EQ(shard_range(2, 3, 2), (ShardRange{2, 0}));
  for (int64_t n : kCounts)
    for (int p : kRanks)
      for (int r = 0; r < p; ++r) EXPECT_EQ(shard_range(n, p, r).count, shard_count(n, p, r));
}

// ---- task 1: reduce-scatter ------------------------------------------------------------------------

TEST(RingReduceScatter, ExactSumAnyRankCount) {
  on_groups(kRanks, [](Communicator& c) {
    const int p = c.size(), r = c.rank();
    for (int64_t n : kCounts) {
      Tensor in = input(n, DType::F32, 1, r);
      Tensor out = Tensor::zeros({shard_count(n, p, r)}, DType::F32);
      ring_reduce_scatter(c, out, in);
      EXPECT_EQ(diff(out.to_vector(), part(expected_sum(n, p, 1), shard_range(n, p, r))), "") << where(c, n, DType::F32);
      EXPECT_EQ(diff(in.to_vector(), input(n, DType::F32, 1, r).to_vector()), "") << where(c, n, DType::F32)
                                                                                   << " the input was modified";
    }
  });
}

TEST(RingReduceScatter, MatchesLibraryReduceScatter) {
  on_groups(kRanks, [](Communicator& c) {
    const int p = c.size(), r = c.rank();
    for (int64_t n : {int64_t(3), int64_t(1021)}) {
      Tensor in = input(n, DType::F64, 2, r);
      Tensor mine = Tensor::zeros({shard_count(n, p, r)}, DType::F64);
      Tensor lib = Tensor::zeros({shard_count(n, p, r)}, DType::F64);
      ring_reduce_scatter(c, mine, in);
      c.reduce_scatter(lib, in);
      EXPECT_EQ(diff(mine.to_vector(), lib.to_vector()), "") << where(c, n, DType::F64);
    }
  });
}

TEST(RingReduceScatter, SendsExactlyTheRingBytes) {
  on_groups(kRanks, [](Communicator& c) {
    const int p = c.size(), r = c.rank();
    for (int64_t n : kCounts) {
      Tensor in = input(n, DType::F32, 3, r);
      Tensor out = Tensor::zeros({shard_count(n, p, r)}, DType::F32);
      c.reset_stats();
      ring_reduce_scatter(c, out, in);
      expect_only_send_recv(c, p - 1, rs_sent(n, p, r, 4), rs_received(n, p, r, 4), where(c, n, DType::F32));
    }
  });
}

// ---- task 2: all-gather ----------------------------------------------------------------------------

TEST(RingAllGather, ExactAnyRankCount) {
  on_groups(kRanks, [](Communicator& c) {
    const int p = c.size(), r = c.rank();
    for (int64_t n : kCounts) {
      // Rank k holds elements shard_range(n, p, k) of one known vector.
      const std::vector<double> full = expected_sum(n, 1, 4);
      Tensor in = Tensor::from(part(full, shard_range(n, p, r)), {shard_count(n, p, r)}).cast(DType::F32);
      Tensor out = Tensor::zeros({n}, DType::F32);
      ring_all_gather(c, out, in);
      EXPECT_EQ(diff(out.to_vector(), full), "") << where(c, n, DType::F32);
    }
  });
}

TEST(RingAllGather, MatchesLibraryAllGather) {
  on_groups(kRanks, [](Communicator& c) {
    const int p = c.size(), r = c.rank();
    for (int64_t n : {int64_t(2), int64_t(1021)}) {
      Tensor in = input(shard_count(n, p, r), DType::F64, 5, r);
      Tensor mine = Tensor::zeros({n}, DType::F64), lib = Tensor::zeros({n}, DType::F64);
      ring_all_gather(c, mine, in);
      c.all_gather(lib, in);
      EXPECT_EQ(diff(mine.to_vector(), lib.to_vector()), "") << where(c, n, DType::F64);
    }
  });
}

TEST(RingAllGather, SendsExactlyTheRingBytes) {
  on_groups(kRanks, [](Communicator& c) {
    const int p = c.size(), r = c.rank();
    for (int64_t n : kCounts) {
      Tensor in = input(shard_count(n, p, r), DType::F64, 6, r);
      Tensor out = Tensor::zeros({n}, DType::F64);
      c.reset_stats();
      ring_all_gather(c, out, in);
      expect_only_send_recv(c, p - 1, ag_sent(n, p, r, 8), ag_received(n, p, r, 8), where(c, n, DType::F64));
    }
  });
}

// ---- task 3: all-reduce ----------------------------------------------------------------------------

TEST(RingAllReduce, ExactSumAnyRankCount) {
  on_groups(kRanks, [](Communicator& c) {
    const int p = c.size(), r = c.rank();
    for (DType dt : {DType::F32, DType::F64}) {
      for (int64_t n : kCounts) {
        Tensor t = input(n, dt, 7, r);
        ring_all_reduce(c, t);
        EXPECT_EQ(diff(t.to_vector(), expected_sum(n, p, 7)), "") << where(c, n, dt);
      }
    }
  });
}

TEST(RingAllReduce, AverageDividesByP) {
  on_groups(kRanks, [](Communicator& c) {
    const int p = c.size(), r = c.rank();
    for (int64_t n : kCounts) {
      // p times an integer on every rank: the average is that integer summed over ranks, exactly.
      Tensor t = input(n, DType::F64, 8, r);
      double* d = t.data<double>();
      for (int64_t i = 0; i < n; ++i) d[i] *= p;
      ring_all_reduce(c, t, ReduceOp::Avg);
      EXPECT_EQ(diff(t.to_vector(), expected_sum(n, p, 8)), "") << where(c, n, DType::F64);
    }
  });
}

TEST(RingAllReduce, MatchesLibraryAllReduce) {
  on_groups(kRanks, [](Communicator& c) {
    for (int64_t n : {int64_t(1), int64_t(4099)}) {
      Tensor mine = input(n, DType::F32, 9, c.rank()), lib = input(n, DType::F32, 9, c.rank());
      ring_all_reduce(c, mine);
      c.all_reduce(lib);
      EXPECT_EQ(diff(mine.to_vector(), lib.to_vector()), "") << where(c, n, DType::F32);
    }
  });
}

TEST(RingAllReduce, SendsTwoRingsOfShards) {
  on_groups(kRanks, [](Communicator& c) {
    const int p = c.size(), r = c.rank();
    for (int64_t n : kCounts) {
      Tensor t = input(n, DType::F32, 10, r);
      c.reset_stats();
      ring_all_reduce(c, t);
      // 2(p-1) steps; over the ranks, 2(p-1)/p * n elements each on average.
      expect_only_send_recv(c, 2 * (p - 1), rs_sent(n, p, r, 4) + ag_sent(n, p, r, 4),
                            rs_received(n, p, r, 4) + ag_received(n, p, r, 4), where(c, n, DType::F32));
    }
  });
}

// ---- every task: the ring on real MPI ranks with large messages, and bad input ---------------------

TEST(RingAllReduce, LargeBuffersDoNotDeadlock) {
  // 1M + 3 f32 elements (4 MiB): far above MPI's eager limit, so a blocking send posted before its
  // receive waits forever on the MPI world of the run (ctest runs it at 2, 3 and 4 processes; the
  // test's time limit turns the hang into a failure). send_recv posts both directions at once.
  on_groups({2, 3}, [](Communicator& c) {
    const int p = c.size(), r = c.rank();
    const int64_t n = (int64_t(1) << 20) + 3;
    Tensor t = input(n, DType::F32, 11, r);
    c.reset_stats();
    ring_all_reduce(c, t);
    expect_only_send_recv(c, 2 * (p - 1), rs_sent(n, p, r, 4) + ag_sent(n, p, r, 4),
                          rs_received(n, p, r, 4) + ag_received(n, p, r, 4), where(c, n, DType::F32));
    EXPECT_EQ(diff(t.to_vector(), expected_sum(n, p, 11)), "") << where(c, n, DType::F32);
  });
}

TEST(RingReduceScatter, WrongShardSizeIsAClearError) {
  // out with the wrong number of elements (or dtype): an sgpt::Error on every rank, before any
  // message moves, that names the sizes.
  on_groups({1, 3}, [](Communicator& c) {
    const int p = c.size(), r = c.rank();
    const int64_t n = 10;
    Tensor in = input(n, DType::F32, 1, r);
    Tensor too_big = Tensor::zeros({shard_count(n, p, r) + 1}, DType::F32);
    Tensor wrong_type = Tensor::zeros({shard_count(n, p, r)}, DType::F64);
    c.reset_stats();
    for (int which = 0; which < 2; ++which) {
      try {
        if (which == 0) ring_reduce_scatter(c, too_big, in);
        if (which == 1) ring_reduce_scatter(c, wrong_type, in);
        ADD_FAILURE() << where(c, n, DType::F32) << " case " << which << ": expected an sgpt::Error";
      } catch (const NotImplemented& e) {
        ADD_FAILURE() << e.what();
      } catch (const Error& e) {
        const std::string msg = e.what();
        EXPECT_NE(msg.find(std::to_string(shard_count(n, p, r))), std::string::npos)
            << "the message should name the expected shard size: " << msg;
      }
    }
    EXPECT_EQ(c.stats().total().calls, 0) << where(c, n, DType::F32) << " a message moved before the check";
  });
}
