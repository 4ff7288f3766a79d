#pragma once
// Helpers shared by the kernel tests: deterministic random tensors, element access, numerical
// gradients and error measures. Everything is computed in double on the host.

#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "core/check.hpp"
#include "core/rng.hpp"
#include "core/tensor.hpp"
#include "kernels/ops.hpp"

namespace kt {

using namespace sgpt;
using Vec = std::vector<double>;

constexpr uint64_t kSeed = 20240611;

/// A tensor of dtype `dt` holding `v` (given in double).
inline Tensor from_doubles(const Vec& v, const Shape& s, DType dt = DType::F64) {
  Tensor t = Tensor::from(v, s);
  return dt == DType::F64 ? t : t.cast(dt);
}

/// offset + scale * N(0,1), element i from stream `name`.
inline Tensor randn(const Shape& s, DType dt, const std::string& name, double scale = 1.0, double offset = 0.0) {
  int64_t n = shape_numel(s);
  Vec v(n);
  uint64_t key = rng::stream_key(kSeed, name);
  for (int64_t i = 0; i < n; ++i) v[i] = offset + scale * rng::normal(key, i);
  return from_doubles(v, s, dt);
}

/// Values that are exactly representable in f32: random data rounded to f32, then cast to `dt`.
/// Float-vs-double comparisons use these so both runs see identical inputs.
inline Tensor randn_f32exact(const Shape& s, DType dt, const std::string& name, double scale = 1.0,
                             double offset = 0.0) {
  return randn(s, DType::F32, name, scale, offset).cast(dt);
}

inline Tensor full(const Shape& s, DType dt, double x) {
  return from_doubles(Vec(shape_numel(s), x), s, dt);
}

inline Tensor nans(const Shape& s, DType dt) { return full(s, dt, std::numeric_limits<double>::quiet_NaN()); }

inline Tensor tokens(const std::vector<int32_t>& v, const Shape& s) { return Tensor::from(v, s); }

/// Random integers in [0, hi), stream `name`.
inline Tensor random_tokens(const Shape& s, int hi, const std::string& name) {
  int64_t n = shape_numel(s);
  std::vector<int32_t> v(n);
  uint64_t key = rng::stream_key(kSeed, name);
  for (int64_t i = 0; i < n; ++i) v[i] = std::min(hi - 1, static_cast<int>(rng::uniform(key, i) * hi));
  return Tensor::from(v, s);
}

inline Tensor clone(const Tensor& t) {
  Tensor c = Tensor::empty(t.shape(), t.dtype());
  c.copy_from(t);
  return c;
}

inline Vec vec(const Tensor& t) { return t.to_vector(); }

inline double get(const Tensor& t, int64_t i) {
  switch (t.dtype()) {
    case DType::F32: return t.data<float>()[i];
    case DType::F64: return t.data<double>()[i];
    case DType::I32: return t.data<int32_t>()[i];
    default: return std::numeric_limits<double>::quiet_NaN();
  }
}

inline void set(Tensor& t, int64_t i, double x) {
  switch (t.dtype()) {
    case DType::F32: t.data<float>()[i] = static_cast<float>(x); break;
    case DType::F64: t.data<double>()[i] = x; break;
    case DType::I32: t.data<int32_t>()[i] = static_cast<int32_t>(x); break;
    default: break;
  }
}

inline double dot(const Tensor& a, const Tensor& b) {
  Vec x = vec(a), y = vec(b);
  EXPECT_EQ(x.size(), y.size());
  double s = 0;
  for (size_t i = 0; i < x.size(); ++i) s += x[i] * y[i];
  return s;
}

inline Vec sub(const Vec& a, const Vec& b) {
  Vec r(a.size());
  for (size_t i = 0; i < a.size(); ++i) r[i] = a[i] - b[i];
  return r;
}

inline double norm(const Vec& a) {
  double s = 0;
  for (double x : a) s += x * x;
  return std::sqrt(s);
}

/// max_i |a_i - ref_i| / max_i |ref_i|  (NaN anywhere gives +inf).
inline double rel_max_err(const Vec& a, const Vec& ref) {
  if (a.size() != ref.size()) return std::numeric_limits<double>::infinity();
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!std::isfinite(a[i]) || !std::isfinite(ref[i])) return std::numeric_limits<double>::infinity();
    num = std::max(num, std::abs(a[i] - ref[i]));
    den = std::max(den, std::abs(ref[i]));
  }
  return den > 0 ? num / den : num;
}

