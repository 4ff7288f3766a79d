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

/// Fills `t` (F32 or F64, any device) with the non-zero values an earlier step could have left in a
/// gradient buffer, so that a test starts from dirty state: a pure function of (seed, scale).
inline void make_dirty(Tensor& t, double scale = 0.37, uint64_t seed = 1) {
  std::vector<double> junk(static_cast<size_t>(t.numel()));
  const uint64_t key = rng::stream_key(seed, "dirty");
  for (size_t i = 0; i < junk.size(); ++i) junk[i] = scale * (0.25 + rng::uniform(key, i)) * (i % 2 ? -1.0 : 1.0);
  t.copy_from(Tensor::from(junk, t.shape()).cast(t.dtype()).to(t.device()));
}

/// Bytes of category `c` allocated now on the CPU.
inline int64_t current(MemCategory c) { return static_cast<int64_t>(MemoryTracker::instance().stats(c).current); }

/// Largest value current(c) has had since the last MemoryTracker::reset_peak().
inline int64_t peak(MemCategory c) { return static_cast<int64_t>(MemoryTracker::instance().stats(c).peak); }

}  // namespace sgpt::testing
