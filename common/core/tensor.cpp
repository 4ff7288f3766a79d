#include "core/tensor.hpp"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <type_traits>

#if SGPT_WITH_CUDA
#include <cuda_runtime.h>
#endif

namespace sgpt {

std::size_t dtype_size(DType t) {
  switch (t) {
    case DType::F32: return 4;
    case DType::F64: return 8;
    case DType::BF16: return 2;
    case DType::I32: return 4;
    case DType::F16: return 2;
  }
  return 0;
}

const char* dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "f32";
    case DType::F64: return "f64";
    case DType::BF16: return "bf16";
    case DType::I32: return "i32";
    case DType::F16: return "f16";
  }
  return "?";
}

std::string shape_str(const Shape& s) {
  std::string out = "[";
  for (std::size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

int64_t shape_numel(const Shape& s) {
  int64_t n = 1;
  for (auto d : s) {
    SGPT_CHECK(d >= 0, "negative dimension in shape ", shape_str(s));
    n *= d;
  }
  return n;
}

// ---- device memory ------------------------------------------------------------------------------

#if SGPT_WITH_CUDA
static cudaMemcpyKind copy_kind(Device dst, Device src) {
  if (dst == Device::CUDA && src == Device::CUDA) return cudaMemcpyDeviceToDevice;
  if (dst == Device::CUDA) return cudaMemcpyHostToDevice;
  if (src == Device::CUDA) return cudaMemcpyDeviceToHost;
  return cudaMemcpyHostToHost;
}
#endif

[[noreturn, maybe_unused]] static void no_cuda() {
  SGPT_FAIL("this build has no CUDA backend: configure with the 'cuda' preset (-DSCALEGPT_CUDA=ON)");
}

bool cuda_available() {
#if SGPT_WITH_CUDA
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
#else
  return false;
#endif
}

void device_synchronize(Device device) {
  if (device == Device::CPU) return;
#if SGPT_WITH_CUDA
  SGPT_CUDA_CHECK(cudaDeviceSynchronize());
#else
  no_cuda();
#endif
}

void device_memcpy(void* dst, Device dst_dev, const void* src, Device src_dev, std::size_t bytes) {
  if (bytes == 0) return;
  if (dst_dev == Device::CPU && src_dev == Device::CPU) {
    std::memcpy(dst, src, bytes);
    return;
  }
#if SGPT_WITH_CUDA
  SGPT_CUDA_CHECK(cudaMemcpy(dst, src, bytes, copy_kind(dst_dev, src_dev)));
#else
  no_cuda();
#endif
}

Storage::Storage(std::size_t bytes, Device device, MemCategory category)
    : bytes_(bytes), device_(device), category_(category) {
  std::size_t alloc = std::max<std::size_t>(bytes, 1);
  if (device == Device::CPU) {
    // 64-byte alignment for vector loads; the size must be a multiple of the alignment.
    data_ = std::aligned_alloc(64, (alloc + 63) / 64 * 64);
    SGPT_CHECK(data_ != nullptr, "out of host memory allocating ", bytes, " bytes of ", category_name(category));
  } else {
#if SGPT_WITH_CUDA
    SGPT_CUDA_CHECK(cudaMalloc(&data_, alloc));
#else
    no_cuda();
#endif
  }
  MemoryTracker::instance().on_alloc(device, category, bytes);
}

Storage::~Storage() {
  MemoryTracker::instance().on_free(device_, category_, bytes_);
  if (device_ == Device::CPU) {
    std::free(data_);
  } else {
#if SGPT_WITH_CUDA
    cudaFree(data_);
#endif
  }
}

// ---- Tensor -------------------------------------------------------------------------------------

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device, MemCategory category) {
  Tensor t;
  t.shape_ = shape;
  t.dtype_ = dtype;
  t.storage_ = std::make_shared<Storage>(shape_numel(shape) * dtype_size(dtype), device, category);
  return t;
}

Tensor Tensor::zeros(const Shape& shape, DType dtype, Device device, MemCategory category) {
  Tensor t = empty(shape, dtype, device, category);
  t.zero_();
  return t;
}

Tensor Tensor::view(int64_t offset, const Shape& shape) const {
  SGPT_CHECK(defined(), "view of an undefined tensor");
  int64_t n = shape_numel(shape);
  SGPT_CHECK(offset >= 0 && offset + n <= numel(), "view of ", n, " elements at offset ", offset,
             " does not fit in a tensor of shape ", shape_str(shape_));
  Tensor t = *this;
  t.offset_ = offset_ + offset;
  t.shape_ = shape;
  return t;
}

Tensor Tensor::slice(int64_t begin, int64_t end) const {
  SGPT_CHECK(dim() >= 1 && 0 <= begin && begin <= end && end <= shape_[0], "slice [", begin, ", ", end,
             ") out of range for shape ", shape_str(shape_));
  Shape s = shape_;
  s[0] = end - begin;
  return view(begin * (numel() / std::max<int64_t>(shape_[0], 1)), s);
}

int64_t Tensor::size(int i) const {
  int d = dim();
  if (i < 0) i += d;
  SGPT_CHECK(i >= 0 && i < d, "dimension ", i, " out of range for shape ", shape_str(shape_));
  return shape_[i];
}

void* Tensor::raw() const {
  SGPT_CHECK(defined(), "data of an undefined tensor");
  return static_cast<char*>(storage_->data()) + offset_ * dtype_size(dtype_);
}

void Tensor::zero_() {
  if (device() == Device::CPU) {
    std::memset(raw(), 0, nbytes());
  } else {
#if SGPT_WITH_CUDA
    SGPT_CUDA_CHECK(cudaMemset(raw(), 0, nbytes()));
#else
    no_cuda();
#endif
  }
}

void Tensor::copy_from(const Tensor& src) {
  SGPT_CHECK(src.numel() == numel() && src.dtype() == dtype(), "copy of ", dtype_name(src.dtype()),
             shape_str(src.shape()), " into ", dtype_name(dtype()), shape_str(shape()));
  device_memcpy(raw(), device(), src.raw(), src.device(), nbytes());
}

Tensor Tensor::to(Device device_to) const {
  Tensor t = empty(shape_, dtype_, device_to, category());
  t.copy_from(*this);
  return t;
}

// Element conversions for cast and to_vector: plain static_cast, except to and from the 16-bit
// types, which go through f32 with the library's rounding (core/half.hpp).
template <class T> static T from_f32(float x) { return static_cast<T>(x); }
template <> bf16_t from_f32<bf16_t>(float x) { return {f32_to_bf16(x)}; }
template <> f16_t from_f32<f16_t>(float x) { return {f32_to_f16(x)}; }
template <class T> static double widen(T x) { return static_cast<double>(x); }
static double widen(bf16_t x) { return bf16_to_f32(x.bits); }
static double widen(f16_t x) { return f16_to_f32(x.bits); }

template <class To, class From>
static void convert(To* dst, const From* src, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    if constexpr (std::is_same_v<To, bf16_t> || std::is_same_v<To, f16_t>)
      dst[i] = from_f32<To>(static_cast<float>(widen(src[i])));
    else
      dst[i] = static_cast<To>(widen(src[i]));
  }
}

