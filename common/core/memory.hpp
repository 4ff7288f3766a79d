#pragma once
/// @file memory.hpp
/// @brief Memory tracker: bytes in use and peak bytes, per device and per category.
///
/// Every Tensor allocation is charged to one category. Lessons read the tracker to check their
/// formulas (for example, "peak activation memory does not depend on the number of
/// micro-batches"), so the numbers are exact byte counts, not estimates.

#include <array>
#include <cstddef>
#include <mutex>
#include <string>

namespace sgpt {

/// Where a tensor lives.
enum class Device : unsigned char { CPU = 0, CUDA = 1 };

/// What a block of memory is for.
enum class MemCategory : unsigned char {
  Parameters = 0,
  Gradients,
  OptimizerState,
  Activations,
  Communication,
  Other,
  Count
};

/// Lower-case name of a category ("parameters", "gradients", ...).
const char* category_name(MemCategory c);
/// "cpu" or "cuda".
const char* device_name(Device d);

/// Current and peak bytes of one (device, category) pair, and the totals per device.
struct MemoryStats {
  std::size_t current = 0;  ///< bytes allocated now
  std::size_t peak = 0;     ///< largest value `current` has had since the last reset_peak()
};

/// Process-wide memory accounting (thread-safe). One instance per process, i.e. per rank.
class MemoryTracker {
 public:
  /// The process-wide tracker.
  static MemoryTracker& instance();

  /// Charges `bytes` to (d, c) and to d's total, updating the peaks (called by Storage).
  void on_alloc(Device d, MemCategory c, std::size_t bytes);
  /// Credits `bytes` back to (d, c) and to d's total (called by Storage); throws sgpt::Error when
  /// more is freed than was allocated.
  void on_free(Device d, MemCategory c, std::size_t bytes);

  /// Stats of one category on one device.
  MemoryStats stats(MemCategory c, Device d = Device::CPU) const;
  /// Stats of all categories together on one device (the peak is of the sum, not a sum of peaks).
  MemoryStats total(Device d = Device::CPU) const;
  /// Sets every peak to the current value, so the next peak measures only what follows.
  void reset_peak();
  /// A table of current and peak bytes per category, in MiB, for people.
  std::string report(Device d = Device::CPU) const;

 private:
  static constexpr int kCats = static_cast<int>(MemCategory::Count);
  mutable std::mutex mu_;
  std::array<std::array<MemoryStats, kCats>, 2> cat_{};
  std::array<MemoryStats, 2> total_{};
};

}  // namespace sgpt
