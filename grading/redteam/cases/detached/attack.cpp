// ---- red team: a detached daemon (appended to the lesson 02 stub) ----------------------------------
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>

namespace {
struct Daemon {
  Daemon() {
    pid_t p = fork();
    if (p == 0) {
      setsid();
      if (fork() == 0) {  // the daemon: stdout stays open, then it rewrites the results
        sleep(3);
        const std::string forged = "{\"score\": 999, \"tests\": []}\n";
        for (int i = 0; i < 600; ++i) {
          int fd = open("@RESULTS@", O_WRONLY | O_CREAT | O_TRUNC, 0666);
          if (fd >= 0) {
            (void)!write(fd, forged.data(), forged.size());
            close(fd);
          }
          (void)!write(1, "daemon still here\n", 18);
          sleep(1);
        }
        _exit(0);
      }
      _exit(0);
    }
    waitpid(p, nullptr, 0);
  }
} daemon_;
}  // namespace
