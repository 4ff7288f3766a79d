#pragma once
/// @file log.hpp
/// @brief Logging: lines prefixed with the rank; by default only rank 0 prints info lines.

#include <string>

#include "core/check.hpp"

namespace sgpt {

/// Severity of a log line, lowest first; Quiet as a threshold prints nothing.
enum class LogLevel { Debug = 0, Info, Warn, Error, Quiet };

/// Sets the lowest level printed (default Info, or SGPT_LOG=debug|info|warn|error|quiet).
void set_log_level(LogLevel level);
/// The lowest level printed now.
LogLevel log_level();
/// Prints `message` to stderr if `level` is at least log_level(): info lines bare and from rank 0
/// only (as are debug lines), warnings and errors as "[rank r] warn: message" from every rank.
void log_line(LogLevel level, const std::string& message);

/// Logs the streamed arguments at LogLevel::Info (printed by rank 0 only).
template <class... Args> void log_info(const Args&... a) { log_line(LogLevel::Info, str(a...)); }
/// Logs the streamed arguments at LogLevel::Warn (printed by every rank).
template <class... Args> void log_warn(const Args&... a) { log_line(LogLevel::Warn, str(a...)); }
/// Logs the streamed arguments at LogLevel::Debug (printed by rank 0 only, when enabled).
template <class... Args> void log_debug(const Args&... a) { log_line(LogLevel::Debug, str(a...)); }

}  // namespace sgpt
