#pragma once
// Small helpers shared by the tests of lesson 03 (public and hidden).
#include <cstdint>
#include <vector>

#include "core/memory.hpp"
#include "core/rng.hpp"
#include "core/tensor.hpp"

namespace lesson03_test {

/// Random tokens in [0, V), a pure function of the seed.
inline sgpt::Tensor random_tokens(int64_t B, int64_t T, int V, uint64_t seed) {
  std::vector<int32_t> v(B * T);
  const uint64_t key = sgpt::rng::stream_key(seed, "lesson03-tokens");
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<int32_t>(sgpt::rng::uniform(key, i) * V) % V;
  return sgpt::Tensor::from(v, {B, T});
}

/// Current bytes of one category (CPU).
inline int64_t current(sgpt::MemCategory c) {
  return static_cast<int64_t>(sgpt::MemoryTracker::instance().stats(c).current);
}
/// Peak bytes of one category (CPU) since the last reset_peak.
inline int64_t peak(sgpt::MemCategory c) { return static_cast<int64_t>(sgpt::MemoryTracker::instance().stats(c).peak); }

}  // namespace lesson03_test
