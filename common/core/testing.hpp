#pragma once
/// @file testing.hpp
/// @brief Small helpers that the test suites of common/ and of every lesson share.

#include <cstdint>
#include <string_view>
#include <vector>

#include "core/memory.hpp"
#include "core/rng.hpp"
#include "core/tensor.hpp"

namespace sgpt::testing {

/// An i32 CPU tensor [B,T] of tokens in [0, V): a pure function of (seed, stream).
inline Tensor random_tokens(int64_t B, int64_t T, int V, uint64_t seed, std::string_view stream = "tokens") {
  std::vector<int32_t> v(B * T);
  const uint64_t key = rng::stream_key(seed, stream);
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<int32_t>(rng::uniform(key, i) * V) % V;
  return Tensor::from(v, {B, T});
}

/// Bytes of category `c` allocated now on the CPU.
inline int64_t current(MemCategory c) { return static_cast<int64_t>(MemoryTracker::instance().stats(c).current); }

/// Largest value current(c) has had since the last MemoryTracker::reset_peak().
inline int64_t peak(MemCategory c) { return static_cast<int64_t>(MemoryTracker::instance().stats(c).peak); }

}  // namespace sgpt::testing
