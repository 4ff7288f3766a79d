// ---- red team: many processes, each within its own limits, together over the job's memory -------------
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace {
struct ManyHogs {
  ManyHogs() {
    for (int i = 0; i < 32; ++i) {
      if (fork() == 0) {
        for (int k = 0; k < 32; ++k) {  // 32 x 4 MiB, touched, at 80 MiB/s per child
          char* b = static_cast<char*>(std::malloc(4u << 20));
          if (b) std::memset(b, 1, 4u << 20);
          usleep(50000);
        }
        sleep(120);
        _exit(0);
      }
    }
    while (wait(nullptr) > 0) {
    }
    std::printf("HOGS: every child finished: the job was not stopped\n");
  }
} hogs;
}  // namespace
