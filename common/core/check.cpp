#include "core/check.hpp"

#include <atomic>
#include <cstdio>

namespace sgpt {

namespace {
std::atomic<int> g_rank{0};

std::string basename_of(const std::string& path) {
  // Keep the path from the repository's top folders on, so messages are short but unambiguous.
  for (const char* top : {"common/", "lessons/", "solutions/", "tools/", "tests/", "grading/"}) {
    auto pos = path.rfind(top);
    if (pos != std::string::npos) return path.substr(pos);
  }
  return path;
}
}  // namespace

void set_process_rank(int rank) { g_rank = rank; }
int process_rank() { return g_rank; }

NotImplemented::NotImplemented(int lesson_, int task_, const std::string& what, const std::string& file)
    : Error(str("[rank ", process_rank(), "] not implemented: lesson ", lesson_ < 10 ? "0" : "", lesson_,
                ", task ", task_, " (", what, ") in ", basename_of(file))),
      lesson(lesson_),
      task(task_) {}

namespace detail {
void fail(const char* file, int line, const std::string& what, const std::string& why) {
  throw Error(str("[rank ", process_rank(), "] ", basename_of(file), ":", line, ": ", what, " -> ", why));
}
}  // namespace detail

}  // namespace sgpt
