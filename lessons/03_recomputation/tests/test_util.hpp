#pragma once
// Helpers for lesson 03's tests (public and hidden), from common/core/testing.hpp.
#include "core/testing.hpp"

namespace lesson03_test {
/// Random tokens in [0, V), a pure function of the seed (this lesson's own stream).
inline sgpt::Tensor random_tokens(int64_t B, int64_t T, int V, uint64_t seed) {
  return sgpt::testing::random_tokens(B, T, V, seed, "lesson03-tokens");
}
using sgpt::testing::current;
using sgpt::testing::peak;
}  // namespace lesson03_test