/// Runs `body` with `elem_t` bound to the C++ type of a floating-point dtype.
#define SGPT_DISPATCH_ANY_FLOAT(dtype, ...)                                  \
  switch (dtype) {                                                          \
    case DType::F32: { using elem_t = float; __VA_ARGS__; break; }          \
    case DType::F64: { using elem_t = double; __VA_ARGS__; break; }         \
    case DType::BF16: { using elem_t = bf16_t; __VA_ARGS__; break; }        \
    case DType::F16: { using elem_t = f16_t; __VA_ARGS__; break; }          \
    default: SGPT_FAIL("dtype ", dtype_name(dtype), " is not a floating-point type"); \
  }

Tensor Tensor::cast(DType to_type) const {
  SGPT_CHECK(device() == Device::CPU, "cast is implemented on the CPU only");
  SGPT_CHECK((to_type != DType::I32 && dtype_ != DType::I32) || to_type == dtype_, "cast from ", dtype_name(dtype_),
             " to ", dtype_name(to_type), " is not supported");
  Tensor t = empty(shape_, to_type, Device::CPU, category());
  if (to_type == dtype_) {
    t.copy_from(*this);
    return t;
  }
  const int64_t n = numel();
  SGPT_DISPATCH_ANY_FLOAT(dtype_, {
    using from_t = elem_t;
    SGPT_DISPATCH_ANY_FLOAT(to_type, convert(t.data<elem_t>(), data<from_t>(), n));
  });
  return t;
}

std::vector<double> Tensor::to_vector() const {
  Tensor host = device() == Device::CPU ? *this : to(Device::CPU);
  std::vector<double> out(numel());
  switch (dtype_) {
    case DType::F32: convert(out.data(), host.data<float>(), numel()); break;
    case DType::F64: convert(out.data(), host.data<double>(), numel()); break;
    case DType::I32: convert(out.data(), host.data<int32_t>(), numel()); break;
    case DType::BF16: convert(out.data(), host.data<bf16_t>(), numel()); break;
    case DType::F16: convert(out.data(), host.data<f16_t>(), numel()); break;
    default: SGPT_FAIL("to_vector of ", dtype_name(dtype_), " is not supported");
  }
  return out;
}

}  // namespace sgpt
