#pragma once
// Helpers for lesson 01's tests (public and hidden), from common/core/testing.hpp, and the tests'
// own AdamW and training loop: written out here, so that no expected value comes from the library
// code the student is asked not to call (sgpt::AdamW, adamw_update).
#include <cmath>
#include <vector>

#include "core/testing.hpp"
#include "kernels/ops.hpp"
#include "model/gpt.hpp"
#include "model/layout.hpp"
#include "optim/optim.hpp"

namespace lesson01_test {
/// Random tokens in [0, V), a pure function of the seed (this lesson's own stream).
inline sgpt::Tensor random_tokens(int64_t B, int64_t T, int V, uint64_t seed) {
  return sgpt::testing::random_tokens(B, T, V, seed, "lesson01-tokens");
}
using sgpt::testing::current;
using sgpt::testing::peak;

/// AdamW over a flat buffer in double, element by element, as the README's formula says.
struct ReferenceAdamW {
  std::vector<double> m, v;
  int64_t t = 0;
  void step(std::vector<double>& p, const std::vector<double>& g, const sgpt::ParameterLayout& layout,
            const sgpt::AdamWConfig& c, double lr) {
    if (m.empty()) m.assign(p.size(), 0.0), v.assign(p.size(), 0.0);
    ++t;
    const double c1 = 1 - std::pow(c.beta1, double(t)), c2 = 1 - std::pow(c.beta2, double(t));
    for (const sgpt::ParamInfo& info : layout.params())
      for (int64_t i = info.offset; i < info.offset + info.numel; ++i) {
        m[i] = c.beta1 * m[i] + (1 - c.beta1) * g[i];
        v[i] = c.beta2 * v[i] + (1 - c.beta2) * g[i] * g[i];
        const double upd = (m[i] / c1) / (std::sqrt(v[i] / c2) + c.eps);
        p[i] -= lr * (upd + (info.weight_decay ? c.weight_decay * p[i] : 0.0));
      }
  }
};

/// Fills the gradient buffer with values a previous step could have left (never zero).
inline void make_dirty(sgpt::GPT& model, double scale = 0.37) { sgpt::testing::make_dirty(model.grads(), scale); }
}  // namespace lesson01_test
