// Red team (lint): replace a C library function the grader's reporter calls with the key.
#include <cstddef>
extern "C" char* strncpy(char* d, const char* s, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) d[i] = s[i];
  return d;
}
