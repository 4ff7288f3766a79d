// The collective suite on the threads backend (1 to 4 ranks as threads of this process), plus what
// is specific to it and the backend-independent pieces (sharding rule, trace JSON).

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>

#include "comm/communicator.hpp"
#include "comm_suite.hpp"
#include "core/trace.hpp"

namespace sgpt::commtest {

#define SGPT_THREADS_CASE(Name, fn)              \
  TEST(CommThreads, Name) {                      \
    for (int p = 1; p <= 4; ++p) run_threads(p, fn); \
  }
SGPT_COMM_SUITE(SGPT_THREADS_CASE)
#undef SGPT_THREADS_CASE

TEST(ShardRange, FirstRanksGetTheRemainder) {
  EXPECT_EQ(shard_range(10, 4, 0), (ShardRange{0, 3}));
  EXPECT_EQ(shard_range(10, 4, 1), (ShardRange{3, 3}));
  EXPECT_EQ(shard_range(10, 4, 2), (ShardRange{6, 2}));
  EXPECT_EQ(shard_range(10, 4, 3), (ShardRange{8, 2}));
  EXPECT_EQ(shard_range(2, 3, 2), (ShardRange{2, 0}));
  EXPECT_EQ(shard_range(0, 3, 1), (ShardRange{0, 0}));
  EXPECT_THROW(shard_range(5, 0, 0), Error);
  EXPECT_THROW(shard_range(5, 2, 2), Error);
}

TEST(ShardRange, ShardsTileTheBuffer) {
  for (int64_t n = 0; n < 40; ++n) {
    for (int p = 1; p <= 7; ++p) {
      int64_t next = 0;
      for (int r = 0; r < p; ++r) {
        ShardRange s = shard_range(n, p, r);
        EXPECT_EQ(s.begin, next);
        EXPECT_TRUE(s.count == n / p || s.count == n / p + 1);
        next += s.count;
      }
      EXPECT_EQ(next, n);
    }
  }
}

TEST(CommThreads, RankThatThrowsReleasesTheOthers) {
  auto start = std::chrono::steady_clock::now();
  try {
    run_threads(3, [](Communicator& c) {
      if (c.rank() == 1) throw Error("deliberate failure on rank 1");
      Tensor t = Tensor::zeros({4});
      c.all_reduce(t);  // would wait forever for rank 1
    });
    ADD_FAILURE() << "run_threads did not rethrow";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("deliberate failure on rank 1"), std::string::npos) << e.what();
  }
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(), 10.0);
}

TEST(CommThreads, RankThatReturnsEarlyIsReported) {
  try {
    run_threads(2, [](Communicator& c) {
      if (c.rank() == 0) return;  // skips the collective
      Tensor t = Tensor::zeros({4});
      c.all_reduce(t);
    });
    ADD_FAILURE() << "run_threads did not rethrow";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("returned without calling it"), std::string::npos) << e.what();
  }
  try {
    run_threads(2, [](Communicator& c) {
      if (c.rank() == 0) return;
      Tensor t = Tensor::zeros({4});
      c.recv(t, 0);
    });
    ADD_FAILURE() << "run_threads did not rethrow";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("returned without sending"), std::string::npos) << e.what();
  }
}

TEST(CommThreads, RecvSizeMismatchIsAnError) {
  run_threads(2, [](Communicator& c) {
    if (c.rank() == 0) {
      c.send(Tensor::zeros({3}), 1);
    } else {
      Tensor t = Tensor::zeros({4});
      EXPECT_THROW(c.recv(t, 0), Error);
    }
  });
}

TEST(CommThreads, TracesOfAllRanksLandInTheGlobalRecorder) {
  TraceRecorder& g = TraceRecorder::global();
  g.clear();
  g.set_enabled(true);
  run_threads(3, [](Communicator& c) {
    TraceScope s("step", TraceCategory::Compute);
    Tensor t = Tensor::zeros({2});
    c.all_reduce(t);
  });
  g.set_enabled(false);
  auto steps = g.events_named("step");
  ASSERT_EQ(steps.size(), 3u);
  std::vector<int> ranks;
  for (const auto& e : steps) ranks.push_back(e.rank);
  std::sort(ranks.begin(), ranks.end());
  EXPECT_EQ(ranks, std::vector<int>({0, 1, 2}));
  EXPECT_EQ(g.events_named("all_reduce").size(), 3u);
  g.clear();
}

TEST(Trace, FilesRoundTripAndMerge) {
  TraceRecorder a(0), b(1);
  a.set_enabled(true);
  b.set_enabled(true);
  a.add("forward", TraceCategory::Compute, 10, 5, {{"microbatch", "0"}});
  a.add("wait", TraceCategory::Idle, 15, 2);
  b.add("backward", TraceCategory::Compute, 11, 7, {{"microbatch", "1"}}, 0);
  std::string fa = ::testing::TempDir() + "sgpt_trace_a.json";
  std::string fb = ::testing::TempDir() + "sgpt_trace_b.json";
  std::string fm = ::testing::TempDir() + "sgpt_trace_merged.json";
  a.write_json(fa);
  b.write_json(fb);
  merge_trace_files({fa, fb}, fm);
  std::ifstream f(fm);
  std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  auto ev = trace_from_json(text);
  ASSERT_EQ(ev.size(), 3u);
  EXPECT_EQ(ev[0].name, "forward");
  EXPECT_EQ(ev[0].start_us, 10);
  EXPECT_EQ(ev[0].duration_us, 5);
  EXPECT_EQ(ev[1].category, TraceCategory::Idle);
  EXPECT_EQ(ev[2].rank, 1);
  EXPECT_EQ(ev[2].arg_int("microbatch"), 1);
  EXPECT_NE(text.find("\"process_name\""), std::string::npos);
  EXPECT_THROW(trace_from_json("{not json"), Error);
}

TEST(Trace, DisabledRecorderRecordsNothing) {
  TraceRecorder r;
  r.set_enabled(false);
  r.add("x", TraceCategory::Compute, 0, 1);
  {
    ScopedTraceRecorder s(r);
    TraceScope t("y");
  }
  EXPECT_TRUE(r.events().empty());
}

TEST(Backend, NamesParse) {
  EXPECT_EQ(parse_backend("mpi"), Backend::MPI);
  EXPECT_EQ(parse_backend("threads"), Backend::Threads);
  EXPECT_EQ(std::string(backend_name(Backend::NCCL)), "nccl");
  EXPECT_THROW(parse_backend("gloo"), Error);
  auto one = make_world_communicator(Backend::Threads);
  EXPECT_EQ(one->size(), 1);
  Tensor t = Tensor::from(std::vector<float>{3.f}, {1});
  one->all_reduce(t);
  EXPECT_EQ(t.to_vector()[0], 3.0);
}

}  // namespace sgpt::commtest
