#pragma once
// Internal to common/kernels: small OpenMP helpers for the CPU kernels.
// Reductions are deterministic for a fixed thread count: each thread sums a fixed, contiguous
// range and the per-thread partial sums are added in thread order (an OpenMP `reduction` clause
// does not promise an order, and bit-for-bit resume needs one).

#include <omp.h>

#include <cstdint>
#include <vector>

namespace sgpt::detail {

/// Below about this many scalar operations a kernel runs on one thread: starting and joining a
/// parallel region costs more than it saves (and much more when the cores are oversubscribed).
constexpr int64_t kParallelMin = 1 << 15;

/// Sum over i in [0, n) of f(i), in double, deterministic for a fixed number of threads.
template <class F>
double parallel_sum(int64_t n, F f) {
  int nt = n < kParallelMin ? 1 : omp_get_max_threads();
  std::vector<double> partial(nt, 0.0);
#pragma omp parallel num_threads(nt)
  {
    int id = omp_get_thread_num();
    int64_t begin = n * id / nt, end = n * (id + 1) / nt;
    double s = 0.0;
    for (int64_t i = begin; i < end; ++i) s += f(i);
    partial[id] = s;
  }
  double total = 0.0;
  for (double p : partial) total += p;
  return total;
}

}  // namespace sgpt::detail
