#pragma once
/// @file tensor.hpp
/// @brief A minimal dense tensor: shape, dtype, device, and storage shared by views.
///
/// A Tensor is a handle. Copying it copies the handle, not the data; `view()` makes a tensor that
/// looks into a range of another one's storage (parameter views of the flat parameter buffer,
/// gradient buckets, ZeRO shards and pipeline stages are all views). Storage is freed, and the
/// memory tracker credited, when the last handle goes away.

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "core/check.hpp"
#include "core/memory.hpp"

namespace sgpt {

/// Element type. bf16 is reserved for mixed precision (storage exists, kernels come later).
enum class DType : unsigned char { F32 = 0, F64, BF16, I32 };

std::size_t dtype_size(DType t);
const char* dtype_name(DType t);

/// Maps a C++ type to its DType.
template <class T> struct dtype_of;
template <> struct dtype_of<float> { static constexpr DType value = DType::F32; };
template <> struct dtype_of<double> { static constexpr DType value = DType::F64; };
template <> struct dtype_of<int32_t> { static constexpr DType value = DType::I32; };

using Shape = std::vector<int64_t>;
std::string shape_str(const Shape& s);
int64_t shape_numel(const Shape& s);

/// Raw memory on a device, charged to the tracker for its lifetime.
class Storage {
 public:
  Storage(std::size_t bytes, Device device, MemCategory category);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
  void* data() const { return data_; }
  std::size_t bytes() const { return bytes_; }
  Device device() const { return device_; }
  MemCategory category() const { return category_; }

 private:
  void* data_ = nullptr;
  std::size_t bytes_;
  Device device_;
  MemCategory category_;
};

/// A dense, contiguous, row-major tensor (or a view into another tensor's storage).
class Tensor {
 public:
  Tensor() = default;

  /// New uninitialised storage.
  static Tensor empty(const Shape& shape, DType dtype = DType::F32, Device device = Device::CPU,
                      MemCategory category = MemCategory::Other);
  /// New storage filled with zeros.
  static Tensor zeros(const Shape& shape, DType dtype = DType::F32, Device device = Device::CPU,
                      MemCategory category = MemCategory::Other);
  /// A CPU tensor holding `values` (for tests and small constants).
  template <class T>
  static Tensor from(const std::vector<T>& values, const Shape& shape,
                     MemCategory category = MemCategory::Other);

  /// A tensor of `shape` that shares storage, starting `offset` elements into this one.
  Tensor view(int64_t offset, const Shape& shape) const;
  /// The same elements with another shape (numel must agree).
  Tensor reshape(const Shape& shape) const { return view(0, shape); }
  /// Rows [begin, end) of the first dimension.
  Tensor slice(int64_t begin, int64_t end) const;

  bool defined() const { return storage_ != nullptr; }
  const Shape& shape() const { return shape_; }
  int dim() const { return static_cast<int>(shape_.size()); }
  /// Size of dimension i (negative i counts from the end).
  int64_t size(int i) const;
  int64_t numel() const { return shape_numel(shape_); }
  std::size_t nbytes() const { return numel() * dtype_size(dtype_); }
  DType dtype() const { return dtype_; }
  Device device() const { return storage_ ? storage_->device() : Device::CPU; }
  MemCategory category() const { return storage_ ? storage_->category() : MemCategory::Other; }
  int64_t offset() const { return offset_; }

  void* raw() const;
  /// Typed pointer; checks that T matches the dtype.
  template <class T>
  T* data() const {
    SGPT_CHECK(dtype_of<T>::value == dtype_, "tensor holds ", dtype_name(dtype_), ", not ", dtype_name(dtype_of<T>::value));
    return static_cast<T*>(raw());
  }

  /// Sets every element to zero (on its device).
  void zero_();
  /// Copies another tensor's elements (same numel and dtype; any devices).
  void copy_from(const Tensor& src);
  /// A copy on `device` (same dtype and category).
  Tensor to(Device device) const;
  /// A copy with another element type (CPU only; f32 <-> f64).
  Tensor cast(DType dtype) const;
  /// The elements as doubles, copied to the host (for tests and printing).
  std::vector<double> to_vector() const;

 private:
  std::shared_ptr<Storage> storage_;
  int64_t offset_ = 0;  // in elements
  Shape shape_;
  DType dtype_ = DType::F32;
};

/// Copies `bytes` between any two devices (synchronous).
void device_memcpy(void* dst, Device dst_dev, const void* src, Device src_dev, std::size_t bytes);
/// Waits until all work queued on `device` has finished (a no-op on the CPU).
void device_synchronize(Device device);
/// True when this build has CUDA and a GPU is visible.
bool cuda_available();

template <class T>
Tensor Tensor::from(const std::vector<T>& values, const Shape& shape, MemCategory category) {
  SGPT_CHECK(static_cast<int64_t>(values.size()) == shape_numel(shape), "Tensor::from: ", values.size(),
             " values for shape ", shape_str(shape));
  Tensor t = empty(shape, dtype_of<T>::value, Device::CPU, category);
  std::copy(values.begin(), values.end(), t.data<T>());
  return t;
}

}  // namespace sgpt