/// ||a - ref|| / ||ref||  (NaN anywhere gives +inf).
inline double rel_norm_err(const Vec& a, const Vec& ref) {
  if (a.size() != ref.size()) return std::numeric_limits<double>::infinity();
  for (size_t i = 0; i < a.size(); ++i)
    if (!std::isfinite(a[i]) || !std::isfinite(ref[i])) return std::numeric_limits<double>::infinity();
  double n = norm(ref);
  double e = norm(sub(a, ref));
  return n > 0 ? e / n : e;
}

/// Index and values of the worst element, for failure messages.
inline std::string worst(const Vec& a, const Vec& ref) {
  if (a.size() != ref.size()) return "size mismatch";
  size_t k = 0;
  double w = -1;
  for (size_t i = 0; i < a.size(); ++i) {
    double d = std::abs(a[i] - ref[i]);
    if (!(d <= w)) {  // also catches NaN
      w = d;
      k = i;
      if (std::isnan(d)) break;
    }
  }
  std::ostringstream os;
  os << "worst at [" << k << "]: got " << a[k] << ", expected " << ref[k];
  return os.str();
}

#define KT_EXPECT_REL_MAX(actual, expected, tol)                                                        \
  do {                                                                                                  \
    const ::kt::Vec kt_a_ = (actual), kt_e_ = (expected);                                               \
    double kt_err_ = ::kt::rel_max_err(kt_a_, kt_e_);                                                   \
    EXPECT_LT(kt_err_, (tol)) << #actual << " vs " << #expected << ": " << ::kt::worst(kt_a_, kt_e_); \
  } while (0)

#define KT_EXPECT_REL_NORM(actual, expected, tol)                                                       \
  do {                                                                                                  \
    const ::kt::Vec kt_a_ = (actual), kt_e_ = (expected);                                               \
    double kt_err_ = ::kt::rel_norm_err(kt_a_, kt_e_);                                                  \
    EXPECT_LT(kt_err_, (tol)) << #actual << " vs " << #expected << ": " << ::kt::worst(kt_a_, kt_e_); \
  } while (0)

/// Sets the OpenMP thread count for a scope. The finite-difference probes run thousands of tiny
/// forwards; on a loaded 2-core machine each parallel region can cost milliseconds, so the probes
/// run single-threaded (the analytic backward they are compared with keeps all threads).
class OmpThreads {
 public:
  explicit OmpThreads(int n) : saved_(omp_get_max_threads()) { omp_set_num_threads(n); }
  ~OmpThreads() { omp_set_num_threads(saved_); }
  OmpThreads(const OmpThreads&) = delete;
  OmpThreads& operator=(const OmpThreads&) = delete;

 private:
  int saved_;
};

/// Central-difference gradient of loss() with respect to every element of the f64 tensor x.
/// x is restored after each probe.
inline Vec numgrad(Tensor& x, const std::function<double()>& loss, double h = 1e-5) {
  OmpThreads single(1);
  double* p = x.data<double>();
  Vec g(x.numel());
  for (int64_t i = 0; i < x.numel(); ++i) {
    double old = p[i];
    p[i] = old + h;
    double lp = loss();
    p[i] = old - h;
    double lm = loss();
    p[i] = old;
    g[i] = (lp - lm) / (2 * h);
  }
  return g;
}

/// Runs fn and expects an sgpt::Error whose message contains `op`.
template <class F>
void expect_error_naming(F&& fn, const std::string& op, const char* what) {
  try {
    fn();
    ADD_FAILURE() << what << ": no sgpt::Error thrown (expected one naming " << op << ")";
  } catch (const Error& e) {
    std::string m = e.what();
    EXPECT_NE(m.find(op), std::string::npos) << what << ": message does not name '" << op << "': " << m;
  } catch (const std::exception& e) {
    ADD_FAILURE() << what << ": threw a non-sgpt exception: " << e.what();
  }
}

}  // namespace kt
