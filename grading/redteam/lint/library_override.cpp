// Red team (lint): redefine a library function that the tests use to check results.
#include <cstdint>
namespace sgpt {
int64_t shard_count(int64_t n, int p, int r) { return n / p + (r < n % p); }
}  // namespace sgpt
