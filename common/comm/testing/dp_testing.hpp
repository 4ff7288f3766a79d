#pragma once
/// @file dp_testing.hpp
/// @brief Test helpers that the data-parallel lessons (06, 07, 11) share: the plain data-parallel
/// step their tests compare against, written with the library, and a check for clear errors.

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "comm/communicator.hpp"
#include "core/check.hpp"
#include "model/gpt.hpp"
#include "optim/optim.hpp"

namespace sgpt::testing {

/// One plain data-parallel optimizer step with the library: this rank's rows (x, y) in micro-batches
/// of `mbs` rows (gradients zeroed once, each micro-batch's backward scaled by 1/k), one all-reduce
/// (average) of the gradient buffer and one of the loss, the global norm clipped to `clip`
/// (0: off), AdamW at `lr`. Returns {mean loss of the global batch, gradient norm before clipping}.
inline std::pair<double, double> data_parallel_step(GPT& m, AdamW& opt, Communicator& c, const Tensor& x,
                                                    const Tensor& y, int64_t mbs, double lr, double clip) {
  const int64_t k = x.size(0) / mbs;
  m.zero_grad();
  double sum = 0;
  for (int64_t j = 0; j < k; ++j) {
    sum += m.forward(x.slice(j * mbs, (j + 1) * mbs), y.slice(j * mbs, (j + 1) * mbs));
    m.backward(1.0 / double(k));
  }
  c.all_reduce(m.grads(), ReduceOp::Avg);
  Tensor mean = Tensor::from(std::vector<double>{sum / double(k)}, {1});
  c.all_reduce(mean, ReduceOp::Avg);
  const double norm = clip_grad_norm(m.grads(), clip);
  opt.step(m.params(), m.grads(), lr);
  return {mean.to_vector()[0], norm};
}

/// Runs `f` and checks that it throws sgpt::Error (not NotImplemented: a stub is not a clear
/// error) whose message names every number in `numbers`; `at` labels the failure.
template <class F>
void expect_clear_error(F&& f, const std::vector<int64_t>& numbers, const std::string& at) {
  try {
    f();
    ADD_FAILURE() << at << " expected an sgpt::Error";
  } catch (const NotImplemented& e) {
    ADD_FAILURE() << at << " " << e.what();
  } catch (const Error& e) {
    const std::string msg = e.what();
    for (int64_t n : numbers)
      EXPECT_NE(msg.find(std::to_string(n)), std::string::npos) << at << " the message should name " << n << ": " << msg;
  }
}

}  // namespace sgpt::testing
