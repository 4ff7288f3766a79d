// Helpers every backend shares: environment lookups, the timeout's polling and abort, and the host
// arithmetic of reductions (Avg's division, accumulation of partial sums).

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <string>
#include <thread>

#include "comm/backends.hpp"
#include "comm/communicator.hpp"
#include "core/half.hpp"

namespace sgpt {

namespace detail {

std::string env_or(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v ? std::string(v) : fallback;
}

void comm_timeout_abort(const std::string& what, double timeout_s) {
  abort_all(str(what, " waited more than ", timeout_s,
                " s for the other ranks (the communication timeout: --comm-timeout or SGPT_COMM_TIMEOUT); ",
                "at least one rank of the group did not join it (stalled, deadlocked or dead): aborting every rank"));
}

double PollBackoff::now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

double PollBackoff::elapsed() const { return now() - start_; }

void PollBackoff::pause() {
  // About the first 64 polls spin (a collective that is nearly done), then sleep 2, 4, ... up to
  // 512 microseconds.
  if (++polls_ < 64) return;
  const int shift = std::min(polls_ - 64, 8);
  std::this_thread::sleep_for(std::chrono::microseconds(2 << shift));
}

template <class T>
static void divide_typed(T* p, int64_t n, int d) {
  for (int64_t i = 0; i < n; ++i) p[i] /= static_cast<T>(d);
}

void host_divide(void* data, DType dtype, int64_t count, int divisor) {
  switch (dtype) {
    case DType::BF16: {  // divided in f32, rounded once (exact when the divisor is a power of two)
      auto* p = static_cast<bf16_t*>(data);
      for (int64_t i = 0; i < count; ++i) p[i].bits = f32_to_bf16(bf16_to_f32(p[i].bits) / static_cast<float>(divisor));
      break;
    }
    case DType::F32: divide_typed(static_cast<float*>(data), count, divisor); break;
    case DType::F64: divide_typed(static_cast<double*>(data), count, divisor); break;
    default: SGPT_FAIL("Avg needs a floating-point tensor, got ", dtype_name(dtype));
  }
}

template <class T>
static void acc_typed(T* d, const T* s, int64_t n) {
  for (int64_t i = 0; i < n; ++i) d[i] += s[i];
}

void bf16_accumulate(bf16_t* dst, const bf16_t* src, int64_t count) {
  for (int64_t i = 0; i < count; ++i)
    dst[i].bits = f32_to_bf16(bf16_to_f32(dst[i].bits) + bf16_to_f32(src[i].bits));
}

void host_accumulate(void* dst, const void* src, DType dtype, int64_t count) {
  switch (dtype) {
    case DType::BF16: bf16_accumulate(static_cast<bf16_t*>(dst), static_cast<const bf16_t*>(src), count); break;
    case DType::F32: acc_typed(static_cast<float*>(dst), static_cast<const float*>(src), count); break;
    case DType::F64: acc_typed(static_cast<double*>(dst), static_cast<const double*>(src), count); break;
    case DType::I32: acc_typed(static_cast<int32_t*>(dst), static_cast<const int32_t*>(src), count); break;
    default: SGPT_FAIL("cannot reduce ", dtype_name(dtype));
  }
}

}  // namespace detail

}  // namespace sgpt
