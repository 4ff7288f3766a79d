#pragma once
// Shared by the public and hidden tests of lesson 06: the groups a check runs on, a token stream,
// the global batch written out from the README's definition, the one-rank reference run, and the
// cross-rank checks (bit-identical replicas).
//
// Where a check runs: under `mpirun -np 1` (or run directly) on in-process groups of 1, 2, 3 and 4
// ranks (the threads backend); under `mpirun -np N`, N > 1, on the MPI world of N processes. So the
// ctest runs .np1 ... .np4 cover both backends at every rank count without running 16 threads per
// process on a 2-core machine.

#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "comm/testing/dp_testing.hpp"
#include "comm/testing/groups.hpp"
#include "comm/testing/mpi_test.hpp"
#include "core/testing.hpp"
#include "core/trace.hpp"
#include "data_parallel.hpp"

namespace lesson06_test {

using namespace sgpt;
using sgpt::testing::identical_on_all_ranks;
using sgpt::testing::where;

// The groups every check runs on (comm/testing/groups.hpp): threads groups of 1-4 ranks under
// -np 1, the MPI world under -np 2..4.
inline void on_groups(const std::function<void(Communicator&)>& fn) { sgpt::testing::on_groups({1, 2, 3, 4}, fn); }


// A token stream of n tokens in [0, V), a pure function of the seed.
inline TokenFile token_stream(int64_t n, int V, uint64_t seed) {
  const Tensor t = sgpt::testing::random_tokens(1, n, V, seed, "lesson06-data");
  return TokenFile(std::vector<int32_t>(t.data<int32_t>(), t.data<int32_t>() + n), V, "<lesson06 test tokens>");
}

// The inputs and targets of the whole global batch of `step` [gbs, T], written out from the README:
// W = (S-1)/T windows, W/gbs steps per epoch, row i = window order[j*gbs + i].
inline std::pair<Tensor, Tensor> global_batch(const TokenFile& tokens, int64_t step, int64_t gbs, int64_t T,
                                              uint64_t seed) {
  const int64_t W = (tokens.size() - 1) / T, per_epoch = W / gbs;
  const std::vector<int64_t> order = lesson06::epoch_order(W, seed, step / per_epoch);
  std::vector<int32_t> x(gbs * T), y(gbs * T), w(T + 1);
  for (int64_t i = 0; i < gbs; ++i) {
    tokens.read(order[(step % per_epoch) * gbs + i] * T, T + 1, w.data());
    for (int64_t t = 0; t < T; ++t) x[i * T + t] = w[t], y[i * T + t] = w[t + 1];
  }
  return {Tensor::from(x, {gbs, T}), Tensor::from(y, {gbs, T})};
}

using sgpt::testing::rows_of;

inline std::vector<double> values(const Tensor& t) { return t.to_vector(); }

inline double max_abs(const std::vector<double>& v) {
  double m = 0;
  for (double x : v) m = std::max(m, std::abs(x));
  return m;
}
using sgpt::testing::max_diff;

// Fills a tensor with garbage: tests start from dirty gradients.
inline void dirty(Tensor& t, double value) { sgpt::testing::fill_constant(t, value); }

// One step of the one-rank reference on the whole global batch: the run data parallelism must equal.
struct OneRankRun {
  GPT model;
  AdamW opt;
  OneRankRun(const GPTConfig& cfg, uint64_t seed, const AdamWConfig& ac)
      : model(cfg, seed, Device::CPU, DType::F64), opt(model.layout(), ac, DType::F64, Device::CPU) {}
  // Returns (loss, grad norm before clipping).
  std::pair<double, double> step(const Tensor& x, const Tensor& y, double lr, double clip) {
    model.zero_grad();
    const double loss = model.forward(x, y);
    model.backward();
    const double norm = clip_grad_norm(model.grads(), clip);
    opt.step(model.params(), model.grads(), lr);
    return {loss, norm};
  }
};

using sgpt::testing::expect_clear_error;

}  // namespace lesson06_test
