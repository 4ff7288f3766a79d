#include <gtest/gtest.h>

#include <set>

#include "core/check.hpp"
#include "core/memory.hpp"
#include "core/rng.hpp"
#include "core/tensor.hpp"

using namespace sgpt;

TEST(Check, MessageNamesFileLineWhatAndWhy) {
  try {
    int heads = 5;
    SGPT_CHECK(heads == 4, "heads must be 4, got ", heads);
    FAIL() << "no throw";
  } catch (const Error& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("[rank 0] tests/core/test_core.cpp:"), std::string::npos) << m;
    EXPECT_NE(m.find("heads == 4 -> heads must be 4, got 5"), std::string::npos) << m;
  }
}

TEST(Check, NotImplementedNamesLessonAndTask) {
  try {
    SGPT_TODO(2, 1, "micro-batch loop");
  } catch (const NotImplemented& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("not implemented: lesson 02, task 1 (micro-batch loop)"), std::string::npos) << m;
    EXPECT_EQ(e.lesson, 2);
    EXPECT_EQ(e.task, 1);
  }
}

TEST(Memory, TracksCurrentAndPeakPerCategory) {
  auto& mt = MemoryTracker::instance();
  mt.reset_peak();
  auto base = mt.stats(MemCategory::Activations).current;
  {
    Tensor a = Tensor::empty({1000}, DType::F32, Device::CPU, MemCategory::Activations);
    Tensor b = Tensor::empty({10, 10}, DType::F64, Device::CPU, MemCategory::Activations);
    EXPECT_EQ(mt.stats(MemCategory::Activations).current, base + 4000 + 800);
    Tensor v = a.view(10, {5});  // a view costs nothing
    EXPECT_EQ(mt.stats(MemCategory::Activations).current, base + 4800);
  }
  EXPECT_EQ(mt.stats(MemCategory::Activations).current, base);
  EXPECT_EQ(mt.stats(MemCategory::Activations).peak, base + 4800);
  mt.reset_peak();
  EXPECT_EQ(mt.stats(MemCategory::Activations).peak, base);
}

TEST(Tensor, ViewsShareStorageAndCheckBounds) {
  Tensor t = Tensor::zeros({4, 3});
  Tensor row = t.slice(1, 2);
  row.data<float>()[2] = 7.0f;
  EXPECT_EQ(t.data<float>()[5], 7.0f);
  EXPECT_THROW(t.view(10, {3}), Error);
  EXPECT_THROW(t.data<double>(), Error);
  EXPECT_EQ(t.cast(DType::F64).data<double>()[5], 7.0);
}

TEST(Rng, CounterBasedAndSliceable) {
  uint64_t key = rng::stream_key(1337, "transformer.h.0.attn.c_attn.weight");
  // The same (key, index) always gives the same value, whatever else was drawn.
  double x = rng::normal(key, 12345);
  for (int i = 0; i < 100; ++i) rng::normal(key, i);
  EXPECT_EQ(rng::normal(key, 12345), x);
  // Different names give different streams.
  EXPECT_NE(rng::normal(rng::stream_key(1337, "transformer.h.1.attn.c_attn.weight"), 12345), x);
  // Roughly standard normal moments over many draws.
  double s = 0, s2 = 0;
  const int n = 200000;
  std::set<double> distinct;
  for (int i = 0; i < n; ++i) {
    double z = rng::normal(key, i);
    s += z;
    s2 += z * z;
    if (i < 1000) distinct.insert(z);
  }
  EXPECT_NEAR(s / n, 0.0, 0.01);
  EXPECT_NEAR(s2 / n, 1.0, 0.01);
  EXPECT_EQ(distinct.size(), 1000u);
}
