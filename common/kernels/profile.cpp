#include "kernels/profile.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>

namespace sgpt {

namespace {
bool g_on = [] {
  const char* e = std::getenv("SGPT_PROFILE_OPS");
  return e && e[0] == '1';
}();
std::mutex g_mu;
std::map<std::string, OpProfileEntry> g_entries;
int g_depth = 0;  // ops called by other ops (residual_backward -> axpy_) count once, in the outer op

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }
}  // namespace

void set_op_profiling(bool on) { g_on = on; }
bool op_profiling() { return g_on; }

void reset_op_profile() {
  std::lock_guard<std::mutex> lock(g_mu);
  g_entries.clear();
}

std::vector<OpProfileEntry> op_profile() {
  std::lock_guard<std::mutex> lock(g_mu);
  std::vector<OpProfileEntry> out;
  for (auto& [name, e] : g_entries) out.push_back(e);
  std::sort(out.begin(), out.end(), [](auto& a, auto& b) { return a.seconds > b.seconds; });
  return out;
}

std::string op_profile_report() {
  auto entries = op_profile();
  double total = 0;
  for (auto& e : entries) total += e.seconds;
  std::string out = "  op                                  calls    total ms   share\n";
  char line[160];
  for (auto& e : entries) {
    std::snprintf(line, sizeof line, "  %-34s %8lld %11.2f %6.1f%%\n", e.op.c_str(), (long long)e.calls,
                  e.seconds * 1e3, total > 0 ? 100 * e.seconds / total : 0.0);
    out += line;
  }
  std::snprintf(line, sizeof line, "  %-34s %8s %11.2f\n", "total", "", total * 1e3);
  return out + line;
}

namespace detail {
OpScope::OpScope(const char* op, const Tensor& t) : op_(op), device_(t.defined() ? t.device() : Device::CPU) {
  if (!g_on || g_depth++ > 0) return;
  device_synchronize(device_);
  start_ = now();
}

OpScope::~OpScope() {
  if (!g_on) return;
  --g_depth;
  if (start_ < 0) return;
  device_synchronize(device_);
  double dt = now() - start_;
  std::lock_guard<std::mutex> lock(g_mu);
  auto& e = g_entries[op_];
  e.op = op_;
  e.calls += 1;
  e.seconds += dt;
}
}  // namespace detail

}  // namespace sgpt
