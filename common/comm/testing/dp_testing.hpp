#pragma once
/// @file dp_testing.hpp
/// @brief Test helpers that the data-parallel lessons (06, 07, 11) share: a rank's rows of a
/// global batch, value comparisons, gradient accumulation and the plain data-parallel step their
/// tests compare against, written with the library, and a check for clear errors.

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "comm/communicator.hpp"
#include "core/check.hpp"
#include "model/gpt.hpp"
#include "optim/optim.hpp"

namespace sgpt::testing {

/// Rows [r*b, (r+1)*b) of a global batch `t` [p*b, ...] (rank r's share of p), as a tensor of
/// their own (contiguous, category Other).
inline Tensor rows_of(const Tensor& t, int r, int p) {
  const int64_t b = t.size(0) / p;
  const Tensor s = t.slice(r * b, (r + 1) * b);
  Tensor out = Tensor::empty(s.shape(), s.dtype());
  out.copy_from(s);
  return out;
}

/// max |a[i] - b[i]| over two value lists (infinity when their sizes differ).
inline double max_diff(const std::vector<double>& a, const std::vector<double>& b) {
  if (a.size() != b.size()) return INFINITY;
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(a[i] - b[i]));
  return m;
}

/// Sets every element of `t` (any float dtype) to `value`: tests start from dirty buffers.
inline void fill_constant(Tensor& t, double value) {
  t.copy_from(Tensor::from(std::vector<double>(size_t(t.numel()), value), {t.numel()}).cast(t.dtype()));
}

/// Gradient accumulation with the library (lesson 02's loop), the reference of the tests: zeroes
/// m's gradients, then runs the rows of (x, y) in k = x.size(0) / mbs micro-batches of `mbs` rows,
/// each backward scaled by 1/k, so m.grads() ends as the gradient of the mean loss over all rows.
/// Returns that mean loss (the mean of the k micro-batch losses). Throws sgpt::Error when `mbs`
/// is not positive or does not divide the rows.
inline double accumulate_gradients(GPT& m, const Tensor& x, const Tensor& y, int64_t mbs) {
  SGPT_CHECK(mbs > 0 && x.size(0) % mbs == 0, "accumulate_gradients: micro-batch ", mbs, " does not divide the ",
             x.size(0), " rows");
  const int64_t k = x.size(0) / mbs;
  m.zero_grad();
  double sum = 0;
  for (int64_t j = 0; j < k; ++j) {
    sum += m.forward(x.slice(j * mbs, (j + 1) * mbs), y.slice(j * mbs, (j + 1) * mbs));
    m.backward(1.0 / double(k));
  }
  return sum / double(k);
}

/// One plain data-parallel optimizer step with the library: this rank's rows (x, y) accumulated in
/// micro-batches of `mbs` rows (accumulate_gradients), one all-reduce (average) of the gradient
/// buffer and one of the loss, the global norm clipped to `clip` (0: off), AdamW at `lr`.
/// Returns {mean loss of the global batch, gradient norm before clipping}.
inline std::pair<double, double> data_parallel_step(GPT& m, AdamW& opt, Communicator& c, const Tensor& x,
                                                    const Tensor& y, int64_t mbs, double lr, double clip) {
  const double loss = accumulate_gradients(m, x, y, mbs);
  c.all_reduce(m.grads(), ReduceOp::Avg);
  Tensor mean = Tensor::from(std::vector<double>{loss}, {1});
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
