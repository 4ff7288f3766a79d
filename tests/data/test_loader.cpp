#include <gtest/gtest.h>

#include "core/rng.hpp"
#include "data/loader.hpp"
#include "test_util.hpp"

using namespace sgpt;
using sgpt::testing::expect_error;

namespace {

std::vector<int32_t> iota_tokens(int n) {
  std::vector<int32_t> t(n);
  for (int i = 0; i < n; ++i) t[i] = i;
  return t;
}

// Tokens that are not a simple function of their index, so a loader that computes instead of
// reads cannot pass.
std::vector<int32_t> random_tokens(int n, int vocab) {
  std::vector<int32_t> t(n);
  uint64_t key = rng::stream_key(7, "loader-test");
  for (int i = 0; i < n; ++i) t[i] = static_cast<int32_t>(rng::philox4x32(key, i).v[0] % vocab);
  return t;
}

std::vector<int32_t> values(const Tensor& t) {
  const int32_t* p = t.data<int32_t>();
  return std::vector<int32_t>(p, p + t.numel());
}

}  // namespace

TEST(DataLoader, RowsAndTargetsAreExact) {
  TokenFile tokens(iota_tokens(100), 100);
  DataLoader loader(tokens, /*B=*/2, /*T=*/4);
  Tensor x, y;
  loader.next(x, y);
  EXPECT_EQ(x.shape(), (Shape{2, 4}));
  EXPECT_EQ(x.dtype(), DType::I32);
  EXPECT_EQ(values(x), (std::vector<int32_t>{0, 1, 2, 3, 4, 5, 6, 7}));
  EXPECT_EQ(values(y), (std::vector<int32_t>{1, 2, 3, 4, 5, 6, 7, 8}));
  EXPECT_EQ(loader.state(), (LoaderState{8, 0}));
  loader.next(x, y);
  EXPECT_EQ(values(x), (std::vector<int32_t>{8, 9, 10, 11, 12, 13, 14, 15}));
  EXPECT_EQ(values(y), (std::vector<int32_t>{9, 10, 11, 12, 13, 14, 15, 16}));
}

TEST(DataLoader, RankSharesConcatenateToTheSingleRankBatch) {
  TokenFile tokens(random_tokens(600, 256), 256);
  const int64_t B = 8, T = 16;
  for (int world : {2, 4, 8}) {
    DataLoader single(tokens, B, T);
    std::vector<DataLoader> ranks;
    for (int r = 0; r < world; ++r) ranks.emplace_back(tokens, B, T, r, world);
    for (int step = 0; step < 12; ++step) {  // 600 tokens hold 4 batches of 128: 12 steps wrap twice
      Tensor x1, y1;
      single.next(x1, y1);
      std::vector<int32_t> xs, ys;
      for (int r = 0; r < world; ++r) {
        Tensor x, y;
        ranks[r].next(x, y);
        ASSERT_EQ(x.shape(), (Shape{B / world, T}));
        auto vx = values(x), vy = values(y);
        xs.insert(xs.end(), vx.begin(), vx.end());
        ys.insert(ys.end(), vy.begin(), vy.end());
        EXPECT_EQ(ranks[r].state(), single.state());
      }
      ASSERT_EQ(xs, values(x1)) << "world " << world << " step " << step;
      ASSERT_EQ(ys, values(y1)) << "world " << world << " step " << step;
    }
  }
}

TEST(DataLoader, WrapsAroundAndCountsEpochs) {
  // 25 tokens, batches of 2 x 4 = 8: batches start at 0, 8, 16 (16 + 8 + 1 = 25 fits), then wrap.
  TokenFile tokens(iota_tokens(25), 25);
  DataLoader loader(tokens, 2, 4);
  EXPECT_EQ(loader.batches_per_epoch(), 3);
  Tensor x, y;
  loader.next(x, y);
  loader.next(x, y);
  loader.next(x, y);
  EXPECT_EQ(values(x), (std::vector<int32_t>{16, 17, 18, 19, 20, 21, 22, 23}));
  EXPECT_EQ(values(y), (std::vector<int32_t>{17, 18, 19, 20, 21, 22, 23, 24}));
  EXPECT_EQ(loader.state(), (LoaderState{0, 1}));
  loader.next(x, y);
  EXPECT_EQ(values(x), (std::vector<int32_t>{0, 1, 2, 3, 4, 5, 6, 7}));
  for (int i = 0; i < 5; ++i) loader.next(x, y);
  EXPECT_EQ(loader.state(), (LoaderState{0, 3}));
}

