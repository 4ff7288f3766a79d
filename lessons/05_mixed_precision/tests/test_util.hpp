#pragma once
// Helpers for lesson 05's tests (public and hidden): an independent reference for 16-bit
// rounding, and small model runs.
//
// The reference does not manipulate exponent and mantissa fields the way a conversion does. It
// decodes every positive bit pattern of the format to its exact value (a double, via ldexp),
// and rounds an f32 value by searching that sorted table for the nearest entry; on a tie it
// takes the even pattern. Positive patterns are ordered like their values, so the index found
// is the bit pattern itself. The pattern of +inf stands for 2^(emax+1), the next power of two
// after the largest finite value: rounding to it is exactly IEEE overflow (ties included).

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "core/testing.hpp"
#include "mixed_precision.hpp"

namespace lesson05_test {

/// A 16-bit binary floating-point format: 1 sign bit, `exp_bits`, `man_bits`.
struct Format {
  int exp_bits, man_bits;
  uint16_t inf() const { return static_cast<uint16_t>(((1u << exp_bits) - 1u) << man_bits); }
  int bias() const { return (1 << (exp_bits - 1)) - 1; }
  /// The exact value of a non-NaN pattern (inf for the inf pattern).
  double decode(uint16_t h) const {
    const bool neg = h & 0x8000u;
    const int e = (h >> man_bits) & ((1 << exp_bits) - 1);
    const int m = h & ((1 << man_bits) - 1);
    double v;
    if (e == (1 << exp_bits) - 1)
      v = m ? std::numeric_limits<double>::quiet_NaN() : std::numeric_limits<double>::infinity();
    else if (e == 0)
      v = std::ldexp(double(m), 1 - bias() - man_bits);  // subnormal: m * 2^(1-bias-man_bits)
    else
      v = std::ldexp(double((1 << man_bits) + m), e - bias() - man_bits);
    return neg ? -v : v;
  }
  bool is_nan(uint16_t h) const { return (h & inf()) == inf() && (h & ((1u << man_bits) - 1u)); }
};
inline const Format kBf16{8, 7};
inline const Format kFp16{5, 10};

/// The sorted exact values of patterns 0 .. inf (inf standing for 2^(emax+1)).
inline std::vector<double> positive_values(const Format& f) {
  std::vector<double> v(f.inf() + 1u);
  for (uint32_t h = 0; h < f.inf(); ++h) v[h] = f.decode(static_cast<uint16_t>(h));
  v[f.inf()] = std::ldexp(1.0, (1 << (f.exp_bits - 1)));  // 2^(emax+1)
  return v;
}

/// Round-to-nearest-even of a non-NaN f32 by search (see the file comment).
inline uint16_t brute_force_round(float x, const Format& f, const std::vector<double>& table) {
  const uint16_t sign = std::signbit(x) ? 0x8000u : 0u;
  const double a = std::fabs(double(x));
  if (std::isinf(a)) return sign | f.inf();
  auto it = std::lower_bound(table.begin(), table.end(), a);
  if (it == table.end()) return sign | f.inf();
  size_t hi = size_t(it - table.begin());
  if (table[hi] == a || hi == 0) return static_cast<uint16_t>(sign | hi);
  const size_t lo = hi - 1;
  const double dlo = a - table[lo], dhi = table[hi] - a;  // exact: both are short binary fractions
  size_t pick = dlo < dhi ? lo : dhi < dlo ? hi : (lo % 2 == 0 ? lo : hi);
  return static_cast<uint16_t>(sign | pick);
}

/// What narrowing a NaN must give: sign kept, top payload bits kept, quiet bit set.
inline uint16_t expected_nan(float x, const Format& f) {
  const uint32_t u = std::bit_cast<uint32_t>(x);
  const uint16_t payload = static_cast<uint16_t>((u & 0x7fffffu) >> (23 - f.man_bits));
  return static_cast<uint16_t>(((u >> 16) & 0x8000u) | f.inf() | payload | (1u << (f.man_bits - 1)));
}

/// The f32 bits a widened NaN must have: sign, payload in the top mantissa bits, quiet bit set.
inline uint32_t expected_widened_nan(uint16_t h, const Format& f) {
  const uint32_t payload = static_cast<uint32_t>(h & ((1u << f.man_bits) - 1u)) << (23 - f.man_bits);
  return (static_cast<uint32_t>(h & 0x8000u) << 16) | 0x7f800000u | payload | 0x00400000u;
}

inline float from_bits(uint32_t u) { return std::bit_cast<float>(u); }
inline uint32_t bits_of(float x) { return std::bit_cast<uint32_t>(x); }

/// The bit patterns of a 16-bit tensor.
inline std::vector<uint16_t> bits16(const sgpt::Tensor& t) {
  std::vector<uint16_t> out(t.numel());
  const uint16_t* p = static_cast<const uint16_t*>(t.raw());
  out.assign(p, p + t.numel());
  return out;
}

/// Random tokens in [0, V), a pure function of the seed (this lesson's own stream).
inline sgpt::Tensor random_tokens(int64_t B, int64_t T, int V, uint64_t seed) {
  return sgpt::testing::random_tokens(B, T, V, seed, "lesson05-tokens");
}
using sgpt::testing::current;

/// AdamW constants for the model tests.
inline sgpt::AdamWConfig test_adamw(double wd = 0.1) {
  sgpt::AdamWConfig c;
  c.weight_decay = wd;
  return c;
}

}  // namespace lesson05_test
