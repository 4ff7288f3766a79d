#pragma once
// The files a training run keeps in --out, and what the trainer guarantees about them:
//
//   - --out is created and proven writable before the first step (a probe file), so a read-only
//     or missing directory is an error at start-up, not after hours of training;
//   - temporary files that a killed run left behind (write_file_atomic's NAME.tmp.PID.N of a
//     process that no longer runs) are removed at start-up;
//   - metrics.jsonl is appended one line per event and handed to the OS at once (a kill loses
//     nothing logged before it); a resumed run keeps every line before its checkpoint's step;
//   - every other file (checkpoint, loss.svg) is replaced atomically;
//   - every write is checked: a failure is an error naming the file, never a silent loss.

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace sgpt::train {

/// Creates `dir` if needed, checks that it is a writable directory by creating, writing, syncing
/// and removing a probe file, and removes orphan temporary files of `files` (names inside `dir`)
/// left by killed runs. Returns the removed paths. Throws sgpt::Error naming `dir` and the reason.
std::vector<std::string> prepare_out_dir(const std::string& dir, const std::vector<std::string>& files);

/// metrics.jsonl: one JSON object per line.
class MetricsLog {
 public:
  /// Opens `path` for appending. A new run (resume_step < 0) starts the file empty. A resumed run
  /// keeps the lines of steps before `resume_step` (the run already logged them; the file is
  /// rewritten atomically, so a crash now leaves the old one) and drops the later ones (logged by
  /// an attempt that went on past the checkpoint and was lost). Unreadable lines (a line cut by a
  /// kill) are dropped with a warning.
  MetricsLog(const std::string& path, int64_t resume_step);
  ~MetricsLog();
  MetricsLog(const MetricsLog&) = delete;
  MetricsLog& operator=(const MetricsLog&) = delete;

  /// The lines kept from an earlier attempt (resumed runs), in file order.
  const std::vector<nlohmann::json>& kept() const { return kept_; }
  /// Appends `entry` as one line and hands it to the OS before returning (a kill of the process
  /// cannot lose it). Throws sgpt::Error naming the file when the write fails.
  void append(const nlohmann::json& entry);

 private:
  std::string path_;
  int fd_ = -1;
  std::vector<nlohmann::json> kept_;
};

/// Replaces `path` with `text` atomically (write_file_atomic); throws naming the file on failure.
void write_text_atomic(const std::string& path, const std::string& text);

}  // namespace sgpt::train