TEST(DataLoader, ExactlyOneBatchOfDataRepeats) {
  TokenFile tokens(iota_tokens(9), 9);
  DataLoader loader(tokens, 2, 4);
  Tensor x, y;
  loader.next(x, y);
  EXPECT_EQ(loader.state(), (LoaderState{0, 1}));
  loader.next(x, y);
  EXPECT_EQ(values(y).back(), 8);
}

TEST(DataLoader, RestoredStateContinuesIdentically) {
  TokenFile tokens(random_tokens(3000, 256), 256);
  DataLoader a(tokens, 4, 32, 1, 2);
  Tensor x, y;
  for (int i = 0; i < 7; ++i) a.next(x, y);
  const LoaderState saved = a.state();
  std::vector<std::vector<int32_t>> expected;
  for (int i = 0; i < 30; ++i) {  // crosses at least one epoch boundary
    a.next(x, y);
    expected.push_back(values(x));
    expected.push_back(values(y));
  }
  DataLoader b(tokens, 4, 32, 1, 2);
  b.set_state(saved);
  for (int i = 0; i < 30; ++i) {
    b.next(x, y);
    ASSERT_EQ(values(x), expected[2 * i]) << i;
    ASSERT_EQ(values(y), expected[2 * i + 1]) << i;
  }
  EXPECT_EQ(a.state(), b.state());
  EXPECT_GE(b.state().epoch, 1);
  b.reset();
  EXPECT_EQ(b.state(), (LoaderState{0, 0}));
}

TEST(DataLoader, FillsPreallocatedTensorsAndRejectsWrongOnes) {
  TokenFile tokens(iota_tokens(100), 100);
  DataLoader loader(tokens, 4, 5, 0, 2);
  Tensor x = Tensor::zeros({2, 5}, DType::I32), y = Tensor::zeros({2, 5}, DType::I32);
  const int32_t* px = x.data<int32_t>();
  loader.next(x, y);
  EXPECT_EQ(x.data<int32_t>(), px);  // filled in place
  EXPECT_EQ(values(x)[9], 9);
  Tensor bad = Tensor::zeros({4, 5}, DType::I32), ok;
  expect_error([&] { loader.next(bad, ok); }, {"[2, 5]", "[4, 5]"});
  Tensor f32 = Tensor::zeros({2, 5}, DType::F32);
  expect_error([&] { loader.next(f32, ok); }, {"i32"});
}

TEST(DataLoader, IndivisibleBatchIsAClearError) {
  TokenFile tokens(iota_tokens(100), 100);
  expect_error([&] { DataLoader l(tokens, 6, 4, 0, 4); }, {"global batch 6", "not divisible", "world size 4"});
  expect_error([&] { DataLoader l(tokens, 4, 4, 4, 4); }, {"rank 4"});
  expect_error([&] { DataLoader l(tokens, 0, 4); }, {"positive"});
}

TEST(DataLoader, TooShortDataNamesTheFileAndSizes) {
  TokenFile tokens(iota_tokens(32), 32, "tiny.bin");
  // 4 x 8 = 32 tokens plus one target: 33 needed.
  expect_error([&] { DataLoader l(tokens, 4, 8); }, {"tiny.bin", "holds 32 tokens", "4 x 8", "33"});
}

TEST(DataLoader, SetStateRejectsPositionsThatCannotStartABatch) {
  TokenFile tokens(iota_tokens(25), 25, "s.bin");
  DataLoader loader(tokens, 2, 4);
  expect_error([&] { loader.set_state({17, 0}); }, {"s.bin", "position 17"});
  expect_error([&] { loader.set_state({-1, 0}); }, {"position -1"});
  loader.set_state({16, 2});
  Tensor x, y;
  loader.next(x, y);
  EXPECT_EQ(values(x)[0], 16);
  EXPECT_EQ(loader.state(), (LoaderState{0, 3}));
}
