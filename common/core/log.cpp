#include "core/log.hpp"

#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace sgpt {

static LogLevel initial_level() {
  const char* env = std::getenv("SGPT_LOG");
  if (!env) return LogLevel::Info;
  if (!std::strcmp(env, "debug")) return LogLevel::Debug;
  if (!std::strcmp(env, "warn")) return LogLevel::Warn;
  if (!std::strcmp(env, "error")) return LogLevel::Error;
  if (!std::strcmp(env, "quiet")) return LogLevel::Quiet;
  return LogLevel::Info;
}

static LogLevel g_level = initial_level();

void set_log_level(LogLevel level) { g_level = level; }
LogLevel log_level() { return g_level; }

void log_line(LogLevel level, const std::string& message) {
  if (level < g_level) return;
  if (level <= LogLevel::Info && process_rank() != 0) return;
  static const char* tag[] = {"debug", "info", "warn", "error"};
  if (level == LogLevel::Info)
    std::fprintf(stderr, "%s\n", message.c_str());
  else
    std::fprintf(stderr, "[rank %d] %s: %s\n", process_rank(), tag[static_cast<int>(level)], message.c_str());
}

}  // namespace sgpt
