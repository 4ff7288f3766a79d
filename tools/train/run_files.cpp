// The output files of scalegpt-train (see run_files.hpp for the guarantees).

#include "run_files.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "core/log.hpp"
#include "core/safetensors.hpp"

namespace sgpt::train {

namespace fs = std::filesystem;

std::vector<std::string> prepare_out_dir(const std::string& dir, const std::vector<std::string>& files) {
  SGPT_CHECK(!dir.empty(), "--out is empty: give the directory for the checkpoint, metrics and plot");
  std::error_code ec;
  fs::create_directories(dir, ec);
  SGPT_CHECK(!ec, "--out ", dir, ": cannot create the directory: ", ec.message());
  SGPT_CHECK(fs::is_directory(dir, ec), "--out ", dir, ": exists but is not a directory");
  // Probe: what the run will do later (create, write, sync, rename-free removal), done now.
  const std::string probe = str(dir, "/.scalegpt-write-probe.", ::getpid());
  const int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  SGPT_CHECK(fd >= 0, "--out ", dir, " is not writable: creating a file there failed: ", std::strerror(errno));
  const bool wrote = ::write(fd, "ok\n", 3) == 3 && ::fsync(fd) == 0;
  const int write_errno = errno;
  const bool closed = ::close(fd) == 0;
  ::unlink(probe.c_str());
  SGPT_CHECK(wrote && closed, "--out ", dir, " is not writable: writing a file there failed: ",
             std::strerror(write_errno));

  std::vector<std::string> removed;
  for (const std::string& f : files)
    for (std::string& r : remove_orphan_temp_files(dir + "/" + f)) removed.push_back(std::move(r));
  return removed;
}

MetricsLog::MetricsLog(const std::string& path, int64_t resume_step) : path_(path) {
  std::string keep;  // the file's new contents before appending
  if (resume_step >= 0) {
    std::ifstream old(path);
    int64_t dropped = 0, damaged = 0;
    for (std::string line; std::getline(old, line);) {
      auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
      if (j.is_discarded() || !j.is_object() || !j.contains("step") || !j["step"].is_number_integer()) {
        damaged += !line.empty();
        continue;
      }
      if (j["step"].get<int64_t>() >= resume_step) {
        ++dropped;
        continue;
      }
      keep += line + "\n";
      kept_.push_back(std::move(j));
    }
    SGPT_CHECK(!old.bad(), path, ": cannot read the metrics of the run being resumed");
    if (damaged) log_warn(path, ": dropped ", damaged, " unreadable line(s) (cut short by a killed run?)");
    if (dropped) log_info(path, ": dropped ", dropped, " line(s) logged after step ", resume_step, " by an earlier attempt");
  }
  // Rewritten atomically: a kill at this point leaves the old file as it was.
  write_text_atomic(path, keep);
  fd_ = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
  SGPT_CHECK(fd_ >= 0, path, ": cannot open for appending: ", std::strerror(errno));
}

MetricsLog::~MetricsLog() {
  if (fd_ >= 0) ::close(fd_);
}

void MetricsLog::append(const nlohmann::json& entry) {
  const std::string line = entry.dump() + "\n";
  // One write() per line on an O_APPEND descriptor: no user-space buffer to lose in a kill.
  const char* p = line.data();
  std::size_t left = line.size();
  while (left > 0) {
    const ssize_t n = ::write(fd_, p, left);
    if (n < 0 && errno == EINTR) continue;
    SGPT_CHECK(n > 0, path_, ": cannot append the metrics: ", n < 0 ? std::strerror(errno) : "no progress");
    p += n;
    left -= static_cast<std::size_t>(n);
  }
}

void write_text_atomic(const std::string& path, const std::string& text) {
  write_file_atomic(path, [&](const ByteSink& sink) { sink(text.data(), text.size()); });
}

}  // namespace sgpt::train
