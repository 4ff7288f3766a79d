#include "core/memory.hpp"

#include <cstdio>

#include "core/check.hpp"

namespace sgpt {

const char* category_name(MemCategory c) {
  switch (c) {
    case MemCategory::Parameters: return "parameters";
    case MemCategory::Gradients: return "gradients";
    case MemCategory::OptimizerState: return "optimizer";
    case MemCategory::Activations: return "activations";
    case MemCategory::Communication: return "communication";
    case MemCategory::Other: return "other";
    default: return "?";
  }
}

const char* device_name(Device d) { return d == Device::CPU ? "cpu" : "cuda"; }

MemoryTracker& MemoryTracker::instance() {
  static MemoryTracker tracker;
  return tracker;
}

void MemoryTracker::on_alloc(Device d, MemCategory c, std::size_t bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  auto& s = cat_[static_cast<int>(d)][static_cast<int>(c)];
  s.current += bytes;
  if (s.current > s.peak) s.peak = s.current;
  auto& t = total_[static_cast<int>(d)];
  t.current += bytes;
  if (t.current > t.peak) t.peak = t.current;
}

void MemoryTracker::on_free(Device d, MemCategory c, std::size_t bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  auto& s = cat_[static_cast<int>(d)][static_cast<int>(c)];
  SGPT_CHECK(s.current >= bytes, "memory tracker: freeing more ", category_name(c), " bytes than allocated");
  s.current -= bytes;
  total_[static_cast<int>(d)].current -= bytes;
}

MemoryStats MemoryTracker::stats(MemCategory c, Device d) const {
  std::lock_guard<std::mutex> lock(mu_);
  return cat_[static_cast<int>(d)][static_cast<int>(c)];
}

MemoryStats MemoryTracker::total(Device d) const {
  std::lock_guard<std::mutex> lock(mu_);
  return total_[static_cast<int>(d)];
}

void MemoryTracker::reset_peak() {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& dev : cat_)
    for (auto& s : dev) s.peak = s.current;
  for (auto& t : total_) t.peak = t.current;
}

std::string MemoryTracker::report(Device d) const {
  std::string out = str("memory on ", device_name(d), " (MiB)       current        peak\n");
  char line[128];
  for (int c = 0; c < kCats; ++c) {
    auto s = stats(static_cast<MemCategory>(c), d);
    std::snprintf(line, sizeof line, "  %-16s %14.2f %11.2f\n", category_name(static_cast<MemCategory>(c)),
                  s.current / 1048576.0, s.peak / 1048576.0);
    out += line;
  }
  auto t = total(d);
  std::snprintf(line, sizeof line, "  %-16s %14.2f %11.2f\n", "total", t.current / 1048576.0, t.peak / 1048576.0);
  out += line;
  return out;
}

}  // namespace sgpt
