#pragma once
/// @file rng.hpp
/// @brief Counter-based random numbers (Philox4x32-10, Salmon et al., SC'11).
///
/// A random value is a pure function of (key, counter): no state, no order. ScaleGPT derives the
/// key from (seed, parameter name) and uses the global element index as the counter, so a tensor-
/// parallel shard or a pipeline stage initialises exactly the slice that the single-device model
/// would have (DESIGN.md principle 5). The functions run on the host and on CUDA devices.

#include <cmath>
#include <cstdint>
#include <string_view>

#if defined(__CUDACC__)
/// Marks a function callable from host and device code (`__host__ __device__` under nvcc).
#define SGPT_HD __host__ __device__
#else
/// Marks a function callable from host and device code (empty outside nvcc).
#define SGPT_HD
#endif

namespace sgpt::rng {

/// 128 random bits: one Philox4x32 output block.
struct U32x4 {
  uint32_t v[4];  ///< four independent, uniformly distributed 32-bit words
};

/// Philox4x32 with 10 rounds: 128 random bits from a 64-bit key and a 128-bit counter.
SGPT_HD inline U32x4 philox4x32(uint64_t key, uint64_t counter_lo, uint64_t counter_hi = 0) {
  uint32_t c0 = static_cast<uint32_t>(counter_lo), c1 = static_cast<uint32_t>(counter_lo >> 32);
  uint32_t c2 = static_cast<uint32_t>(counter_hi), c3 = static_cast<uint32_t>(counter_hi >> 32);
  uint32_t k0 = static_cast<uint32_t>(key), k1 = static_cast<uint32_t>(key >> 32);
  for (int round = 0; round < 10; ++round) {
    uint64_t p0 = static_cast<uint64_t>(0xD2511F53u) * c0;
    uint64_t p1 = static_cast<uint64_t>(0xCD9E8D57u) * c2;
    uint32_t n0 = static_cast<uint32_t>(p1 >> 32) ^ c1 ^ k0;
    uint32_t n2 = static_cast<uint32_t>(p0 >> 32) ^ c3 ^ k1;
    c0 = n0;
    c1 = static_cast<uint32_t>(p1);
    c2 = n2;
    c3 = static_cast<uint32_t>(p0);
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  return {{c0, c1, c2, c3}};
}

/// FNV-1a hash of a name (host only), used to give each parameter its own stream.
inline uint64_t hash_name(std::string_view name) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char ch : name) {
    h ^= ch;
    h *= 1099511628211ull;
  }
  return h;
}

/// The key of stream `name` under `seed`.
inline uint64_t stream_key(uint64_t seed, std::string_view name) {
  U32x4 r = philox4x32(seed, hash_name(name), 0x5347505453454544ull);
  return (static_cast<uint64_t>(r.v[0]) << 32) | r.v[1];
}

/// Uniform in (0, 1] from 32 random bits.
SGPT_HD inline double to_unit(uint32_t bits) { return (static_cast<double>(bits) + 1.0) / 4294967296.0; }

/// Uniform in (0, 1]: element `index` of stream `key`.
SGPT_HD inline double uniform(uint64_t key, uint64_t index) { return to_unit(philox4x32(key, index).v[0]); }

/// Standard normal (Box-Muller): element `index` of stream `key`.
SGPT_HD inline double normal(uint64_t key, uint64_t index) {
  U32x4 r = philox4x32(key, index);
  double u1 = to_unit(r.v[0]);
  double u2 = to_unit(r.v[1]);
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
}

}  // namespace sgpt::rng
