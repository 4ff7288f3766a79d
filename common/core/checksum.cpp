// The 64-bit checksum of checksum.hpp. Each 32-byte stripe updates four lanes; a lane update
// multiplies the word by an odd constant, adds it, rotates and multiplies again, so a change in any
// bit of any word changes the lane (every step is invertible for a fixed lane value). The final mix
// is the usual xor-shift-multiply avalanche (the constants are splitmix64's, from Steele, Lea and
// Flood, "Fast splittable pseudorandom number generators", OOPSLA 2014).

#include "core/checksum.hpp"

#include <bit>
#include <cstring>

namespace sgpt {

namespace {

constexpr uint64_t kOdd1 = 0x9E3779B97F4A7C15ULL;  // 2^64 / golden ratio, odd
constexpr uint64_t kOdd2 = 0xD6E8FEB86659FD93ULL;
constexpr uint64_t kOdd3 = 0xC2B2AE3D27D4EB4FULL;

uint64_t load64(const unsigned char* p) {
  uint64_t w;
  std::memcpy(&w, p, 8);  // little-endian hosts only (safetensors.cpp asserts it)
  return w;
}

uint64_t lane_step(uint64_t lane, uint64_t word) {
  lane += word * kOdd2;
  lane = std::rotl(lane, 29);
  return lane * kOdd1;
}

uint64_t avalanche(uint64_t x) {
  x ^= x >> 30;
  x *= 0xBF58476D1CE4E5B9ULL;
  x ^= x >> 27;
  x *= 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

}  // namespace

Checksum64::Checksum64(uint64_t seed) : seed_(seed) {
  for (int i = 0; i < 4; ++i) lane_[i] = avalanche(seed + kOdd3 * static_cast<uint64_t>(i + 1));
}

void Checksum64::stripe(const unsigned char* p) {
  for (int i = 0; i < 4; ++i) lane_[i] = lane_step(lane_[i], load64(p + 8 * i));
}

void Checksum64::update(const void* data, std::size_t bytes) {
  auto* p = static_cast<const unsigned char*>(data);
  total_ += bytes;
  if (buffered_ > 0) {  // complete a stripe started by an earlier piece
    std::size_t take = std::min(bytes, sizeof buf_ - buffered_);
    std::memcpy(buf_ + buffered_, p, take);
    buffered_ += take, p += take, bytes -= take;
    if (buffered_ < sizeof buf_) return;
    stripe(buf_);
    buffered_ = 0;
  }
  for (; bytes >= 32; p += 32, bytes -= 32) stripe(p);
  std::memcpy(buf_, p, bytes);
  buffered_ = bytes;
}

void Checksum64::update_field(std::string_view s) {
  update(s.data(), s.size());
  const uint64_t n = s.size();
  update(&n, sizeof n);
}

uint64_t Checksum64::digest() const {
  // Fold the lanes (rotated differently, so swapping two words of a stripe is seen), then the
  // buffered tail one word at a time, then the length.
  uint64_t h = seed_;
  for (int i = 0; i < 4; ++i) h = lane_step(h ^ std::rotl(lane_[i], 7 * i + 1), static_cast<uint64_t>(i));
  unsigned char tail[32] = {};
  std::memcpy(tail, buf_, buffered_);
  for (std::size_t i = 0; i < buffered_; i += 8) h = lane_step(h, load64(tail + i));
  return avalanche(h ^ total_);
}

uint64_t checksum64(const void* data, std::size_t bytes, uint64_t seed) {
  Checksum64 c(seed);
  c.update(data, bytes);
  return c.digest();
}

std::string checksum_hex(uint64_t value) {
  static const char* digits = "0123456789abcdef";
  std::string s(16, '0');
  for (int i = 15; i >= 0; --i, value >>= 4) s[i] = digits[value & 15];
  return s;
}

}  // namespace sgpt
